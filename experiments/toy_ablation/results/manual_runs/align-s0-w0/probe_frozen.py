"""How much does the toy alignment target ask of the DiT? Fit a fresh projector on a *frozen* DiT and
compare its alignment loss with the align run's own (DiT and projector trained together).

For each DiT (the init model, base's and align's step-2400 checkpoints) a new projector (the align arm's
settings, its seed) is trained alone for 300 steps (AdamW, lr 5e-4, batch 8, W0 rows, the W0 leg's view
dropout); the mean alignment loss over the last 50 steps is printed. The align run's own projector, on
its own DiT, is scored on the same batches without training.

    PYTHONPATH=. OMP_NUM_THREADS=1 python experiments/toy_ablation/results/manual_runs/align-s0-w0/probe_frozen.py /work/runs/alignW0
"""

import json
import sys
from pathlib import Path

import torch
from mvs2v_train import checkpoint as ckpt
from mvs2v_train.config import load_config
from mvs2v_train.curriculum import derive_seed
from mvs2v_train.data import TrainData, group_examples
from mvs2v_train.model import build_model

runs = Path(sys.argv[1])
cfg = load_config(runs / "align" / "train.toml")
data = TrainData(cfg)
stage = cfg.stages[0]
eligible = data.eligible(stage)
STEPS, BATCH, TAIL = (int(sys.argv[2]) if len(sys.argv) > 2 else 300), 8, 50


def batches(step: int):
    examples = []
    for j in range(BATCH):
        seed = derive_seed(12345, "probe", step, j)
        examples.append(data.example(eligible[seed % len(eligible)], seed, stage))
    return group_examples(examples, 32, mixed_layouts=True)


def load_dit_weights(model, source: Path | None) -> None:
    if source is None:
        return
    tensors = ckpt.read_trainable(source)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if (name.startswith("dit.") or name.startswith("proxy.")) and name in tensors:
                p.copy_(tensors[name])


def fit_projector(source: Path | None) -> float:
    model = build_model(cfg)
    load_dit_weights(model, source)
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith("align."))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-4, betas=(0.9, 0.99))
    tail = []
    for step in range(STEPS):
        opt.zero_grad()
        loss = sum_align(model, batches(step))  # the DiT is frozen: only the projector learns
        loss.backward()
        opt.step()
        if step >= STEPS - TAIL:
            tail.append(float(loss.detach()))
    return sum(tail) / len(tail)


def sum_align(model, units) -> torch.Tensor:
    """The alignment loss per sample with a target, with its graph (one forward per unit)."""
    total, count = None, 0
    for unit in units:
        with model._align_hook:
            model.velocity(*_velocity_args(unit))
        per = model._alignment_loss(unit, tuple(unit.x0.shape))
        has = unit.align_filled.any(dim=1)
        term = (per * has).sum()
        total = term if total is None else total + term
        count += int(has.sum())
    return total / max(count, 1)


def _velocity_args(unit):
    s = unit.sigma.view(-1, 1, 1, 1, 1)
    x_t = (1 - s) * unit.x0 + s * unit.noise
    return (x_t, unit.sigma * 1000.0, unit.context, unit.ref_latents, unit.layout, unit.mfi_features,
            unit.sample_layouts)


def own_projector(source: Path) -> float:
    model = build_model(cfg)
    ckpt.load_trainable_into(model, ckpt.read_trainable(source), source)
    model.eval()
    with torch.no_grad():
        return sum(float(sum_align(model, batches(step))) for step in range(STEPS - TAIL, STEPS)) / TAIL


step2400 = "checkpoints/" + (sys.argv[3] if len(sys.argv) > 3 else "step_00002400")
out = {
    "align run, its own projector (trained with the DiT)": own_projector(runs / "align" / "train" / step2400),
    "frozen init DiT, projector alone": fit_projector(None),
    "frozen base step-2400 DiT, projector alone": fit_projector(runs / "base" / "train" / step2400),
    "frozen align step-2400 DiT, new projector alone": fit_projector(runs / "align" / "train" / step2400),
}
print(json.dumps(out, indent=1))
if len(sys.argv) <= 2:
    (Path(__file__).parent / "probe_frozen.json").write_text(json.dumps(out, indent=1) + "\n")
