"""The metrics of real videos (mvs2v_core.evaluation.real_metrics) on synthetic inputs with known answers.

The DINOv2 / CLIP paths load tiny random transformers models saved by the tests into a temporary
folder (the real ``from_pretrained(local_files_only=True)`` path, on CPU in seconds); the answers
checked do not depend on what the random models see: identical pixels give identical features.
Faces: tests/core/test_real_metrics_faces.py.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
import pytest
import torch

from mvs2v_core.evaluation import real_metrics
from mvs2v_core.evaluation.real_metrics import (
    AESTHETIC_WEIGHTS,
    CLIP_WEIGHTS,
    DINO_WEIGHTS,
    REAL_METRIC_NAMES,
    clear_caches,
    weights_from_root,
)
from mvs2v_core.evaluation.registry import available_metrics, compute_metrics

transformers = pytest.importorskip("transformers")

SIZE = 32


def _clip_tokenizer(folder: Path) -> int:
    """A character-level CLIP BPE vocabulary (no merges) in ``folder``; returns its size."""
    vocab = {c: i for i, c in enumerate(string.ascii_lowercase)}
    vocab.update({c + "</w>": 26 + i for i, c in enumerate(string.ascii_lowercase)})
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = 52, 53
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 16, "pad_token": "<|endoftext|>"}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return len(vocab)


def tiny_hf_model(kind: str, folder: Path) -> Path:
    """Save a tiny random DINOv2 or full CLIP (with a tokenizer) into ``folder``, preprocessed at 32x32."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                  image_size=SIZE, patch_size=8)
    if kind == "dinov2":
        model = transformers.Dinov2Model(transformers.Dinov2Config(**vision))
    else:
        n = _clip_tokenizer(folder)
        text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=n,
                    max_position_embeddings=16, bos_token_id=52, eos_token_id=53, pad_token_id=53)
        model = transformers.CLIPModel(transformers.CLIPConfig(text_config=text, vision_config=vision,
                                                               projection_dim=24))
    model.save_pretrained(str(folder))
    (folder / "preprocessor_config.json").write_text(json.dumps({"crop_size": {"height": SIZE, "width": SIZE}}))
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval_models")
    return {"dino_model": tiny_hf_model("dinov2", root / "dinov2"), "clip_model": tiny_hf_model("clip", root / "clip")}


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_caches()
    yield
    clear_caches()


def texture(seed: int, h: int = SIZE, w: int = SIZE) -> np.ndarray:
    """A smooth random RGB texture ``[h, w, 3]`` uint8 (blurred noise: optical flow can track it)."""
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.random((1, 3, h // 4 + 2, w // 4 + 2)))
    up = torch.nn.functional.interpolate(x, size=(h + 8, w + 8), mode="bicubic", align_corners=False)[0, :, 4:-4, 4:-4]
    return (up.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


# ---- the registry --------------------------------------------------------------------------------------------------


def test_real_metrics_share_the_registry_with_core_and_toy() -> None:
    metrics = available_metrics()
    assert set(REAL_METRIC_NAMES) <= set(metrics)
    assert {"psnr", "s_v2r", "face_accuracy", "crosstalk"} <= set(metrics)  # core and toy-truth metrics stay
    assert metrics["s_v2r_dino"].weights == DINO_WEIGHTS and metrics["text_alignment"].weights == CLIP_WEIGHTS
    assert metrics["aesthetic"].weights == AESTHETIC_WEIGHTS and metrics["motion_amplitude"].weights is None
    assert metrics["face_similarity"].weights.flag == "--face-model"
    assert all(metrics[n].provider == "mvs2v_core" and metrics[n].kind == "video" for n in REAL_METRIC_NAMES)


def test_missing_weights_skip_with_the_folder_and_the_rest_still_run(tmp_path: Path) -> None:
    video = np.stack([texture(0)] * 3)
    inputs = {"video": video, "reference_images": [[texture(1)]], "prompt": "a cube", **weights_from_root(tmp_path)}
    results, skipped = compute_metrics(inputs, REAL_METRIC_NAMES)
    assert set(results) == {"motion_amplitude", "motion_variation"}
    assert skipped["s_v2r_dino"] == f"s_v2r_dino: needs {DINO_WEIGHTS.description}: --dino-model " \
                                    f"{tmp_path / 'dinov2'} is not a folder"
    assert skipped["text_alignment"].endswith(f"--clip-model {tmp_path / 'clip'} is not a folder")
    assert skipped["face_similarity"].endswith(f"--face-model {tmp_path / 'insightface'} is not a folder")
    assert skipped["aesthetic"].endswith(f"--aesthetic-model {tmp_path / 'aesthetic'} is not a folder")
    assert all("\n" not in r for r in skipped.values())
    # no folder given at all: the flag to give it with
    _, skipped = compute_metrics({"video": video, "reference_images": [[texture(1)]]}, ["s_r2v_clip"])
    assert skipped["s_r2v_clip"] == f"s_r2v_clip: needs {CLIP_WEIGHTS.description}: give its folder with --clip-model"


def test_a_folder_that_does_not_load_is_skipped_with_its_reason(tmp_path: Path, models: dict) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    inputs = {"video": np.stack([texture(0)] * 2), "reference_images": [[texture(1)]], "prompt": "a cube",
              "dino_model": tmp_path, "clip_model": models["dino_model"]}
    results, skipped = compute_metrics(inputs, ["s_v2r_dino", "text_alignment", "motion_amplitude"])
    assert "motion_amplitude" in results
    assert "supports dinov2, clip" in skipped["s_v2r_dino"]
    assert "text alignment needs a full CLIP folder" in skipped["text_alignment"]


# ---- S_v->r / S_r->v on DINOv2 and CLIP ----------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["dino", "clip"])
def test_a_video_made_of_the_references_scores_one_both_ways(models: dict, model: str) -> None:
    refs = [texture(1), texture(2), texture(3)]
    video = np.stack([refs[0], refs[1], refs[2], refs[1]])
    inputs = {"video": video, "reference_images": refs, **models}
    results, skipped = compute_metrics(inputs, [f"s_v2r_{model}", f"s_r2v_{model}"])
    assert not skipped
    assert results[f"s_v2r_{model}"]["value"] == pytest.approx(1.0, abs=1e-5)
    assert results[f"s_r2v_{model}"]["value"] == pytest.approx(1.0, abs=1e-5)
    # a reference view the video never shows lowers S_r->v by (1 - its best cosine) / R, and not S_v->r
    names = [f"s_v2r_{model}", f"s_r2v_{model}"]
    results, _ = compute_metrics({**inputs, "video": np.stack([refs[0], refs[1]])}, names)
    best = results[f"s_r2v_{model}"]["per_subject"][0]["reference_best"]
    assert best[0] == pytest.approx(1.0, abs=1e-5) and best[2] < 1.0 - 1e-4
    assert results[f"s_r2v_{model}"]["value"] == pytest.approx((2.0 + best[2]) / 3.0, abs=1e-6)
    assert results[f"s_v2r_{model}"]["value"] == pytest.approx(1.0, abs=1e-5)


def test_identical_frames_similarity_one_and_subjects_averaged(models: dict) -> None:
    a, b = texture(4), texture(5)
    video = np.stack([a] * 3)
    results, _ = compute_metrics({"video": video, "reference_images": [[a], [b]], **models, "max_frames": 2},
                                 ["s_v2r_dino"])
    r = results["s_v2r_dino"]
    assert r["frames"] == [0, 2] and r["per_subject"][0]["s_v2r"] == pytest.approx(1.0, abs=1e-5)
    assert r["value"] == pytest.approx(sum(s["s_v2r"] for s in r["per_subject"]) / 2.0, abs=1e-12)
    assert r["per_subject"][1]["s_v2r"] < 1.0 - 1e-4
    # float frames in [0, 1] and a [R, H, W, 3] array for one subject read the same
    results, _ = compute_metrics({"video": video / 255.0, "reference_images": np.stack([a]), **models},
                                 ["s_v2r_dino"])
    assert results["s_v2r_dino"]["value"] == pytest.approx(1.0, abs=1e-5)


# ---- subject crops and crosstalk -----------------------------------------------------------------------------------


def two_subject_video(left: np.ndarray, right: np.ndarray, frames: int = 3) -> np.ndarray:
    """Frames ``[F, 48, 96, 3]`` showing ``left`` at x 8..40 and ``right`` at x 56..88 (y 8..40) on gray."""
    v = np.full((frames, 48, 96, 3), 90, dtype=np.uint8)
    v[:, 8:40, 8:40], v[:, 8:40, 56:88] = left, right
    return v


BOXES = [(8, 8, 40, 40), (56, 8, 88, 40)]


def test_subject_crop_similarity_box_and_mask(models: dict) -> None:
    a, b = texture(6), texture(7)
    video = two_subject_video(a, b)
    mask = np.zeros(video.shape[:3], dtype=bool)
    mask[:, 8:40, 56:88] = True
    inputs = {"video": video, "reference_images": [[a], [b]], **models, "subject_boxes": [BOXES[0], None],
              "subject_masks": [None, mask]}
    results, skipped = compute_metrics(inputs, ["subject_crop_similarity"])
    assert not skipped
    r = results["subject_crop_similarity"]
    assert [s["method"] for s in r["per_subject"]] == ["box", "mask"]
    assert r["value"] == pytest.approx(1.0, abs=1e-5) and r["s_r2v"] == pytest.approx(1.0, abs=1e-5)
    # an object with neither box nor mask is left out with its reason
    results, _ = compute_metrics({**inputs, "subject_masks": None, "subject_kinds": ["object", "object"]},
                                 ["subject_crop_similarity"])
    assert results["subject_crop_similarity"]["skipped_subjects"] == {
        1: "subject 1 is an object without subject_boxes or subject_masks"}
    # per-frame boxes: a NaN row is a frame where the subject is absent
    per_frame = np.array([BOXES[0], [np.nan] * 4, BOXES[0]], dtype=np.float64)
    results, _ = compute_metrics({**inputs, "subject_boxes": [per_frame], "subject_masks": None,
                                  "reference_images": [[a]]}, ["subject_crop_similarity"])
    assert results["subject_crop_similarity"]["per_subject"][0]["frames"] == [0, 2]


def test_crosstalk_low_when_subjects_stay_apart_high_when_swapped(models: dict) -> None:
    a, b = texture(8), texture(9)
    inputs = {"reference_images": [[a], [b]], **models, "subject_boxes": BOXES}
    kept, _ = compute_metrics({**inputs, "video": two_subject_video(a, b)}, ["subject_crosstalk"])
    swapped, _ = compute_metrics({**inputs, "video": two_subject_video(b, a)}, ["subject_crosstalk"])
    k, s = kept["subject_crosstalk"], swapped["subject_crosstalk"]
    assert k["own"] == pytest.approx(1.0, abs=1e-5) and k["value"] < 1.0 - 1e-4 and k["margin"] > 0
    assert s["value"] == pytest.approx(1.0, abs=1e-5) and s["margin"] < 0  # each crop IS the other's reference
    assert s["value"] > k["value"]
    assert k["reference_baseline"] == pytest.approx(k["value"], abs=1e-5)  # crops equal the refs: cross = baseline
    _, skipped = compute_metrics({**inputs, "reference_images": [[a]], "video": two_subject_video(a, b)},
                                   ["subject_crosstalk"])
    assert skipped == {"subject_crosstalk": "subject_crosstalk: needs a scene with two subjects"}


# ---- motion --------------------------------------------------------------------------------------------------------


def translating(shift_x: list[int], h: int = 64, w: int = 64) -> np.ndarray:
    """Frames cut from one large texture, the window moving by ``shift_x[t]`` pixels before frame t+1."""
    big = texture(10, 128, 192)
    xs = np.concatenate([[0], np.cumsum(shift_x)]) + 40
    return np.stack([big[32:32 + h, x:x + w] for x in xs])


def test_still_video_has_no_motion() -> None:
    pytest.importorskip("cv2")
    results, skipped = compute_metrics({"video": np.stack([texture(11, 64, 64)] * 5)},
                                       ["motion_amplitude", "motion_variation"])
    assert not skipped
    # Farneback leaves ~1e-3 px of numerical noise on identical frames
    assert results["motion_amplitude"]["value"] == pytest.approx(0.0, abs=0.01)
    assert results["motion_variation"]["value"] == pytest.approx(0.0, abs=0.01)


def test_a_known_translation_gives_its_shift_and_jitter_a_large_variation() -> None:
    pytest.importorskip("cv2")
    steady, _ = compute_metrics({"video": translating([2] * 6)}, ["motion_amplitude", "motion_variation"])
    amp = steady["motion_amplitude"]
    assert amp["value"] == pytest.approx(2.0, abs=0.1)  # pixels per frame (2.004 here)
    assert amp["per_diagonal"] == pytest.approx(amp["value"] / np.hypot(64, 64), rel=1e-9)
    assert len(amp["per_pair"]) == 6 and amp["resolution"] == [64, 64]
    assert steady["motion_variation"]["value"] < 0.1  # constant velocity: (almost) no change of the flow (0.010)
    jitter, _ = compute_metrics({"video": translating([2, -2] * 3)}, ["motion_amplitude", "motion_variation"])
    assert jitter["motion_amplitude"]["value"] == pytest.approx(2.0, abs=0.1)
    assert jitter["motion_variation"]["value"] == pytest.approx(4.0, abs=0.2)  # |(-2) - 2| = 4 per step (4.006)
    two, skipped = compute_metrics({"video": translating([2])}, ["motion_variation"])
    assert skipped == {"motion_variation": "motion_variation: needs at least 3 frames"}


# ---- CLIP text alignment and aesthetics ----------------------------------------------------------------------------


def test_text_alignment_is_the_mean_cosine_to_the_prompt(models: dict) -> None:
    from mvs2v_core.evaluation.clip_scores import CLIPTextImage

    video = np.stack([texture(12), texture(13), texture(12)])
    results, skipped = compute_metrics({"video": video, "prompt": "a red cube", **models}, ["text_alignment"])
    assert not skipped
    r = results["text_alignment"]
    clip = CLIPTextImage(models["clip_model"])
    text = clip.text_features(["a red cube"])[0]
    image = clip.image_features(torch.from_numpy(video).permute(0, 3, 1, 2))
    expected = (image @ text).double()
    assert r["per_frame"] == pytest.approx(expected.tolist(), abs=1e-5)
    assert r["per_frame"][0] == pytest.approx(r["per_frame"][2], abs=1e-7)  # the same frame, the same score
    assert r["value"] == pytest.approx(float(expected.mean()), abs=1e-5)
    assert r["clip_score"] == pytest.approx(100 * float(expected.clamp(min=0).mean()), abs=1e-3)
    other, _ = compute_metrics({"video": video, "prompt": "zebra", **models}, ["text_alignment"])
    assert other["text_alignment"]["value"] != pytest.approx(r["value"], abs=1e-6)
    _, skipped = compute_metrics({"video": video, "prompt": "  ", **models}, ["text_alignment"])
    assert skipped == {"text_alignment": "text_alignment: needs a non-empty prompt"}


def _save_mlp(folder: Path, layers: dict[str, torch.Tensor]) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in layers.items()}, str(folder / "aesthetic_mlp.safetensors"))
    return folder


def test_aesthetic_mlp_known_answers(models: dict, tmp_path: Path) -> None:
    video = np.stack([texture(14), texture(15)])
    constant = _save_mlp(tmp_path / "v1", {"weight": torch.zeros(1, 24), "bias": torch.tensor([5.0])})
    results, skipped = compute_metrics({"video": video, **models, "aesthetic_model": constant}, ["aesthetic"])
    assert not skipped and results["aesthetic"]["value"] == pytest.approx(5.0, abs=1e-9)
    # the LAION v2 layout (layers 0, 2, 4, 6, 7; no activations) equals the chain of its linear maps
    g = torch.Generator().manual_seed(0)
    dims = [24, 32, 8, 4, 2, 1]
    layers = {}
    for key, (i, o) in zip((0, 2, 4, 6, 7), zip(dims[:-1], dims[1:])):
        layers[f"layers.{key}.weight"] = torch.randn(o, i, generator=g)
        layers[f"layers.{key}.bias"] = torch.randn(o, generator=g)
    v2 = _save_mlp(tmp_path / "v2", layers)
    results, _ = compute_metrics({"video": video, **models, "aesthetic_model": v2}, ["aesthetic"])
    from mvs2v_core.evaluation.features import HFImageFeatureExtractor

    x = HFImageFeatureExtractor(models["clip_model"])(torch.from_numpy(video).permute(0, 3, 1, 2)).double()
    for key in (0, 2, 4, 6, 7):
        x = x @ layers[f"layers.{key}.weight"].double().T + layers[f"layers.{key}.bias"].double()
    assert results["aesthetic"]["per_frame"] == pytest.approx(x[:, 0].tolist(), abs=1e-4)
    # without the CLIP folder, or with one of another width: skipped with one line
    _, skipped = compute_metrics({"video": video, "aesthetic_model": v2}, ["aesthetic"])
    assert skipped["aesthetic"] == f"aesthetic: needs {CLIP_WEIGHTS.description}: give its folder with --clip-model"
    _, skipped = compute_metrics({"video": video, "aesthetic_model": v2, "clip_model": models["dino_model"]},
                                 ["aesthetic"])
    assert "takes 24-d CLIP features, got (2, 32)" in skipped["aesthetic"]


def test_features_are_computed_once_for_both_directions(models: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from mvs2v_core.evaluation.features import HFImageFeatureExtractor

    calls = []
    original = HFImageFeatureExtractor.extract
    monkeypatch.setattr(HFImageFeatureExtractor, "extract",
                        lambda self, x: calls.append(x.shape[0]) or original(self, x))
    refs = [texture(16)]
    compute_metrics({"video": np.stack([texture(16)] * 4), "reference_images": refs, **models},
                    ["s_v2r_dino", "s_r2v_dino"])
    assert calls == [4, 1]  # the frames once, the reference once
    assert real_metrics.weights_from_root("/m")["face_model"] == Path("/m/insightface")
