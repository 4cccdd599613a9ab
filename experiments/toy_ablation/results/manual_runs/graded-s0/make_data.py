from pathlib import Path
from mvs2v_toy import write_toy_dataset
from experiments.toy_ablation.data import merge_manifests
import time
root = Path("/work/runs/cur3")
for world, seed in (("w0s", 22), ("w0sd", 23)):
    dest = root / f"data_{world}"
    if not (dest / "manifest.jsonl").is_file():
        t = time.time()
        s = write_toy_dataset(dest, 4000, seed=seed, frames=9, world=world, val_fraction=0.02, overwrite=True)
        print(world, s.samples, s.train, s.val, f"{time.time()-t:.0f}s", flush=True)
merge_manifests(root / "data_merged" / "manifest.jsonl", {
    "w0": Path("/work/runs/cur2/data_curriculum"), "w0s": root / "data_w0s", "w0sd": root / "data_w0sd",
    "w12": Path("/work/runs/data_w12")})
print("merged")
