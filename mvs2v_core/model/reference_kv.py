"""The cached-reference mode's per-block keys and values (``ref_attention = cached``).

In that mode the reference tokens attend only to each other, skip the text and run at timestep 0,
so nothing they compute depends on the noisy video, the step or the prompt: their keys and values
in every block are a function of the reference latents alone. :meth:`WanDiT.reference_cache`
computes them once; every later forward of the same generation (every step, every guidance pass
with the same references) reuses them, and its video tokens attend to ``[video keys | cached keys]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import MVS2VError


@dataclass(frozen=True)
class ReferenceKV:
    """Keys and values of the reference tokens in every block.

    Attributes:
        blocks: one ``(k, v)`` per DiT block, each ``[B, heads, Lr, head_dim]`` (RoPE applied to ``k``).
        grid: ``(F, H, W)`` in patches the reference positions were computed for: the video's grid, or
            with ``reference_frames`` (context windows) the window length for F (reference positions
            depend on that length under most schemes, so another grid needs another cache).
    """

    blocks: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    grid: tuple[int, int, int]

    @property
    def batch(self) -> int:
        return int(self.blocks[0][0].shape[0]) if self.blocks else 0

    @property
    def num_tokens(self) -> int:
        return int(self.blocks[0][0].shape[2]) if self.blocks else 0

    def nbytes(self) -> int:
        """Memory the cache holds (what cached references cost on top of a plain forward)."""
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.blocks)

    def check(self, grid: tuple[int, int, int], batch: int, num_blocks: int) -> None:
        """Refuse a cache made for another video size, batch or model."""
        if tuple(grid) != tuple(self.grid) or batch != self.batch or num_blocks != len(self.blocks):
            raise MVS2VError(
                f"the cached reference keys/values were computed for a {self.grid} patch grid, batch {self.batch} and "
                f"{len(self.blocks)} blocks, but this forward has {tuple(grid)}, batch {batch} and {num_blocks} "
                "blocks: compute the cache again (WanDiT.reference_cache) for this video"
            )


class ReferenceKVMemo:
    """One generation's caches, keyed by the reference latents they were computed from.

    The sampler hands the model the same reference latents at every step (concatenated across the
    guidance passes that run in one call), so a cache is computed on the first call and found again
    by value on the later ones; the no-reference pass (zero latents) gets its own.
    """

    def __init__(self, max_entries: int = 4) -> None:
        self.max_entries = max_entries
        self._entries: list[tuple[torch.Tensor, ReferenceKV]] = []
        self.computed = 0

    def get(self, latents: torch.Tensor, grid: tuple[int, int, int], compute) -> ReferenceKV:
        """The cache of ``latents`` for ``grid``; ``compute()`` makes it when none matches."""
        for key, cache in self._entries:
            if cache.grid == tuple(grid) and key.shape == latents.shape and key.device == latents.device \
                    and torch.equal(key, latents):
                return cache
        cache = compute()
        self.computed += 1
        self._entries = [*self._entries[-(self.max_entries - 1):], (latents.detach().clone(), cache)]
        return cache


__all__ = ["ReferenceKV", "ReferenceKVMemo"]
