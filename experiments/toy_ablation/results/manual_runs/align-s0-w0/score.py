"""Score the W0-leg checkpoints of `base` and `align` (make_configs.py) on the held-out W0 scenes, as they
appear. Training seed 0: steps 600, 1200 and 1800 on 32 scenes x sampling seed 0 (the curve), step 2400 on
32 scenes x seeds 0 and 1 (the protocol of docs/cached_references.md's W0 comparison); bench folders (no
videos) beside this file. Training seed N > 0: steps 1200 and 2400 on 32 scenes x sampling seed 0, in
``../align-sN-w0/``. Resumable (a finished bench is skipped, a bench under way continues).

    PYTHONPATH=. OMP_NUM_THREADS=1 python experiments/toy_ablation/results/manual_runs/align-s0-w0/score.py \
        /work/runs/abl_anchored /work/runs/alignW0 [SEED]
"""

import subprocess
import sys
import time
from pathlib import Path

from experiments.toy_ablation.arms import ARMS, AblationSettings
from experiments.toy_ablation.files import Layout, read_json
from experiments.toy_ablation.models import export_model
from mvs2v_train.config import load_config

src, runs = Path(sys.argv[1]), Path(sys.argv[2])
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
HERE = Path(__file__).resolve().parent.parent / f"align-s{seed}-w0"
STEPS = {600: "0", 1200: "0", 1800: "0", 2400: "0,1"} if seed == 0 else {1200: "0", 2400: "0"}
layout = Layout(src)
s = AblationSettings.from_json(read_json(layout.settings))


def score(name: str, step: int) -> bool:
    """Export and bench one checkpoint of arm ``name``; False while it does not exist yet."""
    out = HERE / name / "bench" / f"w0_{step:08d}"
    if (out / "results.json").is_file():
        return True
    run = runs / (name if seed == 0 else f"{name}-s{seed}")
    ckpt = run / "train" / "checkpoints" / f"step_{step:08d}"
    if not (ckpt / "trainer_state.json").is_file():
        return False
    model = run / "models" / f"step_{step:08d}"
    if not (model / "model.json").is_file():
        cfg = load_config(run / "train.toml")
        export_model(layout, cfg, ckpt, model, s, s.arm(ARMS[name]), f"{name}-s{seed}-w0",
                     f"mvs2v-train train --config {run / 'train.toml'}", step)
    mvs2v = Path(sys.executable).parent / "mvs2v"
    subprocess.run([str(mvs2v), "toy-bench", "--model", str(model), "--out", str(out), "--world", "w0",
                    "--scenes", "32", "--seeds", STEPS[step], "--eval-seed", "1000", "--rows", "multi", "--batch", "16",
                    "--steps", "20"], check=True)
    return True


while True:
    pending = [(n, st) for st in STEPS for n in ("base", "align") if not score(n, st)]
    if not pending:
        break
    time.sleep(60)
print("all scored")
