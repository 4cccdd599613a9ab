"""Context windows for long videos (``mvs2v_core.sampling.windows``) and their reference positions.

Tiny random models on the CPU: the window schedule and blending weights against hand-computed
numbers, the windowed model function against the plain one, and a windowed generation whose every
DiT call is recorded (which frames, which reference latents, which reference position ids).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mvs2v_core.errors import MVS2VError
from mvs2v_core.model.config import WanConfig
from mvs2v_core.model.transformer import WanDiT
from mvs2v_core.pipeline.generate import GenerationSettings, MVS2VPipeline, SubjectInput, context_windows
from mvs2v_core.references.conditioning import ReferenceConditioning
from mvs2v_core.references.layout import ReferenceLayout
from mvs2v_core.references.positions import build_position_ids, reference_position_ids, video_position_ids
from mvs2v_core.references.settings import ReferenceSettings
from mvs2v_core.references.tokens import ReferenceTokenPlan
from mvs2v_core.sampling.windows import REFERENCE_FRAMES_KEY, ContextWindows, windowed_model_fn
from mvs2v_toy.codec import ToyCodec
from mvs2v_toy.text import ToyTextEncoder

SIZE = 16  # 16x16 pixels -> 8x8 latents (toy codec, factor 2, temporal factor 1) -> 4x4 tokens per frame
PER_FRAME = 16
CFG = WanConfig(dim=64, ffn_dim=128, num_heads=1, num_layers=2, in_dim=12, out_dim=12, text_dim=32, text_len=32)
LAYOUT = ReferenceLayout.build([["front", "back"]], 4, names=["cube"])


# ---- schedule and weights ------------------------------------------------------------------------


def spans(windows: ContextWindows, frames: int) -> list[tuple[int, int]]:
    return [(w.start, w.stop - 1) for w in windows.schedule(frames)]


def test_schedule_matches_hand_computed_static_windows():
    # ComfyUI's static_standard: step length - overlap, the last window shifted back to end at the last frame
    assert spans(ContextWindows(5, 2), 8) == [(0, 4), (3, 7)]
    assert spans(ContextWindows(21, 7), 31) == [(0, 20), (10, 30)]
    assert spans(ContextWindows(21, 7), 41) == [(0, 20), (14, 34), (20, 40)]
    assert spans(ContextWindows(4, 0), 12) == [(0, 3), (4, 7), (8, 11)]
    assert spans(ContextWindows(4, 1), 4) == [(0, 3)]  # exactly one window
    assert spans(ContextWindows(6, 2), 4) == [(0, 3)]  # shorter video: one window of its frames


@pytest.mark.parametrize("fuse", ["pyramid", "overlap-linear"])
def test_windows_cover_every_frame_and_weights_sum_to_one(fuse):
    checked = 0
    for length in range(1, 10):
        for overlap in range(length):
            for frames in range(1, 30):
                cw = ContextWindows(length, overlap, fuse)
                plan = cw.schedule(frames)
                covered = torch.zeros(frames, dtype=torch.int64)
                total = torch.zeros(frames, dtype=torch.float64)
                for w, weight in zip(plan, cw.blend_weights(frames)):
                    assert len(w) == min(length, frames)  # every window equally long: one reference basis
                    assert bool((weight > 0).all())
                    covered[w.start:w.stop] += 1
                    total[w.start:w.stop] += weight
                assert plan[0].start == 0 and plan[-1].stop == frames
                assert bool((covered >= 1).all()), (length, overlap, frames)
                assert torch.allclose(total, torch.ones(frames, dtype=torch.float64), atol=1e-12, rtol=0)
                steps = [b.start - a.start for a, b in zip(plan, plan[1:])]
                assert all(s == length - overlap for s in steps[:-1]) and all(0 < s <= length - overlap for s in steps)
                checked += 1
    assert checked == sum(l * 29 for l in range(1, 10))


def test_blending_weights_by_hand():
    assert ContextWindows(5, 2).window_weights(range(0, 5), 8).tolist() == [1, 2, 3, 2, 1]  # pyramid
    assert ContextWindows(4, 2).window_weights(range(0, 4), 8).tolist() == [1, 2, 2, 1]
    lin = ContextWindows(5, 2, "overlap-linear")
    first, last = lin.blend_weights(8)
    # frames 3 and 4 are shared; raw ramps 2/3, 1/3 (fading out) and 1/3, 2/3 (fading in) sum to 1
    torch.testing.assert_close(first, torch.tensor([1, 1, 1, 2 / 3, 1 / 3], dtype=torch.float64))
    torch.testing.assert_close(last, torch.tensor([1 / 3, 2 / 3, 1, 1, 1], dtype=torch.float64))
    pyr = ContextWindows(5, 2).blend_weights(8)
    torch.testing.assert_close(pyr[0][3:], torch.tensor([2 / 3, 1 / 3], dtype=torch.float64))  # 2:1, then 1:2


def test_bad_window_options_are_refused():
    for kwargs, words in (({"length": 0}, "length must be an integer >= 1"),
                          ({"length": 4, "overlap": 4}, "must be shorter than the window"),
                          ({"length": 4, "overlap": -1}, "overlap must be an integer >= 0"),
                          ({"length": 4, "fuse": "flat"}, "use one of pyramid, overlap-linear")):
        with pytest.raises(MVS2VError, match=words):
            ContextWindows(**kwargs)


# ---- the windowed model function -----------------------------------------------------------------


def test_windowed_function_blends_frame_local_predictions_back_to_the_plain_ones():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 10, 2, 2, generator=g)
    refs = torch.randn(2, 3, 4, 2, 2, generator=g)
    calls = []

    def frame_local(xw, t, cond):  # frame i's output depends only on frame i: blending must give it back
        calls.append((xw.shape[2], cond[REFERENCE_FRAMES_KEY], cond["ref_latents"]))
        return torch.tanh(xw) * t[:, None, None, None, None] / 1000 + cond["ref_latents"].mean(2, keepdim=True)

    t = torch.tensor([500.0, 700.0])
    plain = frame_local(x, t, {"ref_latents": refs, REFERENCE_FRAMES_KEY: 10})
    calls.clear()
    for fuse in ("pyramid", "overlap-linear"):
        got = windowed_model_fn(frame_local, ContextWindows(4, 2, fuse))(x, t, {"ref_latents": refs})
        torch.testing.assert_close(got, plain, rtol=0, atol=1e-6)
    assert [c[0] for c in calls] == [4] * 8 and [c[1] for c in calls] == [4] * 8  # windows 0-3 2-5 4-7 6-9
    assert all(c[2] is refs for c in calls)  # the same reference latents in every window


def test_a_window_over_the_whole_video_is_the_plain_call():
    x = torch.randn(1, 3, 5, 2, 2)
    model = lambda xw, t, cond: xw * 3.0 + xw.mean(2, keepdim=True)  # noqa: E731 - couples the frames
    got = windowed_model_fn(model, ContextWindows(5, 2))(x, torch.tensor([1.0]), {})
    assert torch.equal(got, model(x, None, {}))


# ---- reference positions: the plan, the DiT and the cache ----------------------------------------


def test_plan_places_references_after_the_given_frames():
    settings = ReferenceSettings(4, "ts", "gray")
    plan = ReferenceTokenPlan.build((3, 2, 2), LAYOUT, settings, reference_frames=7)
    ids = plan.position_ids()
    assert plan.num_video_tokens == 12 and ids.shape == (12 + 4 * 4, 3)
    assert torch.equal(ids[:12], video_position_ids((3, 2, 2)))  # the call's own video, from 0
    assert torch.equal(ids[12:], reference_position_ids((7, 2, 2), LAYOUT, settings.scheme))
    assert ids[12:, 0].min().item() == 7 + 8  # ts: the first reference at F + gap with F = 7, not 3
    same = ReferenceTokenPlan.build((3, 2, 2), LAYOUT, settings, reference_frames=3)
    assert torch.equal(same.position_ids(), build_position_ids((3, 2, 2), LAYOUT, settings.scheme))
    with pytest.raises(MVS2VError, match="reference_frames >= the call's frames"):
        ReferenceTokenPlan.build((3, 2, 2), LAYOUT, settings, reference_frames=2)


def _dit() -> WanDiT:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return WanDiT(CFG).eval()


def test_dit_and_cache_follow_reference_frames():
    dit = _dit()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 12, 3, 8, 8, generator=g)
    ctx, t = torch.randn(1, 5, 32, generator=g), torch.tensor([600.0])
    lat = torch.randn(1, 12, 4, 8, 8, generator=g)
    full = ReferenceConditioning(lat, LAYOUT, ReferenceSettings(4, "ts", "gray"))
    with torch.no_grad():
        plain = dit(x, t, ctx, refs=full)
        assert torch.equal(dit(x, t, ctx, refs=ReferenceConditioning(lat, LAYOUT, full.settings, reference_frames=3)), plain)
        far = dit(x, t, ctx, refs=ReferenceConditioning(lat, LAYOUT, full.settings, reference_frames=6))
        assert (far - plain).abs().max() > 1e-4  # the references moved
        cached = ReferenceSettings(4, "ts", "gray", "zero", ref_attention="cached")
        refs6 = ReferenceConditioning(lat, LAYOUT, cached, reference_frames=6)
        cache = dit.reference_cache(refs6, (3, 8 // 2, 8 // 2))
        assert cache.grid == (6, 4, 4)  # keyed by the reference basis, not the 3-frame window
        short = x[:, :, :2]  # a shorter window reuses the same cache
        assert torch.equal(dit(short, t, ctx, refs=refs6, ref_cache=cache), dit(short, t, ctx, refs=refs6))
        with pytest.raises(MVS2VError, match="compute the cache again"):
            dit(x, t, ctx, refs=ReferenceConditioning(lat, LAYOUT, cached), ref_cache=cache)


# ---- windowed generation -------------------------------------------------------------------------


def _pipeline() -> MVS2VPipeline:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        proxy = torch.randn(4, CFG.dim)
    return MVS2VPipeline(_dit(), ToyCodec(spatial_factor=2), ToyTextEncoder(), proxy_tokens=proxy)


def _subjects() -> list[SubjectInput]:
    rng = np.random.default_rng(3)
    views = [Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)) for _ in range(2)]
    return [SubjectInput("cube", views, ["front", "back"])]


def _settings(**kw) -> GenerationSettings:
    base = dict(prompt="a cube turns", width=SIZE, height=SIZE, frames=6, steps=2, shift=3.0, seed=4,
                ref_scale=2.0, text_scale=3.0, references=ReferenceSettings(4, "ts", "proxy"))
    return GenerationSettings(**{**base, **kw})


def _record_dit_calls(pipe: MVS2VPipeline, monkeypatch) -> list[dict]:
    """Every DiT forward: its frame count, reference latents and reference position ids."""
    calls: list[dict] = []
    dit, forward, append = pipe.dit, pipe.dit.forward, pipe.dit._append_references

    def rec_forward(x, t, context, clip_fea=None, refs=None, ref_cache=None):
        calls.append({"frames": x.shape[2], "x": x.clone(), "latents": refs.latents.clone(),
                      "reference_frames": refs.reference_frames})
        return forward(x, t, context, clip_fea, refs, ref_cache)

    def rec_append(tokens, timestep, grid, refs):
        out = append(tokens, timestep, grid, refs)
        calls[-1]["video_ids"], calls[-1]["ref_ids"] = out[2][: tokens.shape[1]], out[2][tokens.shape[1]:]
        return out

    monkeypatch.setattr(dit, "forward", rec_forward)
    monkeypatch.setattr(dit, "_append_references", rec_append)
    return calls


def test_one_window_over_the_whole_video_equals_plain_sampling():
    pipe, subjects = _pipeline(), _subjects()
    plain = pipe.generate(_settings(), subjects)
    one = pipe.generate(_settings(context_frames=6, context_overlap=2), subjects)
    assert torch.equal(one.latents, plain.latents)
    other = pipe.generate(_settings(context_frames=4, context_overlap=2), subjects)
    assert (other.latents - plain.latents).abs().max() > 1e-4  # two windows do change the video


def test_every_window_gets_the_same_references_at_the_same_positions(monkeypatch):
    pipe, subjects = _pipeline(), _subjects()
    calls = _record_dit_calls(pipe, monkeypatch)
    noise = []
    monkeypatch.setattr("mvs2v_core.pipeline.generate.make_noise",
                        lambda *a, **k: noise.append(torch.randn(*a[0])) or noise[-1])
    pipe.generate(_settings(context_frames=4, context_overlap=2), subjects)  # windows 0-3, 2-5 over 6 frames
    assert len(calls) == 2 * 2 and [c["frames"] for c in calls] == [4, 4, 4, 4]  # 2 steps x 2 windows
    assert all(c["reference_frames"] == 4 for c in calls)
    first = calls[0]
    assert first["latents"].shape[0] == 3  # Phantom's three passes in one call, the references in each
    want_refs = build_position_ids((4, 4, 4), LAYOUT, ReferenceSettings(4, "ts").scheme)[4 * PER_FRAME:]
    for c in calls:
        assert torch.equal(c["latents"], first["latents"])  # the same reference latents in every window
        assert torch.equal(c["ref_ids"], want_refs)  # and the same positions: after 4 frames, in every window
        assert torch.equal(c["video_ids"], video_position_ids((4, 4, 4)))  # each window's video from 0
    x0 = noise[0].to(torch.float32).expand(3, -1, -1, -1, -1)  # the first step's input, once per pass
    assert torch.equal(calls[0]["x"], x0[:, :, 0:4]) and torch.equal(calls[1]["x"], x0[:, :, 2:6])


def test_cached_references_compute_one_cache_for_every_window(monkeypatch):
    pipe, subjects = _pipeline(), _subjects()
    seen = []
    original = pipe.dit.reference_cache
    monkeypatch.setattr(pipe.dit, "reference_cache", lambda refs, grid: seen.append(grid) or original(refs, grid))
    cached = ReferenceSettings(4, "ts", "proxy", "zero", ref_attention="cached")
    out = pipe.generate(_settings(references=cached, context_frames=4, context_overlap=2, steps=3), subjects)
    assert seen == [(4, 4, 4)]  # one cache (the three passes batched) for 3 steps x 2 windows
    assert torch.isfinite(out.latents).all()


def test_memory_estimate_counts_one_window_plus_the_references():
    pipe = _pipeline()
    layout = ReferenceLayout.build([["front", "back"]], 4)
    refs = ReferenceSettings(4, "ts", "proxy")
    plain, _ = pipe.estimate_memory(_settings(frames=12), layout, refs)
    windowed, _ = pipe.estimate_memory(_settings(frames=12, context_frames=5), layout, refs)
    assert plain.tokens == (12 + 4) * PER_FRAME and windowed.tokens == (5 + 4) * PER_FRAME


# ---- options -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs,words", [
    ({"context_overlap": 2}, "--context-overlap was given without --context-frames"),
    ({"context_frames": 0}, "--context-frames must be an integer >= 1"),
    ({"context_frames": 9, "context_overlap": 9}, "--context-overlap 9 must be shorter than the window"),
    ({"context_frames": 9, "context_overlap": -4}, "--context-overlap must be an integer >= 0"),
    ({"context_frames": 9, "context_fuse": "relative"}, "--context-fuse 'relative' is unknown"),
])
def test_bad_context_settings_are_one_line_errors(kwargs, words):
    with pytest.raises(MVS2VError, match=words) as info:
        _settings(**kwargs)
    assert "\n" not in str(info.value)


def test_context_frames_in_video_frames_follow_comfyuis_rounding():
    s = _settings(frames=121, context_frames=81, context_overlap=30)
    assert context_windows(s, 4) == ContextWindows(21, 7, "pyramid")  # ComfyUI's Wan node: 81 / 30 -> 21 / 7
    assert context_windows(_settings(frames=121, context_frames=81), 4).overlap == 7  # default: a third
    with pytest.raises(MVS2VError, match="--context-frames 80 is not of the form 4n\\+1 that the VAE needs: use 77 or 81"):
        context_windows(_settings(frames=121, context_frames=80), 4)


def test_batched_generation_refuses_windows():
    with pytest.raises(MVS2VError, match="not supported by batched generation"):
        _pipeline().generate_batch([_settings(context_frames=4)], [_subjects()])


# ---- the command line ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_args(tmp_path_factory):
    from mvs2v_toy.demo import make_demo_assets

    root = tmp_path_factory.mktemp("demo")
    a = make_demo_assets(root, seed=0)
    refs = root / "assets" / "refs"

    def args(out, *extra: str) -> list[str]:
        return ["generate", "--dit", str(a["dit"]), "--vae", str(a["vae"]), "--text-encoder", str(a["text_encoder"]),
                "--subject", f"box={refs / 'box_front.png'}@front,{refs / 'box_back.png'}@back",
                "--prompt", "a red box turns", "--width", "32", "--height", "32", "--frames", "13", "--steps", "2",
                "--seed", "3", "--device", "cpu", "--out", str(out), "--save-latents", *extra]

    return args


def _cli_latents(out) -> torch.Tensor:
    from safetensors.torch import load_file

    return load_file(str(out.with_suffix(".latents.safetensors")))["latents"]


def test_cli_windows_run_and_one_window_equals_plain(cli_args, tmp_path, capsys):
    from mvs2v_core.cli import main

    assert main(cli_args(tmp_path / "plain.mp4")) == 0
    assert main(cli_args(tmp_path / "one.mp4", "--context-frames", "13")) == 0  # 13 frames: one window
    assert main(cli_args(tmp_path / "two.mp4", "--context-frames", "9", "--context-overlap", "4",
                         "--context-fuse", "overlap-linear")) == 0
    out = capsys.readouterr().out
    # 13 video frames = 4 latent frames (Wan VAE); 9 = 3 latent frames, overlap 4 // 4 = 1
    assert "context windows: 2 of 3 latent frames (overlap 1, overlap-linear) over 4: 0-2 1-3" in out
    assert "context windows: 1 of 4 latent frames (overlap 1, pyramid) over 4: 0-3" in out  # default overlap 4 // 3
    plain, one, two = (_cli_latents(tmp_path / n) for n in ("plain.mp4", "one.mp4", "two.mp4"))
    assert torch.equal(one, plain) and plain.shape == (1, 4, 4, 4, 4)
    assert (two - plain).abs().max() > 1e-4


@pytest.mark.parametrize("extra,words", [
    (("--context-frames", "8"), "error: --context-frames 8 is not of the form 4n+1 that the VAE needs: use 5 or 9"),
    (("--context-frames", "9", "--context-overlap", "9"), "error: --context-overlap 9 must be shorter than the window"),
    (("--context-overlap", "4"), "error: --context-overlap was given without --context-frames"),
    (("--context-frames", "0"), "error: --context-frames must be an integer >= 1, got 0"),
])
def test_cli_bad_window_options_are_one_line_errors(cli_args, tmp_path, capsys, extra, words):
    from mvs2v_core.cli import main

    assert main(cli_args(tmp_path / "x.mp4", *extra)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.rstrip("\n").endswith(err[err.index("error: "):].split("\n")[0])
    assert words in err and not (tmp_path / "x.mp4").exists()
