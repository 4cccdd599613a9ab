"""mvs2v-train's TOML config: one-line errors that name the key, the contract's reference defaults."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from pydantic import ValidationError
from mvs2v_train.cli import main
from mvs2v_train.config import (
    ConfigError,
    ReferencesSection,
    TrainConfig,
    load_config,
    parse_config,
)

from mvs2v_core.config_files import toml_module
from mvs2v_core.references.settings import ReferenceSettings
from mvs2v_core.sampling.solvers import SOLVERS

CONFIGS = Path(__file__).resolve().parents[2] / "train" / "configs"
TINY = toml_module().loads((CONFIGS / "tiny_cpu.toml").read_text())
MINIMAL = {"model": {"dit": "dit.safetensors"}, "data": {"manifest": "train.jsonl"},
           "stages": [{"name": "only", "steps": 2}]}


def problems(data: dict, *edits) -> list[str]:
    """The problem lines of ``data`` after ``edits`` (each a ``(table path, key, value)``)."""
    data = copy.deepcopy(data)
    for path, key, value in edits:
        node = data
        for part in path:
            node = node[part]
        node[key] = value
    with pytest.raises(ConfigError) as e:
        parse_config(data, "c.toml")
    return e.value.problems


def test_wrong_type_names_the_key_the_value_and_the_range():
    assert problems(TINY, (["train"], "batch_size", "2")) == [
        "train.batch_size must be an integer in [1, 4096], got '2'"]
    assert problems(TINY, (["train"], "gradient_checkpointing", 1)) == [
        "train.gradient_checkpointing must be true or false, got 1"]
    assert problems(TINY, (["lora"], "rank", True)) == ["lora.rank must be an integer in [1, 4096], got True"]
    assert problems(TINY, (["references"], "gap", "8")) == ["references.gap must be a number, got '8'"]
    assert problems(TINY, ([], "train", 3)) == ["train must be a table (key = value lines), got 3"]
    assert problems(TINY, ([], "stages", {"name": "x"})) == [
        "stages must be an array of tables: write each entry as [[stages]]"]


def test_out_of_range_values():
    assert problems(TINY, (["stages", 2, "filter"], "min_views", 0)) == [
        "stages[2].filter.min_views must be an integer in [1, 64], got 0"]
    assert problems(TINY, (["timesteps"], "shift", 0.0)) == ["timesteps.shift must be a number in (0, 1000], got 0.0"]
    assert problems(TINY, (["timesteps"], "shift", float("inf"))) == [
        "timesteps.shift must be a finite number in (0, 1000], got inf"]
    assert problems(TINY, (["data"], "frames", 6)) == [
        "data.frames: 6 is not of the form 4n+1 the Wan VAE needs: use 5 or 9"]
    assert problems(TINY, (["stages", 0], "warmup_steps", 9)) == [
        "stages[0].warmup_steps: 9 is longer than the stage (4 steps): use at most 4"]


def test_unknown_keys_are_named_by_dotted_path_with_a_suggestion():
    (line,) = problems(TINY, (["stages", 1, "filter"], "min_view", 2))
    assert line.startswith("stages[1].filter.min_view is not a key of [stages[1].filter] (did you mean 'min_views'?)")
    (line,) = problems(TINY, (["validation", "prompts", 0, "subjects", 0], "image", []))
    assert line.startswith("validation.prompts[0].subjects[0].image is not a key")
    (line,) = problems(TINY, ([], "referencse", {}))
    assert line.startswith("referencse is not a table of the config (did you mean 'references'?)")
    assert "references" in line and "stages" in line  # the known tables are listed


def test_bad_option_values_list_the_allowed_ones():
    (line,) = problems(TINY, (["references"], "empty_slot_mode", "grey"))
    assert line.startswith("references.empty_slot_mode: empty-slot mode 'grey' is unknown: use one of proxy, gray, drop")
    (line,) = problems(TINY, (["references"], "scheme", "rope"))
    assert line.startswith("references.scheme: position scheme 'rope' is unknown: use one of vanilla, ts, ss, jump")
    assert problems(TINY, (["stages", 0], "views", "one")) == [
        "stages[0].views is 'one'; use one of 'single', 'single_or_full', 'dropout' or 'full'"]
    (line,) = problems(TINY, (["validation"], "solver", "ddim"))
    assert line.startswith("validation.solver is 'ddim'; use one of") and all(name in line for name in SOLVERS)


def test_the_reference_contract_checks_the_references_table():
    (line,) = problems(TINY, (["references"], "slots_per_subject", 40))
    assert line.startswith("references.slots_per_subject: slots per subject must be a whole number from 1 to 16")
    (line,) = problems(TINY, (["references"], "ref_gap", -1.0))
    assert line.startswith("references.ref_gap: position scheme ref_gap is -1.0 but it must be >= 0")
    # The contract's parsing (any case, spaces) applies, and the values are its enums.
    cfg = parse_config({**copy.deepcopy(TINY), "references": {**TINY["references"], "scheme": " TS "}})
    assert cfg.references.settings().scheme.name == "ts"


def test_several_problems_are_listed_at_once_one_line_each():
    lines = problems(TINY, (["train"], "batch_size", 0), (["references"], "placement", "middle"),
                     (["augment"], "hue", 0.7))
    assert len(lines) == 3 and all("\n" not in line for line in lines)
    with pytest.raises(ConfigError, match=r"^3 problems in c\.toml:\n  "):
        parse_config({**copy.deepcopy(TINY), "train": {"batch_size": 0}, "augment": {"hue": 0.7},
                      "references": {"placement": "middle", "empty_slot_mode": "proxy"}}, "c.toml")


def test_rules_across_tables():
    assert problems(MINIMAL, ([], "stages", [])) == [
        "the config has no [[stages]]: add at least one curriculum stage with steps and views"]
    assert problems(MINIMAL, (["model"], "dtype", "bf16"), ([], "trainable", {"full": True, "lora": False})) == [
        "trainable.full needs model.dtype = \"fp32\" (float32 master weights); bf16 compute comes from "
        "train.mixed_precision"]
    (line,) = problems(MINIMAL, ([], "trainable", {"proxy": True}))
    assert line.startswith("trainable.proxy is true but references.empty_slot_mode is 'gray'")
    (line,) = problems(TINY, (["trainable"], "proxy", False))
    assert line.startswith("references.empty_slot_mode is 'proxy' but trainable.proxy is false")


def test_frontal_slot_anchor_needs_stages_that_keep_the_frontal_view():
    anchored = {**MINIMAL, "references": {"slot_anchor": "frontal"}}
    assert parse_config(anchored).references.settings().slot_anchor == "frontal"
    assert problems(anchored, (["stages", 0], "keep_frontal", False)) == [
        "stages[0] (only) may drop the frontal view but references.slot_anchor is 'frontal': set keep_frontal = true"]
    (line,) = problems(anchored, (["stages", 0], "views", "single"), (["stages", 0], "single_view", "random"))
    assert line.endswith("set single_view = \"frontal\"")
    (line,) = problems(MINIMAL, ([], "references", {"slot_anchor": "start"}))
    assert "slot anchor 'start' is unknown: use one of canonical, frontal" in line
    # Runs started before the option existed keep their fingerprint; the anchor changes it.
    assert parse_config(anchored).fingerprint() != parse_config(MINIMAL).fingerprint()
    explicit = parse_config({**MINIMAL, "references": {"slot_anchor": "canonical"}})
    assert explicit.fingerprint() == parse_config(MINIMAL).fingerprint()


def test_reference_defaults_are_the_contract_and_proxy_follows_the_mode():
    assert ReferencesSection().settings() == ReferenceSettings()
    cfg = parse_config(MINIMAL)
    assert cfg.references.settings() == ReferenceSettings()
    assert cfg.trainable.proxy is False  # gray slots by default: no proxy tokens to train
    proxy = parse_config({**MINIMAL, "references": {"empty_slot_mode": "proxy"}})
    assert proxy.trainable.proxy is True
    assert parse_config({**MINIMAL, "references": {"empty_slot_mode": "drop"}}).trainable.proxy is False


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.toml")))
def test_every_example_config_loads(name):
    cfg = load_config(CONFIGS / name)
    assert isinstance(cfg, TrainConfig) and cfg.path.endswith(name) and cfg.stages
    assert isinstance(cfg.references.settings(), ReferenceSettings)
    # Every example trains proxy tokens for proxy-filled empty slots, as before the default moved to gray.
    assert cfg.references.empty_slot_mode == "proxy" and cfg.trainable.proxy is True
    # Re-validating the dumped config gives the same config (nothing is lost or coerced on the way).
    assert parse_config(cfg.to_dict(), cfg.path) == cfg and parse_config(cfg.to_dict()).fingerprint() == cfg.fingerprint()


def test_tiny_cpu_config_validates_fully():
    cfg = load_config(CONFIGS / "tiny_cpu.toml")
    assert cfg.references.settings() == ReferenceSettings(4, {"name": "jump"}, "proxy", "same")
    assert cfg.resolve(cfg.model.dit) == CONFIGS / "toy/models/tiny_dit.safetensors"
    assert cfg.trainable.mfi and not cfg.align.enabled and cfg.total_steps == 16
    subject = cfg.validation.prompts[0].subjects[0]
    assert subject.labels == ["front", "left"] and len(subject.images) == 2
    with pytest.raises(ValidationError, match="frozen"):
        cfg.train.seed = 3  # loaded configs are frozen


def test_cli_prints_every_problem_and_exits_2(tmp_path, capsys):
    p = tmp_path / "c.toml"
    text = (CONFIGS / "tiny_cpu.toml").read_text()
    p.write_text(text.replace("batch_size = 2", "batch_size = 0").replace('frame_start = "first"', 'frame_start = "mid"'))
    assert main(["validate-data", "--config", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: 2 problems in {p}:") and "Traceback" not in err
    assert "\n  data.frame_start is 'mid'; use one of 'first' or 'center'\n" in err
    assert "\n  train.batch_size must be an integer in [1, 4096], got 0\n" in err


def test_alignment_loss_rules_and_fingerprint():
    aligned = {**MINIMAL, "model": {"dit": "dit.safetensors", "vision_encoder": "dino"}, "align": {"weight": 0.5}}
    cfg = parse_config(aligned)
    assert cfg.align.enabled and cfg.align.block is None and cfg.align.projector_dim == 2048
    assert problems(MINIMAL, ([], "align", {"weight": 0.5})) == [
        "align.weight > 0 but model.vision_encoder is empty: set it to the vision folder whose patch features the "
        "reference tokens are aligned to (e.g. DINOv2, CLIP or SigLIP)"]
    (line,) = problems(aligned, ([], "references", {"ref_attention": "cached", "ref_timestep": "zero"}))
    assert line.startswith("align.weight > 0 with references.ref_attention = 'cached'")
    # A vision encoder nothing uses is refused; the alignment loss alone is a use.
    (line,) = problems(aligned, (["align"], "weight", 0.0))
    assert line.startswith("model.vision_encoder is set but neither MFI")
    # Runs started before [align] existed keep their fingerprint; a weight changes it, and so does the block.
    off = parse_config({**MINIMAL, "align": {"weight": 0.0, "block": 3}})
    assert off.fingerprint() == parse_config(MINIMAL).fingerprint()
    block = parse_config({**aligned, "align": {"weight": 0.5, "block": 1}})
    assert len({cfg.fingerprint(), block.fingerprint(), parse_config(MINIMAL).fingerprint()}) == 3
