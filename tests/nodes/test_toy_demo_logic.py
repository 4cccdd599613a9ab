"""The toy-demo nodes' pure logic (nodes/toy_demo_logic.py), tested without ComfyUI.

``nodes`` reaches core and the toy world relatively, so it is imported as part of the pack (the
``pack`` fixture of conftest.py: the repository root as the package ``mvs2v_pack``). The pack's
modules are distinct from the absolute ``mvs2v_core`` / ``mvs2v_toy``, so the tests use the pack's
own classes and functions (its ``MVS2VError``, ``ToyCodec``, ``demo_model_info``...).

Nothing here hard-codes the bundled model's numbers: they are read from its model.json / files,
so a re-trained model of the same layout passes unchanged.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
WIDTH = 4096


@pytest.fixture(scope="module")
def toy(pack):
    return pack.nodes.toy_demo_logic


@pytest.fixture(scope="module")
def demo(pack):
    """The pack's mvs2v_toy.demo (demo.DEMO_ASSETS, demo_model_info, held_out_scene)."""
    return pack.mvs2v_toy.demo


@pytest.fixture(scope="module")
def mvs2v_error(pack) -> type[Exception]:
    return pack.mvs2v_core.errors.MVS2VError


@pytest.fixture(scope="module")
def bundle(toy):
    return toy.load_toy_demo(text_width=WIDTH)


# ---- the pack's own copies ----------------------------------------------------------------------


def test_the_packs_toy_world_uses_the_packs_core(pack, demo):
    """Inside ComfyUI the toy package finds core as its sibling and registers its loaders with that copy."""
    assert pack.mvs2v_toy._core.CORE_PACKAGE == "mvs2v_pack.mvs2v_core"
    assert pack.mvs2v_toy.truth.MVS2VError is pack.mvs2v_core.errors.MVS2VError
    codec = pack.mvs2v_core.pipeline.vae.load_vae(demo.DEMO_ASSETS / "codec")
    assert isinstance(codec, pack.mvs2v_toy.codec.ToyCodec) and codec.lossless_output


# ---- text width ----------------------------------------------------------------------------------


def test_padded_text_embedding_computes_exactly_what_the_original_does(toy, mvs2v_error):
    gen = torch.Generator().manual_seed(0)
    sd = {"text_embedding.0.weight": torch.randn(16, 8, generator=gen), "other": torch.randn(3, generator=gen)}
    padded = toy.pad_text_embedding(sd, 64)
    assert padded["text_embedding.0.weight"].shape == (16, 64) and padded["other"] is sd["other"]
    assert torch.equal(padded["text_embedding.0.weight"][:, :8], sd["text_embedding.0.weight"])
    assert not padded["text_embedding.0.weight"][:, 8:].any()
    x = torch.randn(5, 8, generator=gen)
    x_padded = torch.cat([x, torch.zeros(5, 56)], dim=1)
    torch.testing.assert_close(x_padded @ padded["text_embedding.0.weight"].T, x @ sd["text_embedding.0.weight"].T,
                               rtol=0, atol=1e-6)
    assert toy.pad_text_embedding(sd, 8)["text_embedding.0.weight"] is sd["text_embedding.0.weight"]
    with pytest.raises(mvs2v_error, match="narrow"):
        toy.pad_text_embedding(sd, 4)
    with pytest.raises(mvs2v_error, match="text_embedding"):
        toy.pad_text_embedding({"other": torch.zeros(1)}, 64)


def _adapter(pack, mfi: bool):
    adapter = pack.mvs2v_core.adapter
    Adapter, AdapterMetadata = adapter.Adapter, adapter.AdapterMetadata
    meta = AdapterMetadata(base_family="t", model_dim=8, text_dim=6, in_dim=4, num_layers=1,
                           references={"slots_per_subject": 4, "position_scheme": {"name": "ts", "gap": 8},
                                       "empty_slot_mode": "proxy"},
                           mfi_in_dim=5 if mfi else None)
    return Adapter(meta, proxy_tokens=torch.randn(4, 8), mfi_weight=torch.randn(6, 5) if mfi else None,
                   mfi_bias=torch.randn(6) if mfi else None)


def test_widened_adapter_keeps_everything_but_the_text_width(pack, toy, mvs2v_error):
    a = _adapter(pack, mfi=True)
    w = toy.widen_adapter_text(a, 10)
    assert w.metadata.text_dim == 10 and a.metadata.text_dim == 6
    assert w.proxy_tokens is a.proxy_tokens
    assert torch.equal(w.mfi_weight[:6], a.mfi_weight) and not w.mfi_weight[6:].any()
    assert torch.equal(w.mfi_bias[:6], a.mfi_bias) and not w.mfi_bias[6:].any()
    plain = _adapter(pack, mfi=False)
    assert toy.widen_adapter_text(plain, 10).mfi_weight is None
    assert toy.widen_adapter_text(plain, 6) is plain
    with pytest.raises(mvs2v_error, match="narrow"):
        toy.widen_adapter_text(plain, 3)


def test_text_conditioning_is_the_pipelines_context_zero_padded(bundle, demo):
    enc = bundle.text.encoder
    caption = "a red cube slowly turns left from its back on a blue floor"
    ctx = bundle.text.context(caption)
    emb = enc.encode([caption])[0]
    text_len = int(demo.demo_model_info()["dit_config"]["text_len"])
    assert ctx.shape == (1, max(text_len, emb.shape[0]), WIDTH)
    assert torch.equal(ctx[0, : emb.shape[0], : enc.dim], emb.float())
    assert not ctx[0, emb.shape[0]:].any() and not ctx[0, :, enc.dim:].any()
    empty = bundle.text.context("")  # `mvs2v demo`'s negative prompt: the end-of-sequence token only
    assert empty.shape == (1, text_len, WIDTH) and empty[0, 0].any() and not empty[0, 1:].any()
    long = " ".join(["red"] * (text_len + 3))
    assert bundle.text.context(long).shape[1] == text_len + 4


def test_padded_bundled_dit_matches_the_original_on_padded_text(bundle, toy, demo):
    """The exactness the ComfyUI loader relies on, on the bundled weights themselves (fp32)."""
    from safetensors.torch import load_file

    from mvs2v_core.model.config import infer_config
    from mvs2v_core.model.transformer import WanDiT

    info = demo.demo_model_info()
    cfg = info["dit_config"]
    original = load_file(str(demo.DEMO_ASSETS / "dit.safetensors"))
    outs = []
    for sd, width in ((original, cfg["text_dim"]), (toy.pad_text_embedding(original, WIDTH), WIDTH)):
        config = infer_config(sd).with_(num_heads=cfg["num_heads"], text_len=cfg["text_len"])
        assert config.text_dim == width
        model = WanDiT(config)
        model.load_state_dict({k: v.float() for k, v in sd.items()})
        model.eval()
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(1, config.in_dim, 2, 4, 4, generator=gen)
        ctx = bundle.text.context("an azure sphere slowly turns left from its front on an orange floor")
        with torch.no_grad():
            outs.append(model(x, torch.tensor([500.0]), ctx[..., :width]))
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=1e-5)


# ---- the codec as a ComfyUI VAE ------------------------------------------------------------------


def test_toy_vae_hands_comfyui_raw_latents_whose_process_in_is_the_codecs(pack, toy, mvs2v_error):
    codec = pack.mvs2v_toy.codec.ToyCodec()
    gen = torch.Generator().manual_seed(1)
    mean = torch.randn(1, codec.z_dim, 1, 1, 1, generator=gen)
    std = torch.rand(1, codec.z_dim, 1, 1, 1, generator=gen) + 0.5
    vae = toy.ToyCodecVAE(codec, lambda z: z * std + mean, lambda raw: (raw - mean) / std)  # a Wan-like format
    images = torch.rand(3, 32, 16, 3, generator=gen)  # three frames of one video, as ComfyUI passes them
    raw = vae.encode(images)
    assert raw.shape == (1, codec.z_dim, 3, 8, 4)
    z = codec.encode(images.permute(3, 0, 1, 2)[None] * 2 - 1)
    torch.testing.assert_close((raw - mean) / std, z, rtol=0, atol=1e-5)
    one = vae.encode(images[:1])
    assert one.shape == (1, codec.z_dim, 1, 8, 4)  # one image -> one latent frame (Encode References)
    decoded = vae.decode(raw)
    assert decoded.shape == (1, 3, 32, 16, 3)
    torch.testing.assert_close(decoded[0], images, rtol=0, atol=1e-5)
    assert torch.equal(vae.encode(torch.cat([images, torch.ones(3, 32, 16, 1)], -1)), raw)  # alpha ignored
    assert vae.latent_channels == codec.z_dim and vae.spacial_compression_decode() == codec.spatial_factor
    with pytest.raises(mvs2v_error, match="IMAGE"):
        vae.encode(torch.zeros(32, 32))
    with pytest.raises(mvs2v_error, match="video latents"):
        vae.decode(torch.zeros(1, codec.z_dim, 8, 8))


# ---- the bundled model, scenes, evaluation -------------------------------------------------------


def test_bundle_is_padded_consistently(bundle, toy, demo):
    info = demo.demo_model_info()
    w = bundle.state_dict[toy.TEXT_EMBEDDING_KEY]
    assert w.shape == (info["dit_config"]["dim"], WIDTH)
    assert not w[:, info["dit_config"]["text_dim"]:].any()
    assert bundle.adapter.metadata.text_dim == WIDTH == bundle.text.width
    assert bundle.text.text_len == info["dit_config"]["text_len"]
    assert bundle.sampler == info["sampler"]


def test_scene_is_the_cli_demos_scene(pack, toy, demo):
    info = demo.demo_model_info()
    s = toy.demo_scene(info, 2)
    scene, index = demo.held_out_scene(info, 2)
    assert s.dataset_index == index and s.truth.scene.to_dict() == scene.to_dict()
    assert s.views == [str(v) for v in info["eval_views"]]
    subjects = toy.scene_subjects(s)
    assert [x.name for x in subjects] == [o.name for o in scene.objects]
    for subj, refs, obj in zip(subjects, s.truth.references, scene.objects):
        assert list(subj.labels) == [r.label for r in refs]
        assert subj.labels[subj.frontal] == obj.start_view  # frame 0's view is the frontal one, as in the CLI demo
        assert np.array_equal((subj.images * 255).round().byte().numpy(), np.stack([r.image for r in refs]))
    codec = pack.mvs2v_toy.codec.load_codec(demo.DEMO_ASSETS / "codec")
    lat = toy.empty_latent(codec, info["frames"], info["height"], info["width"])
    sf = codec.spatial_factor
    assert lat.shape == (1, codec.z_dim, info["frames"], info["height"] // sf, info["width"] // sf) and not lat.any()


def test_evaluation_of_the_truth_and_the_strip(pack, toy, demo):
    evaluate = pack.mvs2v_toy.evaluate.evaluate
    s = toy.demo_scene(demo.demo_model_info(), 0)
    frames = torch.from_numpy(s.truth.frames).float() / 255.0
    summary, strip = toy.evaluate_scene(frames, s)
    m = summary["metrics"]
    direct = evaluate(s.truth.frames, s.truth, {o.name: s.views for o in s.truth.scene.objects})
    assert m["psnr"] == direct["psnr"] and m["ssim"] == pytest.approx(1.0)
    assert m["s_v2r"] == direct["reference_similarity"]["s_v2r"]
    assert summary["scene"] == {"seed": 0, "dataset_index": s.dataset_index, "caption": s.caption}
    assert strip.dtype == np.uint8 and strip.ndim == 3 and strip.shape[2] == 3
    json.dumps(summary, allow_nan=False)


def test_strip_image_is_what_write_strip_writes(tmp_path):
    from PIL import Image

    from mvs2v_core.evaluation.report import strip_image, write_strip

    rng = np.random.default_rng(0)
    refs = [rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)]
    gen, truth = (rng.integers(0, 255, (3, 8, 8, 3), dtype=np.uint8) for _ in range(2))
    path = write_strip(tmp_path / "s.png", refs, gen, truth)
    assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), strip_image(refs, gen, truth))


# ---- the workflow --------------------------------------------------------------------------------


def test_toy_demo_workflow_uses_the_bundled_models_settings(demo):
    """workflows/d_toy_demo_api.json is what build.py makes from model.json today (else: re-run build.py)."""
    spec = importlib.util.spec_from_file_location("mvs2v_workflows_build", REPO / "workflows" / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    expected, _ = build.workflow_d()
    shipped = json.loads((REPO / "workflows" / "d_toy_demo_api.json").read_text())
    strip_meta = {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in shipped.items()}
    assert strip_meta == expected, "workflows/d_toy_demo is stale: run python workflows/build.py OBJECT_INFO.json"
    info = demo.demo_model_info()
    sampler = next(n["inputs"] for n in shipped.values() if n["class_type"] == "MVS2VFlowSampler")
    assert {k: sampler[k] for k in info["sampler"]} == info["sampler"]


def test_toy_bench_workflow_uses_the_bundled_models_settings(demo):
    """benchmarks/cases/toy/toy_workflow_api.json (`mvs2v bench --workflow`, hand-written with placeholders)
    applies the references and samples as the bundled model was trained: Apply MV-S2V's settings and the
    sampler's (but the steps, a placeholder) are workflow (d)'s. A stale one fails every case in ComfyUI."""
    def settings(workflow: dict, class_type: str) -> dict:
        inputs = next(n["inputs"] for n in workflow.values() if n["class_type"] == class_type)
        return {k: v for k, v in inputs.items() if not isinstance(v, list) and k not in ("seed", "steps")}

    bench = json.loads((REPO / "benchmarks" / "cases" / "toy" / "toy_workflow_api.json").read_text())
    shipped = json.loads((REPO / "workflows" / "d_toy_demo_api.json").read_text())
    for class_type in ("MVS2VApply", "MVS2VFlowSampler"):
        assert settings(bench, class_type) == settings(shipped, class_type), class_type
    refs = settings(bench, "MVS2VReferenceSet")
    adapter = demo.demo_model_info()["config"]
    assert (refs["empty_slot_mode"], refs["slot_anchor"]) == (adapter["empty_slot_mode"], adapter["slot_anchor"])
