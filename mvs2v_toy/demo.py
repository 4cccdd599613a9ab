"""``mvs2v demo``: the bundled toy-world model end to end, or (``--random-models``) tiny random models.

Default: a held-out toy scene (``--seed`` picks it; the same seed always gives the same scene) is
rendered with its multi-view reference images and exact ground truth; ``mvs2v generate`` runs on
the bundled model (``mvs2v_toy/assets/toy_demo/``: a tiny Wan DiT trained on the toy world by
``python -m experiments.toy_ablation``, with the toy codec, text and vision encoders), then the
evaluation of :mod:`mvs2v_toy.evaluate` scores the video against the truth. Written to ``--out``:
``video.mp4`` (lossless), ``strip.png`` (references | generated | truth), ``metrics.json``,
``eval_plot.png`` (with matplotlib), ``sample/`` (the scene: true clip, references, ``truth.json``)
and ``demo.json`` (timings, the main metrics, the generate command). Every stage is timed, including
the time per sampling step and end to end.

``--random-models``: the older demo. A random DiT, VAE and text encoder are made on the spot; the
video is noise, which shows that the pipeline runs, not the method.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

from ._core import MVS2VError, WanConfig, WanDiT, save_safetensors_atomic
from .demo_assets import make_tiny_text_encoder, make_tiny_vae

# Width 128 with one 128-wide head, like real Wan heads; VAE latents have 4 channels, umT5 width 32.
TINY_DIT = WanConfig(dim=128, ffn_dim=256, num_heads=1, num_layers=2, in_dim=4, out_dim=4, text_dim=32,
                     family="tiny-random")
FACE_COLOURS = {"front": (220, 40, 40), "left": (40, 170, 60), "back": (40, 80, 220), "right": (230, 190, 30)}


def make_tiny_dit(path: Path, seed: int = 0) -> Path:
    """Write a random tiny Wan DiT in the original Wan key layout."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WanDiT(TINY_DIT)
    save_safetensors_atomic(model.state_dict(), path, {"note": "tiny random Wan DiT made by `mvs2v demo`"})
    return path


def draw_view(view: str, size: int = 160, shape: str = "box") -> Image.Image:
    """A coloured object whose faces differ by view, on a transparent background (RGBA)."""
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    c = FACE_COLOURS[view]
    m = size // 5
    if shape == "box":
        d.rectangle([m, m, size - m, size - m], fill=c + (255,), outline=(0, 0, 0, 255), width=3)
    else:
        d.ellipse([m, m, size - m, size - m], fill=c + (255,), outline=(0, 0, 0, 255), width=3)
    d.text((size // 2 - 4, size // 2 - 6), view[0].upper(), fill=(255, 255, 255, 255))
    return img


def make_demo_assets(out: Path, seed: int = 0) -> dict[str, Path]:
    """Models and reference images under ``out/assets``; returns their paths."""
    assets = out / "assets"
    paths = {
        "dit": make_tiny_dit(assets / "tiny_dit.safetensors", seed),
        "vae": make_tiny_vae(assets / "vae", seed),
        "text_encoder": make_tiny_text_encoder(assets / "umt5", seed),
    }
    refs = assets / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    for view in ("front", "left", "back"):
        draw_view(view, shape="box").save(refs / f"box_{view}.png")
    draw_view("front", shape="ball").save(refs / "ball_front.png")
    return paths


def run_random_demo(out: Path, seed: int = 0, steps: int = 8) -> dict:
    """Make the tiny random assets and generate with them through the pipeline API; returns timings and outputs."""
    from ._core import GenerationSettings, ModelFiles, MVS2VPipeline, ReferenceSettings, SubjectInput

    print("mvs2v demo: TINY RANDOM MODELS (no downloads) - the video is noise; this checks the pipeline.")
    t_start = time.perf_counter()
    paths = make_demo_assets(out, seed)
    refs = out / "assets" / "refs"
    subjects = [SubjectInput("box", [refs / f"box_{v}.png" for v in ("front", "left", "back")], ["front", "left", "back"]),
                SubjectInput("ball", [refs / "ball_front.png"], ["front"])]
    pipe = MVS2VPipeline.from_files(ModelFiles(paths["dit"], paths["vae"], paths["text_encoder"]), "cpu", "fp32")
    settings = GenerationSettings(
        prompt="a red box turns left on a gray floor", negative_prompt="blurry static", width=128, height=128,
        frames=17, steps=steps, seed=seed, references=ReferenceSettings(4, "ts", "gray"))
    result = pipe.generate(settings, subjects)
    outputs = result.save(out / "video.mp4", fps=16.0, lossless=pipe.lossless_output)
    timings = {"load_models": pipe.load_seconds, **result.timings, "wall": time.perf_counter() - t_start}
    print(f"wrote {outputs['video']} ({result.video.shape[0]} frames, 128x128)")
    return {"timings": timings, "outputs": outputs}


# ---- the bundled toy model ---------------------------------------------------------------------------

DEMO_ASSETS = Path(__file__).resolve().parent / "assets" / "toy_demo"
DEMO_MODEL_FORMAT = "mvs2v-toy-demo-model"
DEMO_FILES = ("dit.safetensors", "adapter.safetensors", "codec", "text_encoder", "model.json")


def demo_model_info(folder: Path = DEMO_ASSETS) -> dict[str, Any]:
    """The bundled model's ``model.json`` (config, sampler settings, training command, metrics), checked."""
    missing = [name for name in DEMO_FILES if not (folder / name).exists()]
    if missing:
        raise MVS2VError(f"the bundled demo model in {folder} is incomplete (missing {', '.join(missing)}): reinstall "
                         "mvs2v, or run `mvs2v demo --random-models` (tiny random models, no bundled files)")
    info = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    if info.get("format") != DEMO_MODEL_FORMAT:
        raise MVS2VError(f"{folder / 'model.json'} is not a {DEMO_MODEL_FORMAT} file")
    if info.get("mfi") and not (folder / "vision_encoder").is_dir():
        raise MVS2VError(f"the bundled demo model uses MFI but {folder / 'vision_encoder'} is missing: reinstall mvs2v")
    return info


def held_out_scene(info: dict[str, Any], index: int) -> tuple[Any, int]:
    """Held-out scene number ``index`` of the bundled model's evaluation set (``model.json`` ``eval``).

    Scene ``i`` is drawn from ``numpy.random.default_rng([eval seed, i])`` in the evaluation world (W1),
    exactly as ``mvs2v toy-bench`` draws it; the training set was drawn from another seed. Returns the
    scene and ``index``.
    """
    from .bench_plan import held_out_scene as bench_held_out_scene

    if index < 0:
        raise MVS2VError(f"--seed {index} must be >= 0: it picks the held-out scene")
    ev = info["eval"]
    return bench_held_out_scene(ev["world"], int(ev["seed"]), int(index), int(info["frames"])), index


def summary_metrics(metrics: dict[str, Any], truth: Any) -> dict[str, Any]:
    """The demo's headline numbers from :func:`~mvs2v_toy.evaluate.evaluate` output ``metrics``, with the
    PSNR of an all-gray clip against ``truth`` (a :class:`~mvs2v_toy.truth.ToyTruth`) for scale."""
    from ._core import as_float_frames, psnr

    gray = psnr(as_float_frames(np.full_like(truth.frames, 128)), as_float_frames(truth.frames))
    m = metrics
    return {"psnr": m["psnr"], "psnr_all_gray_clip": gray, "ssim": m["ssim"],
            "s_v2r": m["reference_similarity"]["s_v2r"], "s_r2v": m["reference_similarity"]["s_r2v"],
            "face_accuracy": m["face_accuracy"]["value"], "face_accuracy_all": m["face_accuracy_all"]["value"],
            "crosstalk": None if m["crosstalk"] is None else m["crosstalk"]["value"]}


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def model_files(assets: Path, info: dict[str, Any]) -> Any:
    """The :class:`ModelFiles` of a toy model folder (``mvs2v_toy/assets/toy_demo`` layout)."""
    from ._core import ModelFiles

    return ModelFiles(dit=assets / "dit.safetensors", vae=assets / "codec", text_encoder=assets / "text_encoder",
                      adapter=assets / "adapter.safetensors",
                      vision_encoder=assets / "vision_encoder" if info.get("mfi") else None)


def generation_settings(info: dict[str, Any], caption: str, steps: int, seed: int) -> Any:
    """The sampler of a toy model folder's ``model.json`` for one caption (size: the model's W1 size)."""
    from ._core import GenerationSettings

    sampler = info["sampler"]
    return GenerationSettings(prompt=caption, width=info["width"], height=info["height"], frames=info["frames"],
                              steps=steps, seed=seed, shift=sampler["shift"], solver=sampler["solver"],
                              ref_scale=sampler["ref_scale"], text_scale=sampler["text_scale"])


def _render_scenes(out: Path, info: dict[str, Any], seed: int) -> tuple[Any, Any, int]:
    """The held-out scene and its recoloured twin (hidden sides in other hues), written under ``out``."""
    from .bench_plan import recolour_rng
    from .counterfactual import recolour_hidden
    from .dataset import write_toy_sample

    scene, index = held_out_scene(info, seed)
    views = list(info["eval_views"])
    truth, _ = write_toy_sample(out / "sample", scene, f"held-out-{seed}", views, split="val")
    twin = recolour_hidden(scene, 0, recolour_rng(int(info["eval"]["seed"]), index, 0))  # the bench's twin
    recoloured, _ = write_toy_sample(out / "recoloured", twin, f"held-out-{seed}-recoloured", views, split="val")
    return truth, recoloured, index


def _print_story(truth: Any, probe: Any, info: dict[str, Any]) -> None:
    """What the newcomer should look for, and this scene's causal numbers."""
    from .counterfactual import revealed_hidden_faces

    obj = truth.scene.objects[0]
    hidden = revealed_hidden_faces(truth, 0)
    print(f"scene: {truth.caption!r}: frame 0 shows the {obj.start_view}; the caption names no side colour, so "
          f"the {', '.join(hidden) or 'other'} side(s) turning into view can only come from the references")
    u = probe.reference_use
    print(f"reference use on this scene: {u['value']:+.3f} (1 = follows the references, 0 = ignores them): the video "
          f"paints the hidden sides in its references' colours on {u['follow_a']:.0%} of their pixels and in the "
          f"twin's on {u['cross_a']:.0%}; the twin's video: {u['follow_b']:.0%} its own, {u['cross_b']:.0%} the "
          "original's (see comparison.png)")
    if probe.binding is not None:
        b = probe.binding
        a, c = probe.swap
        print(f"slot binding on this scene: {b['value']:+.3f} ({a} and {c} images swapped between their slots: "
              f"{b['follow']:.0%} of those sides take the other side's colour, against {b['orig_other']:.0%} "
              f"without the swap; {b['stay']:.0%} keep their own)")
    bench = info.get("bench", {}).get("w1")
    if bench:
        digits = {"PSNR": 2}  # dB; the rest are fractions
        print("the bundled model on " + bench.get("scope", "the held-out W1 scenes") + ": " + "; ".join(
            f"{name} {m['mean']:.{digits.get(name, 3)}f} [{m['lo']:.{digits.get(name, 3)}f}, "
            f"{m['hi']:.{digits.get(name, 3)}f}]" for name, m in bench["headline"].items()))


def run_demo(out: Path, seed: int = 0, steps: int | None = None, assets: Path = DEMO_ASSETS) -> dict[str, Any]:
    """Render held-out W1 scene ``seed`` and a recoloured twin, generate both (and a slot swap) with the bundled
    model in one batch, score the video against the truth and print the causal numbers.

    Args:
        out: output folder (created).
        seed: picks the held-out scene and seeds the sampler.
        steps: sampling steps (default: the model's, from ``model.json``).
        assets: the bundled model folder.

    Returns:
        ``{"timings": {...seconds}, "metrics": {...}, "files": {...}}`` (also written to ``demo.json``).
    """
    from ._core import MVS2VPipeline, atomic_write, write_lossless_mp4
    from .demo_probe import generate_command, run_probe, write_comparison
    from .evaluate import run_eval

    t_start = time.perf_counter()
    info = demo_model_info(assets)
    steps = int(info["sampler"]["steps"] if steps is None else steps)
    if steps < 1:
        raise MVS2VError(f"--steps {steps} must be at least 1")
    views = list(info["eval_views"])
    print(f"mvs2v demo: bundled toy model ({info['run']}: {info['config']['change']}; "
          f"{info['parameters'] / 1e6:.1f} M parameters), held-out {info['eval']['world'].upper()} scene {seed}")
    t0 = time.perf_counter()
    truth, recoloured, index = _render_scenes(out, info, seed)
    t_scene = time.perf_counter() - t0

    files = model_files(assets, info)
    settings = generation_settings(info, truth.caption, steps, seed)
    print("the first of the three generations is: " + generate_command(files, truth, settings, out / "video.mp4"))
    pipe = MVS2VPipeline.from_files(files, "cpu", "fp32")
    probe = run_probe(pipe, settings, truth, recoloured)
    t0 = time.perf_counter()
    write_lossless_mp4(probe.given, out / "video.mp4", 8.0)
    write_lossless_mp4(probe.recoloured, out / "video_recoloured.mp4", 8.0)
    t_write = time.perf_counter() - t0

    t0 = time.perf_counter()
    evaluation = run_eval(argparse.Namespace(video=str(out / "video.mp4"), sample=str(out / "sample"), out=str(out),
                                             extractor="toy", views=[",".join(views)], no_crop=False,
                                             no_plot=not _has_matplotlib(), eval_device="cpu"))
    comparison = write_comparison(out / "comparison.png", truth, recoloured, probe)
    t_eval = time.perf_counter() - t0
    headline = summary_metrics(evaluation["metrics"], truth)
    headline["reference_use"] = probe.reference_use["value"]
    headline["slot_binding"] = None if probe.binding is None else probe.binding["value"]
    timings = {"render_scene": t_scene, "load_models": pipe.load_seconds, "sampling_3_videos": probe.timings["sampling_batch"],
               "per_sampling_step": probe.timings["per_step"], "write_video": t_write, "evaluation": t_eval,
               "end_to_end": time.perf_counter() - t_start}
    summary = {
        "scene": {"seed": seed, "eval_index": index, "caption": truth.caption, "swap": probe.swap},
        "model": {"run": info["run"], "config": info["config"], "parameters": info["parameters"]},
        "steps": steps, "timings": timings, "metrics": headline,
        "causal": {"reference_use": probe.reference_use, "slot_binding": probe.binding},
        "files": {"video": str(out / "video.mp4"), "video_recoloured": str(out / "video_recoloured.mp4"),
                  "comparison": str(comparison), **evaluation["files"], "sample": str(out / "sample"),
                  "recoloured": str(out / "recoloured"), "summary": str(out / "demo.json")},
        "command": generate_command(files, truth, settings, out / "video.mp4"),
    }
    with atomic_write(out / "demo.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    _print_story(truth, probe, info)
    fa = headline["face_accuracy"]
    print(f"PSNR {headline['psnr']:.2f} dB (an all-gray clip: {headline['psnr_all_gray_clip']:.2f} dB), SSIM "
          f"{headline['ssim']:.3f}, S_v->r {headline['s_v2r']:.3f}, S_r->v {headline['s_r2v']:.3f}, hidden-face accuracy "
          f"{'n/a' if fa is None else f'{fa:.3f}'}")
    print(f"timings: render scenes {t_scene:.2f}s | load models {pipe.load_seconds:.2f}s | sampling 3 videos in one batch "
          f"{timings['sampling_3_videos']:.2f}s ({steps} steps, {timings['per_sampling_step'] * 1000:.1f} ms/step) | write "
          f"{t_write:.2f}s | evaluation {t_eval:.2f}s | end to end {timings['end_to_end']:.2f}s")
    print(f"wrote {comparison}, {out / 'video.mp4'}, {out / 'strip.png'}, {out / 'metrics.json'}, {out / 'demo.json'}")
    return summary
