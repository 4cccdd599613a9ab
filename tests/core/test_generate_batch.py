"""Batched generation (``mvs2v_core.pipeline.batch``) equals generating one item at a time.

The models are tiny and random, built in memory: a 2-layer Wan DiT, the toy pixel-unshuffle codec
and the toy text encoder (``mvs2v_toy``), so every tensor the batch path stacks is exercised.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mvs2v_core.errors import MVS2VError
from mvs2v_core.model.config import WanConfig
from mvs2v_core.model.transformer import WanDiT
from mvs2v_core.pipeline.generate import GenerationSettings, MVS2VPipeline, SubjectInput
from mvs2v_core.references.mfi import MFIProjector
from mvs2v_core.references.settings import ReferenceSettings
from mvs2v_toy.codec import ToyCodec
from mvs2v_toy.text import ToyTextEncoder
from mvs2v_toy.vision import ToyVisionEncoder

SIZE = 16  # 16x16 pixels -> 8x8 latents (codec factor 2) -> 4x4 tokens per frame


def _pipeline(mfi: bool) -> MVS2VPipeline:
    cfg = WanConfig(dim=128, ffn_dim=256, num_heads=1, num_layers=2, in_dim=12, out_dim=12, text_dim=32,
                    text_len=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        dit = WanDiT(cfg).eval()
        proxy = torch.randn(4, cfg.dim)
        projector = MFIProjector(vit_dim=3 * 8 * 8, text_dim=32) if mfi else None
        if projector is not None:
            torch.nn.init.normal_(projector.proj.weight, std=0.1)  # far from its near-zero start
    vision = ToyVisionEncoder(image_size=SIZE, patch=8) if mfi else None
    return MVS2VPipeline(dit, ToyCodec(spatial_factor=2), ToyTextEncoder(), proxy_tokens=proxy, mfi=projector,
                         vision_encoder=vision)


def _view(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))


def _items() -> tuple[list[GenerationSettings], list[list[SubjectInput]]]:
    common = dict(width=SIZE, height=SIZE, frames=3, steps=3, shift=3.0, solver="unipc", ref_scale=2.0,
                  text_scale=3.0, references=ReferenceSettings(4, "ts", "proxy"))
    settings = [GenerationSettings(prompt="a cube turns left from its back on a red floor", seed=5, **common),
                GenerationSettings(prompt="a cube turns right from its front on a blue floor", seed=7,
                                   negative_prompt="a sphere", **common),
                GenerationSettings(prompt="a cube turns left from its left on a red floor", seed=5, **common),
                GenerationSettings(prompt="a cube turns right from its right on a mint floor", seed=9, **common)]
    subjects = [[SubjectInput("cube", [_view(1), _view(2), _view(3)], ["front", "left", "back"])],
                [SubjectInput("cube", [_view(4), _view(5), _view(6)], ["front", "left", "back"])],  # same layout
                [SubjectInput("cube", [_view(7)], ["left"])],  # another layout
                []]  # no references: plain CFG
    return settings, subjects


@pytest.mark.parametrize("mfi", [False, True])
def test_batch_equals_one_by_one(mfi: bool) -> None:
    pipe = _pipeline(mfi)
    settings, subjects = _items()
    batched = pipe.generate_batch(settings, subjects)
    runs = []
    batched_sizes = [r.timings["batch_items"] for r in batched]
    assert batched_sizes == [2.0, 2.0, 1.0, 1.0]  # items 0 and 1 shared one sampling run
    for s, subj, got in zip(settings, subjects, batched):
        one = pipe.generate(s, subj)
        runs.append(one)
        assert got.video.shape == one.video.shape == (3, SIZE, SIZE, 3)
        assert got.latents.shape == one.latents.shape
        assert torch.allclose(got.latents, one.latents, atol=1e-4, rtol=0), (got.latents - one.latents).abs().max()
        assert torch.allclose(got.video, one.video, atol=1e-4, rtol=0)
        assert (got.layout is None) == (one.layout is None)
        if one.layout is not None:
            assert got.layout.filled == one.layout.filled
    # The comparison is not vacuous: the items' outputs differ from each other, and item 2 (the same
    # seed as item 0) differs from item 0 only through its prompt and references.
    for a in range(len(runs)):
        for b in range(a + 1, len(runs)):
            assert (runs[a].latents - runs[b].latents).abs().max() > 1e-2


def test_batch_refuses_items_that_cannot_share_a_run() -> None:
    pipe = _pipeline(False)
    settings, subjects = _items()
    settings[2].steps = 4
    with pytest.raises(MVS2VError, match="batch item 2 has steps=4 but item 0 has 3"):
        pipe.generate_batch(settings, subjects)
    settings, subjects = _items()
    settings[1].references = ReferenceSettings(4, "vanilla", "proxy")
    with pytest.raises(MVS2VError, match="batch item 1 uses reference settings"):
        pipe.generate_batch(settings, subjects)
    with pytest.raises(MVS2VError, match="4 settings but 3 subject lists"):
        pipe.generate_batch(settings, subjects[:3])
    assert pipe.generate_batch([], []) == []
