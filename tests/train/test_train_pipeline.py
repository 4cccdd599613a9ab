"""mvs2v-train end to end on CPU: toy data made here, tiny random models, the example tiny config.

validate-data, caching (incremental), the curriculum's view counts, loss going down on an overfit
set, exact resume, skipped unreadable samples, two processes against one, and the exported adapter
against ComfyUI's key format and the standalone ``mvs2v generate``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from mvs2v_train.cache import CacheStore, row_key
from mvs2v_train.cli import main
from mvs2v_core.config_files import toml_module
from mvs2v_train.config import load_config, parse_config, parse_override
from mvs2v_train.data import TrainData
from mvs2v_train.model import build_model
from mvs2v_train.testing import TINY_CONFIG, make_toy_world
from mvs2v_train.trainer import read_log, run_training
from safetensors import safe_open
from safetensors.torch import load_file

from mvs2v_core.adapter import apply_lora, load_adapter
from mvs2v_core.cli import main as mvs2v_main
from mvs2v_core.errors import MVS2VError
from mvs2v_core.model.transformer import WanDiT
from mvs2v_toy.demo import TINY_DIT
from mvs2v_core.pipeline.video_io import write_mp4
from mvs2v_core.references.positions import build_position_ids

REPO = Path(__file__).resolve().parents[2]
QUIET = ["logging.progress_bar=false", "logging.tensorboard=false"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """Toy models and data plus the tiny config, cached once for the whole module."""
    root = tmp_path_factory.mktemp("train")
    make_toy_world(root / "toy")
    shutil.copy(TINY_CONFIG, root / "tiny_cpu.toml")
    assert main(["cache", "--config", str(root / "tiny_cpu.toml"), "--device", "cpu"]) == 0
    return root


def cfg_with(world: Path, out: str, *overrides: str, edit=None):
    """The tiny config with ``--set``-style overrides; ``edit(dict)`` may rewrite the parsed TOML first."""
    data = toml_module().loads((world / "tiny_cpu.toml").read_text())
    if edit is not None:
        edit(data)
    for text in [*QUIET, f"train.output_dir=\"runs/{out}\"", *overrides]:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            node = node[int(k)] if isinstance(node, list) else node.setdefault(k, {})
        node[keys[-1]] = value
    return parse_config(data, world / "tiny_cpu.toml")


def trainable_of(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "checkpoints" / f"step_{step:08d}" / "trainable.safetensors"))


# ---- data ------------------------------------------------------------------------------------------


def test_validate_data_reports_every_bad_row_and_cache_survives_them(world, tmp_path, capsys):
    data = world / "toy" / "data"
    (tmp_path / "broken.mp4").write_bytes(b"this is not a video")
    write_mp4(torch.zeros(1, 32, 32, 3, dtype=torch.uint8), tmp_path / "short.mp4", fps=8)
    good = {"video": str(data / "clips/box0.mp4"), "caption": "a red box",
            "subjects": [{"name": "box", "views": [{"image": str(data / "refs/box0_front.png"), "label": "front"}]}]}
    view = {"image": str(data / "refs/box0_front.png")}
    rows = [
        json.dumps({**good, "id": "ok"}),                                                      # 1 good
        '{"video": "x.mp4", "caption": ',                                                      # 2 bad JSON
        json.dumps({"video": good["video"], "subjects": []}),                                  # 3 no caption
        json.dumps({**good, "id": "c", "video": str(tmp_path / "missing.mp4")}),               # 4 missing file
        json.dumps({**good, "id": "d", "subjects": [{"name": "s", "views": [{**view, "label": "upside"}]}]}),  # 5
        json.dumps({**good, "id": "e", "subjects": [{"name": "s", "views": [view] * 5}]}),     # 6 too many views
        json.dumps({**good, "id": "ok"}),                                                      # 7 duplicate id
        json.dumps({**good, "id": "g", "video": str(tmp_path / "short.mp4")}),                 # 8 too short
        json.dumps({**good, "id": "h", "captoin": "typo"}),                                    # 9 unknown key
        json.dumps({**good, "id": "i", "video": str(tmp_path / "broken.mp4")}),                # 10 unreadable
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(rows) + "\n")
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text((world / "tiny_cpu.toml").read_text().replace('"toy/', f'"{world}/toy/'))
    args = ["--config", str(cfg_path), "--set", f"data.manifest=\"{tmp_path / 'm.jsonl'}\"",
            "--set", f"data.cache_dir=\"{tmp_path / 'cache'}\""]
    assert main(["validate-data", *args]) == 1
    out = capsys.readouterr().out
    assert "10 rows, 1 good, 9 bad" in out
    expected = {2: "not valid JSON", 3: "'caption' is missing", 4: "file not found", 5: "'upside' is not understood",
                6: "has 5 views but references.slots_per_subject is 4", 7: "already used on line 1",
                8: "gives 1 usable frames", 9: "unknown key(s) ['captoin']", 10: "cannot read video"}
    for line, why in expected.items():
        assert re.search(rf"line {line}: .*{re.escape(why)}", out), (line, why, out)
    # Caching does not die on them: the good row is cached, every other one is listed by line.
    assert main(["cache", *args, "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "1 cached" in out and "line 10: cannot read video" in out and "line 2: not valid JSON" in out


def test_cache_reencodes_only_what_changed(world, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(world / "toy" / "data", data)
    rows = [json.loads(x) for x in (data / "train.jsonl").read_text().splitlines()][:2]
    (data / "two.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text((world / "tiny_cpu.toml").read_text().replace('"toy/models', f'"{world}/toy/models'))
    args = ["--config", str(cfg_path), "--set", f"data.manifest=\"{data / 'two.jsonl'}\"",
            "--set", f"data.cache_dir=\"{tmp_path / 'cache'}\""]
    from mvs2v_train.cache import run_cache

    first = run_cache(load_config(cfg_path, args[3::2]), log=lambda m: None)
    assert first.encoded == {"video": 2, "text": 3, "ref": 2 * 3, "vit": 3, "gray": 1} and first.cached == 2
    again = run_cache(load_config(cfg_path, args[3::2]), log=lambda m: None)
    assert again.unchanged == 2 and sum(again.encoded.values()) == 0
    # A new caption re-encodes one text; a replaced view image re-encodes that view's variants only.
    rows[0]["caption"] = "a red box jumps"
    (data / "two.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    img = data / rows[1]["subjects"][0]["views"][1]["image"]
    shutil.copy(data / "refs" / "box0_back.png", img)
    third = run_cache(load_config(cfg_path, args[3::2]), log=lambda m: None)
    assert third.encoded == {"video": 0, "text": 1, "ref": 2, "vit": 1, "gray": 0}
    # The edited row is a new record; the row whose image changed keeps its key, with new item keys.
    store = CacheStore(tmp_path / "cache")
    assert len(store.records) == 3
    assert sum(store.records[row_key(s)]["refs"] != [] for s in TrainData(load_config(cfg_path, args[3::2])).samples) == 2


def test_curriculum_stages_yield_the_view_counts_they_promise(world):
    cfg = cfg_with(world, "views", "augment.subject_drop=0.0", "augment.reference_drop=0.0",
                   "augment.shuffle_subjects=0.0")
    data = TrainData(cfg)
    four = next(i for i, s in enumerate(data.samples) if s.split == "train" and s.view_counts == [4])
    model = build_model(cfg)
    draws = 400
    seen: dict[str, Counter] = {}
    for stage in cfg.stages:
        counts = Counter()
        for seed in range(draws):
            ex = data.example(four, seed, stage)
            k = ex.views_kept[0]
            counts[k] += 1
            assert ex.layout.num_filled == k and ex.ref_latents.shape[1] == 4  # K slots always present
            assert ex.layout.subjects[0].slots[0].filled  # the frontal view (slot 0) is always kept
            # The same ReferenceConditioning / position path as inference: under "drop" the empty slots
            # vanish from the token sequence, under "proxy" they stay.
            refs = model.conditioning(ex.ref_latents[None], ex.layout)
            assert refs.layout.kept_slots("proxy") == [0, 1, 2, 3]
            assert len(refs.layout.kept_slots("drop")) == k
        seen[stage.name] = counts
    assert seen["single-view"] == Counter({1: draws})
    sof = seen["single-or-full"]
    assert set(sof) == {1, 4} and 0.4 < sof[4] / draws < 0.6
    drop = seen["view-dropout"]
    assert set(drop) == {1, 2, 3, 4} and all(0.17 < drop[k] / draws < 0.33 for k in drop)
    polish = seen["polish"]  # dropout_prob 0.3: all four views 0.7 + 0.3/4 of the time
    assert set(polish) == {1, 2, 3, 4} and 0.68 < polish[4] / draws < 0.87
    # The dropout also reaches the DiT's token count under the "drop" mode.
    ex = data.example(four, 3, cfg.stages[0])
    assert build_position_ids((2, 2, 2), ex.layout, model.references.scheme, "drop").shape[0] == 8 + 1 * 4


# ---- training --------------------------------------------------------------------------------------


def _single_stage(views: str, steps: int, lr: float):
    def edit(d):
        d["stages"] = [{"name": "overfit", "steps": steps, "learning_rate": lr, "views": views}]
    return edit


@pytest.mark.slow
def test_loss_decreases_on_a_small_overfit_set(world):
    cfg = cfg_with(world, "overfit", "validation.every_n_steps=30", "validation.loss_split=\"train\"",
                   "augment.reference_drop=0.0", "augment.caption_drop=0.0", "checkpoint.every_n_steps=1000",
                   edit=lambda d: (_single_stage("full", 30, 1e-2)(d), d["validation"].pop("prompts")))
    result = run_training(cfg)
    (s0, before), (s1, after) = result.heldout
    assert (s0, s1) == (0, 30)
    assert after < 0.75 * before, result.heldout  # measured: 1.63 -> ~1.0
    first, last = sum(result.losses[:10]) / 10, sum(result.losses[-10:]) / 10
    assert last < first


def test_resume_continues_exactly(world):
    straight = cfg_with(world, "straight", "stages.0.steps=2", "stages.1.steps=2", "stages.2.steps=1",
                        "stages.3.steps=1", "checkpoint.every_n_steps=100")
    run_training(straight)
    cfg = cfg_with(world, "resumed", "stages.0.steps=2", "stages.1.steps=2", "stages.2.steps=1",
                   "stages.3.steps=1", "checkpoint.every_n_steps=100")
    first = run_training(cfg, stop_at_step=3)
    assert not first.completed and first.checkpoint.name == "step_00000003"
    second = run_training(cfg, resume="auto")
    assert second.start_step == 3 and second.completed
    with pytest.raises(MVS2VError, match="already holds a run .* continue it with --resume"):
        run_training(cfg)  # a fresh start would overwrite the finished run
    a, b = trainable_of(straight.output_dir, 6), trainable_of(cfg.output_dir, 6)
    assert a.keys() == b.keys() and len(a) == 43  # 40 LoRA tensors, proxy, MFI weight and bias
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    oa = load_file(str(straight.output_dir / "checkpoints/step_00000006/optimizer.safetensors"))
    ob = load_file(str(cfg.output_dir / "checkpoints/step_00000006/optimizer.safetensors"))
    assert max((oa[k].float() - ob[k].float()).abs().max().item() for k in oa) <= 1e-6
    # The log of the resumed run has each step once, the stage changes included.
    steps = [e["step"] for e in read_log(cfg.output_dir) if e["event"] == "step"]
    assert steps == [1, 2, 3, 4, 5, 6]
    stages = [e["name"] for e in read_log(cfg.output_dir) if e["event"] == "stage"]
    assert stages == ["single-view", "single-or-full", "view-dropout", "polish"]


def test_unreadable_samples_are_skipped_and_counted(world, tmp_path):
    rows = [json.loads(x) for x in (world / "toy/data/train.jsonl").read_text().splitlines()][:2]
    (world / "toy/data/pair.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cache = tmp_path / "cache"
    cfg = cfg_with(world, "skips", "data.manifest=\"toy/data/pair.jsonl\"", f"data.cache_dir=\"{cache}\"",
                   "data.cache_shard_items=1", edit=_single_stage("single", 3, 1e-3))
    from mvs2v_train.cache import run_cache

    assert run_cache(cfg, log=lambda m: None).cached == 2
    store = CacheStore(cache)
    data = TrainData(cfg)
    shard = store.items[store.records[row_key(data.samples[1])]["video"]]
    assert shard != store.items[store.records[row_key(data.samples[0])]["video"]]
    (cache / "shards" / shard).write_bytes(b"\0" * 16)  # the disk ate it
    result = run_training(cfg)
    assert result.completed and result.skipped_samples == 3  # one of the two samples, every step
    assert [e["skipped"] for e in read_log(cfg.output_dir) if e["event"] == "step"] == [1, 2, 3]
    assert all(torch.isfinite(torch.tensor(result.losses)))


@pytest.mark.slow
def test_two_processes_stay_in_sync_and_match_one_process(world):
    sets = ["stages.0.steps=2", "stages.1.steps=2", "stages.2.steps=1", "stages.3.steps=1",
            "logging.sync_check_every_n_steps=2", "checkpoint.every_n_steps=100"]
    args = ["-m", "mvs2v_train", "train", "--config", str(world / "tiny_cpu.toml")]
    for s in [*QUIET, "train.output_dir=\"runs/ddp\"", "train.batch_size=1", *sets]:
        args += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # `torchrun --nproc_per_node 2 -m mvs2v_train train ...`: two gloo processes on this CPU machine.
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", *args],
                          cwd=world, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = cfg_with(world, "one", "train.batch_size=2", *sets)
    run_training(single)
    ddp_dir = world / "runs" / "ddp"
    checks = [e for e in read_log(ddp_dir) if e["event"] == "sync_check"]
    assert [c["step"] for c in checks] == [2, 4, 6] and all(c["processes"] == 2 for c in checks)
    assert all(c["max_abs_diff"] == 0.0 for c in checks)
    state = json.loads((ddp_dir / "checkpoints/step_00000006/trainer_state.json").read_text())
    assert state["world_size"] == 2 and state["global_batch"] == 2
    a, b = trainable_of(ddp_dir, 6), trainable_of(single.output_dir, 6)
    # Same global batch, same samples: only the float summation order differs. AdamW divides each gradient
    # element by its own running magnitude, so an element whose gradient is nearly 0 can move by up to lr
    # (1e-3) on summation noise alone (measured: one LoRA B element of 11264 by 2.7e-4, the rest by <= 6e-5).
    # So: the LoRA B matrices (0 at the start, so their value is the whole update) must agree as a whole,
    # and almost every element must agree closely. Other samples or a wrong gradient differ by far more.
    lora_b = [k for k in a if k.endswith("lora_B.default.weight")]
    diff = torch.cat([(a[k] - b[k]).flatten() for k in lora_b])
    update = torch.cat([b[k].flatten() for k in lora_b])
    assert update.abs().max().item() > 1e-3  # the weights did train
    assert diff.norm().item() <= 1e-2 * update.norm().item(), (diff.norm().item(), update.norm().item())
    assert (diff.abs() > 1e-4).float().mean().item() <= 1e-3
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-3  # no element beyond one step of lr
    assert (ddp_dir / "adapter.safetensors").is_file()


# ---- export ----------------------------------------------------------------------------------------


def test_exported_adapter_loads_in_comfyui_form_and_matches_the_cli(world, tmp_path, capsys):
    cfg = cfg_with(world, "export", "validation.every_n_steps=4", "validation.loss_split=\"\"",
                   "checkpoint.every_n_steps=4", edit=_single_stage("dropout", 4, 1e-2))
    result = run_training(cfg)
    out = cfg.output_dir
    # 1. The CLI export of the last checkpoint writes the same tensors as the end-of-run export.
    assert main(["export", "--config", str(world / "tiny_cpu.toml"), "--set", f"train.output_dir=\"{out}\"",
                 "--out", str(tmp_path / "exported.safetensors")]) == 0
    with safe_open(str(result.adapter), "pt") as f:
        keys = set(f.keys())
        meta = json.loads(f.metadata()["mvs2v"])
        final = {k: f.get_tensor(k) for k in keys}
    exported = load_file(str(tmp_path / "exported.safetensors"))
    assert exported.keys() == final.keys() and all(torch.equal(exported[k], final[k]) for k in keys)
    # 2. Keys exactly as ComfyUI loads a Wan LoRA: diffusion_model.<Wan module>.lora_A/lora_B/alpha.
    targets = cfg.lora.targets
    lora_keys = {f"diffusion_model.blocks.{i}.{t}.{part}" for i in range(2) for t in targets
                 for part in ("lora_A.weight", "lora_B.weight", "alpha")}
    assert keys == lora_keys | {"proxy.tokens", "mfi.proj.weight", "mfi.proj.bias"}
    assert final["diffusion_model.blocks.0.ffn.0.lora_A.weight"].shape == (4, 128)
    assert final["diffusion_model.blocks.0.ffn.0.lora_B.weight"].shape == (256, 4)
    assert meta["position_scheme"]["name"] == "jump" and meta["slots_per_subject"] == 4
    assert meta["empty_slot_mode"] == "proxy" and meta["mfi_in_dim"] == 32
    assert meta["lora"]["rank"] == 4 and meta["training"]["step"] == 4
    adapter = load_adapter(result.adapter)
    assert len(apply_lora(WanDiT(TINY_DIT), adapter.lora)) == 2 * len(targets)
    # 3. The trainer's validation sample == `mvs2v generate --adapter` for the same seed and settings.
    trainer_lat = load_file(str(out / "samples/step_00000004/prompt_00.latents.safetensors"))["latents"]
    before_lat = load_file(str(out / "samples/step_00000000/prompt_00.latents.safetensors"))["latents"]
    toy = world / "toy"
    refs = toy / "data/refs"
    video = tmp_path / "cli.mp4"
    v = cfg.validation
    argv = ["generate", "--dit", str(toy / "models/tiny_dit.safetensors"), "--vae", str(toy / "models/vae"),
            "--text-encoder", str(toy / "models/umt5"), "--vision-encoder", str(toy / "models/clip_vision"),
            "--adapter", str(result.adapter),
            "--subject", f"box={refs / 'box0_front.png'}@front,{refs / 'box0_left.png'}@left",
            "--prompt", v.prompts[0].prompt, "--negative-prompt", v.prompts[0].negative_prompt,
            "--width", "32", "--height", "32", "--frames", "5", "--steps", str(v.steps), "--seed", "7",
            "--shift", str(v.shift), "--solver", v.solver, "--ref-scale", str(v.ref_scale),
            "--text-scale", str(v.text_scale), "--device", "cpu", "--dtype", "fp32", "--out", str(video),
            "--save-latents"]
    assert mvs2v_main(argv) == 0
    cli_lat = load_file(str(video.with_suffix(".latents.safetensors")))["latents"]
    assert cli_lat.shape == (1, 4, 2, 4, 4)
    assert (cli_lat - trainer_lat).abs().max().item() < 1e-4  # LoRA merged (CLI) vs unmerged (trainer)
    assert (cli_lat - before_lat).abs().max().item() > 1e-2  # and training did change the result
    assert (out / "samples/step_00000004/prompt_00.mp4").is_file()
    assert (out / "samples/step_00000004/prompt_00.webp").is_file()


def test_full_finetune_with_gray_slots_exports_a_loadable_dit(world, tmp_path):
    rows = [json.loads(x) for x in (world / "toy/data/train.jsonl").read_text().splitlines()][2:3]
    (world / "toy/data/one.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def edit(d):
        d["model"]["vision_encoder"] = ""
        d["trainable"].update(proxy=False, mfi=False, lora=False, full=True)
        d["references"].update(empty_slot_mode="gray", scheme="ts")
        d["validation"].pop("prompts")
        d["stages"] = [{"name": "full", "steps": 2, "learning_rate": 1e-3, "views": "dropout"}]

    cfg = cfg_with(world, "full", "data.manifest=\"toy/data/one.jsonl\"", f"data.cache_dir=\"{tmp_path / 'c'}\"",
                   edit=edit)
    from mvs2v_train.cache import run_cache

    assert run_cache(cfg, log=lambda m: None).encoded["vit"] == 0  # no MFI: no ViT features
    result = run_training(cfg)
    adapter = load_adapter(result.adapter)
    assert adapter.proxy_tokens is None and not adapter.has_mfi and not adapter.lora
    refs = adapter.metadata.references
    assert refs.empty_slot_mode == "gray" and refs.scheme.name == "ts"
    from mvs2v_core.model.loading import load_dit

    tuned = load_dit(result.adapter.with_name("adapter.dit.safetensors"))
    base = load_dit(world / "toy/models/tiny_dit.safetensors")
    trained = trainable_of(cfg.output_dir, 2)
    assert len(trained) == len(list(base.parameters()))  # every DiT weight trained
    w = "blocks.1.cross_attn.k.weight"
    assert torch.allclose(tuned.state_dict()[w].float(), trained[f"dit.{w}"], atol=1e-2)  # stored in bf16
    assert (tuned.state_dict()[w].float() - base.state_dict()[w]).abs().max() > 1e-4
