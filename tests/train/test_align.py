"""The trainer's reference alignment loss (``[align]``): targets, masking, and what training does with it.

Causal checks: the loss reads the filled slots' features and only those; with the loss on, the aligned
block's reference tokens come to predict their image's features (the loss falls where the velocity
loss alone leaves it), the DiT's weights receive its gradient, and the projector stays out of the adapter.
"""

from __future__ import annotations

import shutil

import pytest
import torch
from mvs2v_train.align import ReferenceAlignment, grid_targets, patch_grid_features
from mvs2v_train.cli import main
from mvs2v_train.config import parse_config, parse_override
from mvs2v_train.testing import TINY_CONFIG, make_toy_world
from mvs2v_train.trainer import read_log, run_training
from safetensors.torch import load_file

from mvs2v_core.adapter import load_adapter
from mvs2v_core.config_files import toml_module
from mvs2v_core.errors import MVS2VError

QUIET = ["logging.progress_bar=false", "logging.tensorboard=false", "checkpoint.every_n_steps=100"]


def test_patch_grid_drops_class_and_register_tokens_and_resizes():
    feats = torch.arange(2 * 3 * 17 * 4, dtype=torch.float32).view(2, 3, 17, 4)  # class token + 4 x 4 patches
    grid = patch_grid_features(feats)
    assert grid.shape == (2, 3, 4, 4, 4) and torch.equal(grid[0, 0, 0, 0], feats[0, 0, 1])
    assert patch_grid_features(torch.zeros(1, 261, 8)).shape == (1, 16, 16, 8)  # DINOv2 + 4 registers at 224 px
    assert patch_grid_features(torch.zeros(1, 16, 8)).shape == (1, 4, 4, 8)  # SigLIP: patches only
    same = grid_targets(feats, 4, 4)
    assert torch.equal(same, grid)
    assert grid_targets(feats, 2, 8).shape == (2, 3, 2, 8, 4)
    with pytest.raises(MVS2VError, match="not a square patch grid"):
        patch_grid_features(torch.zeros(1, 24, 8))  # a 4 x 6 grid


def test_loss_reads_filled_slots_only():
    torch.manual_seed(0)
    align = ReferenceAlignment(dim=8, feature_dim=6, hidden=16, block=0)
    hidden = torch.randn(2, 10 + 3 * 4, 8)  # 10 video tokens, then 3 kept slots of 2 x 2 tokens
    feats = torch.randn(2, 4, 5, 6)  # 4 slots, class token + 2 x 2 patches
    filled = torch.tensor([[True, False, True, False], [False, False, False, False]])
    kept = (0, 1, 2)
    loss = align.per_sample_loss(hidden, 10, kept, (2, 2), feats, filled)
    assert loss.shape == (2,) and 0 < loss[0] < 2 and loss[1] == 0  # a sample without targets adds nothing
    changed = feats.clone()
    changed[:, 1] = torch.randn(2, 5, 6)  # an empty slot's features: no effect
    assert torch.equal(align.per_sample_loss(hidden, 10, kept, (2, 2), changed, filled), loss)
    changed[0, 2] = -feats[0, 2]  # a filled slot's target: the loss follows
    assert not torch.allclose(align.per_sample_loss(hidden, 10, kept, (2, 2), changed, filled), loss)
    moved = hidden.clone()
    moved[:, :10] += 5.0  # the video tokens are not scored
    assert torch.equal(align.per_sample_loss(moved, 10, kept, (2, 2), feats, filled), loss)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("align")
    make_toy_world(root / "toy")
    shutil.copy(TINY_CONFIG, root / "tiny_cpu.toml")
    assert main(["cache", "--config", str(root / "tiny_cpu.toml"), "--device", "cpu"]) == 0
    return root


def config(world, out: str, weight: float, steps: int, *overrides: str):
    data = toml_module().loads((world / "tiny_cpu.toml").read_text())
    data["validation"].pop("prompts")
    data["stages"] = [{"name": "all", "steps": steps, "learning_rate": 3e-3, "views": "full"}]
    for text in [*QUIET, f"train.output_dir=\"runs/{out}\"", f"align.weight={weight}", "align.projector_dim=32",
                 *overrides]:
        keys, value = parse_override(text)
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = value
    return parse_config(data, world / "tiny_cpu.toml")


def align_losses(cfg) -> list[float]:
    return [e["align_loss"] for e in read_log(cfg.output_dir) if e["event"] == "step"]


def test_training_aligns_reference_tokens_and_exports_no_projector(world):
    on = config(world, "align_on", 1.0, 24)
    result = run_training(on)
    losses = align_losses(on)
    assert len(losses) == 24
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.5 * first, losses  # measured: 0.96 at step 1, 0.16 at step 24
    ckpt = load_file(str(on.output_dir / "checkpoints" / "step_00000024" / "trainable.safetensors"))
    assert {k for k in ckpt if k.startswith("align.")} == {f"align.proj.{i}.{p}" for i in (0, 2, 4)
                                                          for p in ("weight", "bias")}
    adapter = load_adapter(result.adapter)
    assert adapter.lora and adapter.has_mfi  # the adapter has what inference runs, not the projector
    # The loss reaches the DiT: the same run without it ends with other LoRA weights.
    off = config(world, "align_off", 0.0, 24)
    run_training(off)
    plain = load_file(str(off.output_dir / "checkpoints" / "step_00000024" / "trainable.safetensors"))
    assert not any(k.startswith("align.") for k in plain)
    assert "align_loss" not in next(e for e in read_log(off.output_dir) if e["event"] == "step")
    lora_b = [k for k in plain if "lora_B" in k]
    assert len(lora_b) == 20
    assert max((ckpt[k] - plain[k]).abs().max().item() for k in lora_b) > 1e-3
    # The logged loss is the velocity loss in both runs, so the two are comparable.
    v_on = [e["loss"] for e in read_log(on.output_dir) if e["event"] == "step"]
    assert abs(v_on[0] - [e["loss"] for e in read_log(off.output_dir) if e["event"] == "step"][0]) < 1e-4


def test_alignment_run_resumes_exactly(world):
    straight = config(world, "align_straight", 0.5, 4, "align.block=1")
    run_training(straight)
    cfg = config(world, "align_resumed", 0.5, 4, "align.block=1")
    run_training(cfg, stop_at_step=2)
    run_training(cfg, resume="auto")
    a = load_file(str(straight.output_dir / "checkpoints" / "step_00000004" / "trainable.safetensors"))
    b = load_file(str(cfg.output_dir / "checkpoints" / "step_00000004" / "trainable.safetensors"))
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    assert align_losses(straight)[2:] == pytest.approx(align_losses(cfg)[2:], abs=1e-6)


def test_block_outside_the_dit_is_a_clear_error(world):
    with pytest.raises(MVS2VError, match=r"align.block = 5 but the DiT has 2 blocks \(0..1\)"):
        run_training(config(world, "align_bad", 0.5, 1, "align.block=5"))
