"""mvs2v-train building blocks, without data on disk: config, curriculum, timesteps, LoRA, checkpoints."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import pytest
import torch
from mvs2v_train import checkpoint as ckpt
from mvs2v_train.cli import main
from mvs2v_train.config import ConfigError, StageSection, TimestepsSection, load_config
from mvs2v_train.curriculum import Curriculum, plan_views, sample_at, stage_accepts
from mvs2v_train.lora import add_lora, lora_triples
from mvs2v_train.manifest import read_manifest
from mvs2v_train.timesteps import loss_weight, sample_sigma
from torch import nn

from mvs2v_core.errors import MVS2VError

CONFIGS = Path(__file__).resolve().parents[2] / "train" / "configs"


# ---- config ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.toml")))
def test_example_configs_parse(name):
    cfg = load_config(CONFIGS / name)
    assert len(cfg.stages) == 4
    assert [s.views for s in cfg.stages][:3] == ["single", "single_or_full", "dropout"]
    assert cfg.stages[3].views == "dropout" and cfg.stages[3].dropout_prob < cfg.stages[2].dropout_prob
    assert cfg.total_steps == sum(s.steps for s in cfg.stages)


def test_example_configs_cover_the_targets_of_the_issue():
    names = {p.stem for p in CONFIGS.glob("*.toml")}
    assert {"tiny_cpu", "wan21_1.3b", "wan21_14b_fsdp", "wan22_5b"} <= names
    assert (CONFIGS / "accelerate_fsdp_14b.yaml").is_file()


def _write(tmp_path: Path, text: str) -> Path:
    src = (CONFIGS / "tiny_cpu.toml").read_text()
    p = tmp_path / "c.toml"
    p.write_text(src + "\n" + text)
    return p


def test_config_errors_name_the_key_and_the_fix(tmp_path, capsys):
    p = tmp_path / "c.toml"
    p.write_text((CONFIGS / "tiny_cpu.toml").read_text().replace("batch_size = 2", "batch_sise = 2"))
    with pytest.raises(ConfigError, match=r"train\.batch_sise is not a key of \[train\] \(did you mean 'batch_size'\?\)"):
        load_config(p)
    p.write_text((CONFIGS / "tiny_cpu.toml").read_text().replace('views = "single"', 'views = "one"'))
    with pytest.raises(ConfigError, match=r"stages\[0\]\.views is 'one'; use one of 'single'"):
        load_config(p)
    p.write_text((CONFIGS / "tiny_cpu.toml").read_text().replace("frames = 5", "frames = 6", 1))
    with pytest.raises(ConfigError, match="4n\\+1.*use 5 or 9"):
        load_config(p)
    # Through the command line: one line, no traceback, status 2.
    p.write_text((CONFIGS / "tiny_cpu.toml").read_text().replace("proxy = true", "proxy = false"))
    assert main(["train", "--config", str(p)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and "trainable.proxy" in err


def test_overrides_reach_lists_and_tables(tmp_path):
    cfg = load_config(CONFIGS / "tiny_cpu.toml", ["stages.2.steps=7", "train.seed=9", "lora.targets=[\"ffn.0\"]"])
    assert cfg.stages[2].steps == 7 and cfg.train.seed == 9 and cfg.lora.targets == ["ffn.0"]
    with pytest.raises(ConfigError, match="no entry 9"):
        load_config(CONFIGS / "tiny_cpu.toml", ["stages.9.steps=1"])


# ---- curriculum ------------------------------------------------------------------------------------


def _stage(**kw) -> StageSection:
    return StageSection(**kw)


def test_stage_boundaries_and_learning_rate_restart_per_stage():
    stages = [_stage(name="a", steps=4, learning_rate=1.0, warmup_steps=2),
              _stage(name="b", steps=4, learning_rate=0.5, lr_schedule="linear", min_lr_ratio=0.0)]
    cur = Curriculum(stages)
    assert [cur.locate(s).index for s in range(8)] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert cur.locate(5).step_in_stage == 1
    assert [cur.learning_rate(s) for s in range(4)] == [0.5, 1.0, 1.0, 1.0]
    assert [round(cur.learning_rate(s), 4) for s in range(4, 8)] == [0.5, 0.375, 0.25, 0.125]
    with pytest.raises(IndexError):
        cur.locate(8)


def _counts(stage: StageSection, n: int, draws: int = 2000) -> Counter:
    rng = random.Random(0)
    return Counter(len(plan_views(stage, [n], [0], rng)[0]) for _ in range(draws))


def test_view_policies_promise_their_counts():
    assert _counts(_stage(views="single"), 4) == Counter({1: 2000})
    assert _counts(_stage(views="full"), 3) == Counter({3: 2000})
    c = _counts(_stage(views="single_or_full", full_view_prob=0.25), 4)
    assert set(c) == {1, 4} and abs(c[4] / 2000 - 0.25) < 0.04
    c = _counts(_stage(views="dropout", dropout_prob=1.0), 4)
    assert set(c) == {1, 2, 3, 4} and all(abs(c[k] / 2000 - 0.25) < 0.04 for k in c)
    c = _counts(_stage(views="dropout", dropout_prob=0.4), 4)
    assert abs(c[4] / 2000 - (0.6 + 0.4 / 4)) < 0.04 and abs(c[1] / 2000 - 0.1) < 0.03
    # The kept views: frontal first for single view; frontal always kept under keep_frontal.
    rng = random.Random(1)
    st = _stage(views="dropout", keep_frontal=True)
    assert all(2 in plan_views(st, [4], [2], rng)[0] for _ in range(200))
    assert plan_views(_stage(views="single"), [4, 2], [3, 1], rng) == [[3], [1]]


def test_data_order_is_a_permutation_per_epoch_and_reproducible():
    eligible = [10, 11, 12, 13, 14]
    epoch0 = [sample_at(eligible, 3, 1, p) for p in range(5)]
    epoch1 = [sample_at(eligible, 3, 1, p) for p in range(5, 10)]
    assert sorted(epoch0) == eligible and sorted(epoch1) == eligible and epoch0 != epoch1
    assert epoch0 == [sample_at(eligible, 3, 1, p) for p in range(5)]
    assert epoch0 != [sample_at(eligible, 4, 1, p) for p in range(5)]


# ---- timesteps -------------------------------------------------------------------------------------


@pytest.mark.parametrize("sampling", ["shifted", "logit_normal", "uniform"])
def test_timesteps_respect_expert_bounds(sampling):
    g = torch.Generator().manual_seed(0)
    high = TimestepsSection(sampling=sampling, shift=5.0, min_timestep=875.0, max_timestep=1000.0)
    low = TimestepsSection(sampling=sampling, shift=5.0, min_timestep=0.0, max_timestep=875.0)
    hs = [sample_sigma(high, g) for _ in range(500)]
    ls = [sample_sigma(low, g) for _ in range(500)]
    assert min(hs) >= 0.875 and max(hs) <= 1.0 and max(ls) <= 0.875 and min(ls) > 0
    # Truncated, not clipped: no pile-up at the bound.
    assert sum(s == 0.875 for s in hs + ls) == 0


def test_shift_moves_mass_to_high_noise_and_weights():
    g = torch.Generator().manual_seed(0)
    plain = sorted(sample_sigma(TimestepsSection(sampling="uniform"), g) for _ in range(2001))
    shifted = sorted(sample_sigma(TimestepsSection(sampling="shifted", shift=5.0), g) for _ in range(2001))
    assert abs(plain[1000] - 0.5) < 0.05
    assert abs(shifted[1000] - 5 * 0.5 / (1 + 4 * 0.5)) < 0.05  # median of shift(U) = shift(0.5) = 0.833
    assert loss_weight(TimestepsSection(weighting="none"), 0.3) == 1.0
    assert loss_weight(TimestepsSection(weighting="cosmap"), 0.5) == pytest.approx(4 / torch.pi)
    assert loss_weight(TimestepsSection(weighting="sigma_sqrt"), 0.5) == pytest.approx(4.0)


# ---- LoRA ------------------------------------------------------------------------------------------


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.self_attn = nn.Module()
        self.self_attn.q = nn.Linear(8, 8)
        self.self_attn.k = nn.Linear(8, 8)
        self.ffn = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8))


def test_lora_starts_at_zero_and_merges_like_comfyui():
    torch.manual_seed(0)
    model = nn.Module()
    model.blocks = nn.ModuleList([_Block(), _Block()])
    x = torch.randn(3, 8)
    before = model.blocks[1].ffn(model.blocks[1].self_attn.q(x))
    rng = torch.get_rng_state()
    wrapped = add_lora(model, ["self_attn.q", "ffn.0"], rank=2, alpha=4.0, seed=1)
    assert torch.equal(torch.get_rng_state(), rng)  # the init draws from its own seeded generator
    assert sorted(wrapped) == ["blocks.0.ffn.0", "blocks.0.self_attn.q", "blocks.1.ffn.0", "blocks.1.self_attn.q"]
    assert [n for n, p in model.named_parameters() if p.requires_grad][:2] == [
        "blocks.0.self_attn.q.lora_A.default.weight", "blocks.0.self_attn.q.lora_B.default.weight"]
    assert torch.equal(model.blocks[1].ffn(model.blocks[1].self_attn.q(x)), before)  # B = 0
    layer = model.blocks[0].self_attn.q
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    # Kaiming-uniform A from the LoRA seed: the same draw as the trainer's hand-written layers made.
    expected = torch.empty(2, 8)
    nn.init.kaiming_uniform_(expected, a=5 ** 0.5, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, expected) and a.dtype == b.dtype == torch.float32
    with torch.no_grad():
        b.normal_()
    merged = x @ (layer.base_layer.weight + 2.0 * b @ a).T + layer.base_layer.bias
    assert torch.allclose(layer(x), merged, atol=1e-5)
    (ta, tb, alpha) = lora_triples(model)["blocks.0.self_attn.q"]
    assert alpha == 4.0 and torch.equal(ta, a) and torch.equal(tb, b)
    assert layer.weight is layer.base_layer.weight  # code reading .weight keeps working
    with pytest.raises(MVS2VError, match=r"lora.targets \['cross_attn.q'\] match no linear layer"):
        add_lora(model, ["cross_attn.q"], 2, 2.0)


def test_lora_is_float32_over_a_bf16_base():
    model = nn.Module()
    model.blocks = nn.ModuleList([_Block()])
    model.to(torch.bfloat16)
    layer = add_lora(model, ["self_attn.q"], rank=2, alpha=2.0)["blocks.0.self_attn.q"]
    assert layer.lora_A["default"].weight.dtype == layer.lora_B["default"].weight.dtype == torch.float32
    assert layer.base_layer.weight.dtype == torch.bfloat16
    assert layer(torch.randn(3, 8, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_version_1_checkpoint_names_are_read_as_peft_names(tmp_path):
    from safetensors.torch import save_file

    old = {"dit.blocks.0.ffn.0.lora_A": torch.ones(2, 4), "proxy.tokens": torch.zeros(3)}
    save_file(old, str(tmp_path / "trainable.safetensors"))
    assert sorted(ckpt.read_trainable(tmp_path)) == ["dit.blocks.0.ffn.0.lora_A.default.weight", "proxy.tokens"]
    p = nn.Parameter(torch.randn(2, 4))
    opt = torch.optim.AdamW([p])
    p.sum().backward()
    opt.step()
    tensors, meta = ckpt.optimizer_state_to_files(opt.state_dict(), [["dit.blocks.0.ffn.0.lora_A"]])
    save_file(tensors, str(tmp_path / "optimizer.safetensors"))
    ckpt.write_json_atomic(tmp_path / "optimizer.json", meta)
    new = "dit.blocks.0.ffn.0.lora_A.default.weight"
    state = ckpt.read_optimizer(tmp_path, [[new]], keyed_by_name=True)
    assert state["param_groups"][0]["params"] == [new] and torch.equal(state["state"][new]["exp_avg"],
                                                                         opt.state_dict()["state"][0]["exp_avg"])


# ---- checkpoint pieces -----------------------------------------------------------------------------


def test_optimizer_state_round_trips_through_safetensors_and_json(tmp_path):
    torch.manual_seed(0)
    a, b = nn.Parameter(torch.randn(3)), nn.Parameter(torch.randn(2, 2))
    opt = torch.optim.AdamW([{"params": [a], "lr_scale": 2.0}, {"params": [b]}], lr=0.1, betas=(0.8, 0.9))
    for _ in range(3):
        (a.sum() ** 2 + (b ** 3).sum()).backward()
        opt.step()
        opt.zero_grad()
    names = [["a"], ["b"]]
    tensors, meta = ckpt.optimizer_state_to_files(opt.state_dict(), names)
    assert sorted(tensors) == sorted(f"state/{n}/{k}" for n in "ab" for k in ("exp_avg", "exp_avg_sq", "step"))
    opt2 = torch.optim.AdamW([{"params": [a], "lr_scale": 2.0}, {"params": [b]}], lr=0.1)
    opt2.load_state_dict(ckpt.optimizer_state_from_files(tensors, meta, names))
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s2["param_groups"][0]["betas"] == (0.8, 0.9) and s2["param_groups"][0]["lr_scale"] == 2.0
    for pid in s1["state"]:
        for k, v in s1["state"][pid].items():
            assert torch.equal(v, s2["state"][pid][k])
    with pytest.raises(MVS2VError, match="other parameters"):
        ckpt.optimizer_state_from_files(tensors, meta, [["a"], ["c"]])


def test_rng_state_round_trips(tmp_path):
    ckpt.write_rank_rng(tmp_path, 0)
    expected = (torch.rand(3), random.random())
    torch.rand(5), random.random()
    assert ckpt.restore_rank_rng(tmp_path, 3)  # falls back to process 0's state
    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]


def test_commit_is_atomic_and_prunes(tmp_path):
    for step in (1, 2, 3):
        part = ckpt.begin(tmp_path, step)
        ckpt.write_json_atomic(part / "trainer_state.json", {"format": ckpt.FORMAT, "version": 1, "global_step": step})
        ckpt.commit(tmp_path, part, step, keep_last=2)
    # A crash mid-write leaves only a hidden partial folder, never a half checkpoint.
    ckpt.begin(tmp_path, 4)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_00000002", "step_00000003"]
    assert ckpt.find_latest(tmp_path).name == "step_00000003"


# ---- manifest --------------------------------------------------------------------------------------


def test_manifest_rows_and_stage_filters(tmp_path):
    (tmp_path / "v.mp4").write_bytes(b"x")
    (tmp_path / "a.png").write_bytes(b"x")
    rows = [
        '{"video": "v.mp4", "caption": "a", "subjects": [{"name": "s", "views": [{"image": "a.png", "label": "front"},'
        ' {"image": "a.png", "yaw": 90}]}], "quality": 0.9, "tags": ["curated"]}',
        '{"video": "v.mp4", "caption": "b", "subjects": [{"name": "s", "views": ["a.png"]}], "split": "val"}',
        '{"video": "v.mp4", "caption": "c"}',
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(rows) + "\n")
    rep = read_manifest(tmp_path / "m.jsonl", 4)
    assert rep.problems == [] and [s.max_views for s in rep.samples] == [2, 1, 0]
    st = _stage(filter=StageSection().filter.__class__(splits=["train"], min_views=2, min_quality=0.8,
                                                        tags=["curated"]))
    assert [stage_accepts(st, s) for s in rep.samples] == [True, False, False]
    assert rep.samples[0].subjects[0].layout_frontal() == 0
    assert re.match(r"line-2", rep.samples[1].id)


def _example(filled_views, seed):
    import torch

    from mvs2v_core.references.layout import ReferenceLayout
    from mvs2v_train.data import Example

    g = torch.Generator().manual_seed(seed)
    layout = ReferenceLayout.build([filled_views], 4)
    return Example(torch.randn(4, 2, 4, 4, generator=g), torch.randn(4, 2, 4, 4, generator=g), 0.5, 1.0,
                   torch.randn(3, 8, generator=g), torch.randn(4, 4, 4, 4, generator=g), layout, None)


def test_view_dropout_draws_share_one_forward_unless_slots_are_dropped():
    """Under proxy / gray, examples that fill different slots go into one batch with per-sample layouts;
    under drop (token counts differ) they stay apart; equal layouts never carry per-sample layouts."""
    from mvs2v_train.data import group_examples

    examples = [_example(["front", "left"], 0), _example(["front"], 1), _example(["front", "left"], 2)]
    mixed = group_examples(examples, 8, mixed_layouts=True)
    assert len(mixed) == 1 and mixed[0].size == 3
    assert [lay.filled for lay in mixed[0].sample_layouts] == [e.layout.filled for e in examples]
    apart = group_examples(examples, 8, mixed_layouts=False)
    assert [b.size for b in apart] == [2, 1] and all(b.sample_layouts is None for b in apart)
    same = group_examples([examples[0], examples[2]], 8, mixed_layouts=True)
    assert len(same) == 1 and same[0].sample_layouts is None
