"""Write the shipped toy benchmark cases: held-out W1 scenes of the bundled model, rendered by the toy world.

    python benchmarks/cases/toy/make_cases.py [--scenes 4]

Writes ``cases.jsonl`` and one PNG per reference view (``<case>/<subject>_<view>.png``, a few hundred
bytes each) next to this script; each subject's start view (what frame 0 shows) is marked
``"frontal": true``. The scenes are those ``mvs2v demo --seed N`` and ``mvs2v toy-bench`` use (drawn
from the evaluation seed in the bundled model's ``model.json``), so the images are the project's own
renders and can be redistributed with it. Deterministic: rerunning rewrites the same files.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from mvs2v_core.utils import atomic_write
from mvs2v_toy.bench_plan import held_out_scene
from mvs2v_toy.demo import demo_model_info
from mvs2v_toy.truth import truth_from_scene

HERE = Path(__file__).resolve().parent


def write_cases(out: Path, scenes: int) -> Path:
    info = demo_model_info()
    world, seed, frames = info["eval"]["world"], int(info["eval"]["seed"]), int(info["frames"])
    lines = []
    for index in range(scenes):
        truth = truth_from_scene(held_out_scene(world, seed, index, frames), sample_id=f"toy-{index}")
        case_id = f"w1_scene{index}"
        subjects = []
        for obj, refs in zip(truth.scene.objects, truth.references):
            name = obj.label or obj.shape
            views = []
            for ref in refs:
                rel = Path(case_id) / f"{name}_{ref.name}.png"
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                with atomic_write(out / rel, suffix=".png") as tmp:
                    Image.fromarray(np.ascontiguousarray(ref.image, dtype=np.uint8)).save(tmp, format="PNG")
                view = {"image": rel.as_posix(), "view": ref.name}
                if ref.name == obj.start_view:  # what frame 0 shows: slot 0 of a slot-anchored model
                    view["frontal"] = True
                views.append(view)
            subjects.append({"name": name, "kind": "object", "views": views})
        lines.append(json.dumps({"id": case_id, "prompt": truth.caption, "seed": index, "subjects": subjects,
                                 "width": info["width"], "height": info["height"], "frames": frames}))
    target = out / "cases.jsonl"
    with atomic_write(target) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=4)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    print(f"wrote {write_cases(args.out, args.scenes)}")
