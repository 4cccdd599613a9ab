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
    """Held-out scene number ``index`` of the dataset the bundled model was trained on.

    The dataset's scenes are drawn per sample index from its seed (:func:`scene_for_index`); those
    whose split draw fell in the validation fraction were never trained on. Returns the scene and its
    sample index in the dataset.
    """
    from .dataset import scene_for_index

    if index < 0:
        raise MVS2VError(f"--seed {index} must be >= 0: it picks the held-out scene")
    d = info["dataset"]
    found = -1
    for i in range(10_000_000):
        scene, draw = scene_for_index(d["seed"], i, info["width"], info["height"], info["frames"], d["two_object_prob"])
        if draw < d["val_fraction"]:
            found += 1
            if found == index:
                return scene, i
    raise MVS2VError(f"--seed {index}: no such held-out scene")  # pragma: no cover - 10^7 draws


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


def _generate_scene(assets: Path, info: dict[str, Any], scene: Any, truth: Any, steps: int, seed: int,
                    video: Path) -> dict[str, Any]:
    """The bundled model on one scene through the pipeline API (what ``mvs2v generate`` runs)."""
    from ._core import GenerationSettings, ModelFiles, MVS2VPipeline, SubjectInput

    sampler = info["sampler"]
    files = ModelFiles(dit=assets / "dit.safetensors", vae=assets / "codec", text_encoder=assets / "text_encoder",
                       adapter=assets / "adapter.safetensors",
                       vision_encoder=assets / "vision_encoder" if info.get("mfi") else None)
    subjects = [SubjectInput(obj.name, [ref.path for ref in truth.references[i]],
                             [ref.label for ref in truth.references[i]]) for i, obj in enumerate(scene.objects)]
    settings = GenerationSettings(
        prompt=truth.caption, width=info["width"], height=info["height"], frames=info["frames"], steps=steps,
        seed=seed, shift=sampler["shift"], solver=sampler["solver"], ref_scale=sampler["ref_scale"],
        text_scale=sampler["text_scale"])
    command = " ".join(
        ["mvs2v generate", f"--dit {files.dit}", f"--adapter {files.adapter}", f"--vae {files.vae}",
         f"--text-encoder {files.text_encoder}"]
        + ([f"--vision-encoder {files.vision_encoder}"] if files.vision_encoder else [])
        + [f"--subject {s.name}=" + ",".join(f"{p}@{lab}" for p, lab in zip(s.images, s.labels)) for s in subjects]
        + [f"--prompt {truth.caption!r}", f"--width {settings.width} --height {settings.height}",
           f"--frames {settings.frames} --steps {steps} --shift {settings.shift} --solver {settings.solver}",
           f"--ref-scale {settings.ref_scale} --text-scale {settings.text_scale} --seed {seed}",
           f"--device cpu --dtype fp32 --fps 8 --out {video}"])
    print("running the equivalent of: " + command)
    pipe = MVS2VPipeline.from_files(files, "cpu", "fp32")
    result = pipe.generate(settings, subjects)
    t_write = time.perf_counter()
    result.save(video, fps=8.0, lossless=pipe.lossless_output)
    timings = {"load_models": pipe.load_seconds, **result.timings, "write_video": time.perf_counter() - t_write}
    return {"timings": timings, "command": command}


def run_demo(out: Path, seed: int = 0, steps: int | None = None, assets: Path = DEMO_ASSETS) -> dict[str, Any]:
    """Render held-out scene ``seed``, generate it with the bundled model through ``mvs2v generate``, evaluate.

    Args:
        out: output folder (created).
        seed: picks the held-out scene and seeds the sampler.
        steps: sampling steps (default: the model's, from ``model.json``).
        assets: the bundled model folder.

    Returns:
        ``{"timings": {...seconds}, "metrics": {...}, "files": {...}}`` (also written to ``demo.json``).
    """
    from ._core import atomic_write
    from .dataset import write_toy_sample
    from .evaluate import run_eval

    t_start = time.perf_counter()
    info = demo_model_info(assets)
    sampler = info["sampler"]
    steps = int(sampler["steps"] if steps is None else steps)
    if steps < 1:
        raise MVS2VError(f"--steps {steps} must be at least 1")
    views = list(info["eval_views"])
    print(f"mvs2v demo: bundled toy model ({info['run']}: {info['config']['change']}; "
          f"{info['parameters'] / 1e6:.1f} M parameters), held-out scene {seed}")

    t0 = time.perf_counter()
    scene, index = held_out_scene(info, seed)
    sample_dir = out / "sample"
    truth, _ = write_toy_sample(sample_dir, scene, f"held-out-{seed}", views, split="val")
    t_scene = time.perf_counter() - t0
    print(f"scene: {truth.caption!r} ({len(scene.objects)} object(s); references: {', '.join(views)})")

    generated = _generate_scene(assets, info, scene, truth, steps, seed, out / "video.mp4")

    t0 = time.perf_counter()
    plot = _has_matplotlib()
    evaluation = run_eval(argparse.Namespace(video=str(out / "video.mp4"), sample=str(sample_dir), out=str(out),
                                             extractor="toy", views=[",".join(views)], no_crop=False,
                                             no_plot=not plot, eval_device="cpu"))
    t_eval = time.perf_counter() - t0
    m = evaluation["metrics"]
    headline = summary_metrics(m, truth)
    gray_psnr = headline["psnr_all_gray_clip"]
    g = generated["timings"]
    timings = {"render_scene": t_scene, "load_models": g["load_models"], "text_encode": g["text_encode"],
               "reference_encode": g["reference_encode"], "sampling": g["sampling"], "per_sampling_step": g["per_step"],
               "decode": g["vae_decode"], "write_video": g["write_video"], "evaluation": t_eval,
               "end_to_end": time.perf_counter() - t_start}
    fa = m["face_accuracy"]["value"]
    summary = {
        "scene": {"seed": seed, "dataset_index": index, "caption": truth.caption},
        "model": {"run": info["run"], "config": info["config"], "parameters": info["parameters"]},
        "steps": steps, "timings": timings,
        "metrics": headline,
        "files": {"video": str(out / "video.mp4"), **evaluation["files"], "sample": str(sample_dir),
                  "summary": str(out / "demo.json")},
        "command": generated["command"],
    }
    with atomic_write(out / "demo.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    print(f"PSNR {m['psnr']:.2f} dB (an all-gray clip: {gray_psnr:.2f} dB), SSIM {m['ssim']:.3f}, hidden-face accuracy "
          f"{'n/a (the references show no face frame 0 hides)' if fa is None else f'{fa:.3f}'}")
    print(f"timings: render scene {timings['render_scene']:.2f}s | load models {timings['load_models']:.2f}s | "
          f"encode text {timings['text_encode']:.2f}s + references {timings['reference_encode']:.2f}s | sampling "
          f"{timings['sampling']:.2f}s ({steps} steps, {timings['per_sampling_step'] * 1000:.1f} ms/step) | decode "
          f"{timings['decode']:.2f}s | write video {timings['write_video']:.2f}s | evaluation {timings['evaluation']:.2f}s "
          f"| end to end {timings['end_to_end']:.2f}s")
    print(f"wrote {out / 'video.mp4'}, {out / 'strip.png'}, {out / 'metrics.json'}, {out / 'demo.json'}")
    return summary
