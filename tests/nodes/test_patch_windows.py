"""The patch's planning pieces without ComfyUI: the memory-estimate shape and window reference positions.

The real-ComfyUI tests (tests/comfyui/test_memory_estimate.py, test_context_windows.py) check the
same end to end; these pin the arithmetic and run everywhere.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from tests.nodes.test_patch_standin import CFG, Executor, StandInWanModel, dit, pack_inputs, patch_module  # noqa: F401
from mvs2v_core.references.settings import PositionScheme, ReferenceSettings


def _area(shape) -> float:
    """What ComfyUI's estimate is linear in: batch x frames x height x width."""
    return shape[0] * math.prod(shape[2:])


def test_references_become_extra_frames_on_the_time_axis(patch_module):
    shape = patch_module.shape_with_references((1, 16, 8, 8, 8), 4)
    assert shape == [1, 16, 12, 8, 8]
    assert patch_module.shape_with_references((1, 16, 8, 8, 8), 0) == [1, 16, 8, 8, 8]
    assert patch_module.shape_with_references((1, 4, 8, 8), 4) == [1, 4, 8, 8]  # not a video latent


def test_under_time_windows_the_references_survive_comfyuis_clamp_in_either_order(patch_module):
    window = 5

    def clamp(s):  # what ComfyUI's own context-window wrapper does to the noise shape
        return [s[0], s[1], min(s[2], window), *s[3:]]

    ours_outer = clamp(patch_module.shape_with_references((2, 16, 8, 8, 8), 4, window))
    ours_inner = patch_module.shape_with_references(clamp((2, 16, 8, 8, 8)), 4, window)
    for shape in (ours_outer, ours_inner):
        assert _area(shape) == _area((2, 16, window + 4, 8, 8))
    short = patch_module.shape_with_references((1, 16, 3, 8, 8), 4, window)  # no windows: 3 <= 5
    assert _area(clamp(short)) == _area((1, 16, 3 + 4, 8, 8))


def _record_pe(injection, model, x, options):
    seen = []

    def probe(args, extra):
        seen.append(args["pe"].clone())
        return extra["original_block"](args)

    opts = {**options, "patches_replace": {"dit": {("double_block", 0): probe}}}
    context = torch.zeros(x.shape[0], 5, CFG.text_dim)
    with torch.no_grad():
        out = injection(Executor(model), x, torch.tensor([500.0]), context, None, None, opts)
    return seen[0][0, :, 0], out  # cos rows


def test_windowed_calls_place_the_references_after_the_longest_window(dit, patch_module, pack):
    g = torch.Generator().manual_seed(4)
    latents = torch.randn(1, 4, 8, 4, 4, generator=g)
    settings = ReferenceSettings(4, PositionScheme("ts", gap=8), "gray", "same")
    injection = patch_module.ReferenceInjection(latents, *pack_inputs(pack, settings), None)
    model, per_frame = StandInWanModel(dit), 4  # 4 x 4 latent -> 2 x 2 patches
    window = {patch_module.WINDOW_FRAMES_KEY: 6, patch_module.CONTEXT_WINDOW_KEY: object()}
    short = torch.randn(1, 4, 3, 4, 4, generator=g)
    long = torch.randn(1, 4, 6, 4, 4, generator=g)
    cos_short, _ = _record_pe(injection, model, short, window)
    cos_long, _ = _record_pe(injection, model, long, window)
    cos_plain_short, _ = _record_pe(injection, model, short, {})
    cos_plain_long, _ = _record_pe(injection, model, long, {})
    n_refs = 8 * per_frame
    # the references sit where a 6-frame video puts them, in the 3-frame window too
    torch.testing.assert_close(cos_short[-n_refs:], cos_long[-n_refs:], rtol=0, atol=0)
    torch.testing.assert_close(cos_long, cos_plain_long, rtol=0, atol=0)
    assert not torch.equal(cos_short[-n_refs:], cos_plain_short[-n_refs:])
    # the window's own video keeps positions from 0
    torch.testing.assert_close(cos_short[: 3 * per_frame], cos_plain_short[: 3 * per_frame], rtol=0, atol=0)
    # the key alone (no window in this call: a video too short for windows) changes nothing
    cos_unwindowed, _ = _record_pe(injection, model, short, {patch_module.WINDOW_FRAMES_KEY: 6})
    torch.testing.assert_close(cos_unwindowed, cos_plain_short, rtol=0, atol=0)


def test_windows_over_height_are_refused_with_a_clear_error(dit, patch_module, pack):
    latents = torch.randn(1, 4, 8, 4, 4)
    settings = ReferenceSettings(4, PositionScheme("ts"), "gray", "same")
    injection = patch_module.ReferenceInjection(latents, *pack_inputs(pack, settings), None)
    window = {patch_module.CONTEXT_WINDOW_KEY: SimpleNamespace(dim=3)}
    with pytest.raises(Exception, match="dim 3 / 4"):
        _record_pe(injection, StandInWanModel(dit), torch.randn(1, 4, 2, 2, 4), window)
