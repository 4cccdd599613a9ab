"""The W0 leg (the first 2400 steps) of the anchored recipe for `base` and `align`, seed 0, from the
anchored runner's --out (its data, caches, encoders and init adapters): two standalone trainer configs.

Both train on `data_merged/w0_only.jsonl`, the merged manifest's W0 rows in their order (so the W0 leg
draws the same samples as in the merged manifest, and the vision-feature cache encodes 4000 rows, not 18000).

    PYTHONPATH=. python experiments/toy_ablation/results/manual_runs/align-s0-w0/make_configs.py /work/runs/abl_anchored /work/runs/alignW0 [SEED]
    mvs2v-train cache --config /work/runs/alignW0/align/train.toml      # the toy vision encoder's features
    mvs2v-train train --config /work/runs/alignW0/{base,align}/train.toml
"""

import sys
from pathlib import Path

from experiments.toy_ablation.arms import ARMS, AblationSettings
from experiments.toy_ablation.data import write_init_adapter
from experiments.toy_ablation.files import DEFAULT_INIT, Layout, read_json, write_train_config
from experiments.toy_ablation.recipes import train_config

src, dest = Path(sys.argv[1]), Path(sys.argv[2])
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0  # seed 0: DEST/base, DEST/align; seed N: DEST/<arm>-sN
layout = Layout(src)
s = AblationSettings.from_json(read_json(layout.settings))
merged = layout.merged / "manifest.jsonl"
w0_only = layout.merged / "w0_only.jsonl"
rows = [line for line in merged.read_text().splitlines(keepends=True) if '"world-w0"' in line]
assert len(rows) == 4000
if not w0_only.is_file() or w0_only.read_text() != "".join(rows):
    w0_only.write_text("".join(rows))
w0_stages = [i for i, leg in enumerate(s.schedule) if leg == "w0:2400"]
assert w0_stages == [0], s.schedule  # the recipe starts with the W0 leg
for arm_name in ("base", "align"):
    name = arm_name if seed == 0 else f"{arm_name}-s{seed}"
    arm = s.arm(ARMS[arm_name])
    adapter = write_init_adapter(DEFAULT_INIT, arm, dest / f"{arm_name}.init.adapter.safetensors")
    cfg = train_config(layout, s, arm, seed, DEFAULT_INIT, adapter)
    cfg["stages"] = [st for st in cfg["stages"] if st["name"].startswith("leg1-")]
    assert sum(st["steps"] for st in cfg["stages"]) == 2400
    cfg["train"]["output_dir"] = str((dest / name / "train").resolve())
    cfg["data"]["manifest"] = str(w0_only.resolve())
    if arm_name == "align":
        cfg["data"]["cache_dir"] = str((dest / "cache_vision").resolve())
    cfg["checkpoint"]["keep_last"] = 13
    write_train_config(dest / name / "train.toml", cfg,
                       f"{arm_name}-s{seed}, the W0 leg (2400 steps) of the anchored recipe")
    print(dest / name / "train.toml")
