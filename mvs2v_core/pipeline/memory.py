"""Up-front memory estimate of a generation, so that a size that cannot fit is refused at once.

Without it, a video too large for the machine (the toy model at Wan's 832x480x81 defaults: half a
million tokens per pass) allocates for tens of seconds, then dies in the allocator or is killed.

What is counted: the peak activation memory of ONE DiT forward, the largest allocation of a
generation (the VAE decode of real Wan VAEs is not counted; the weights are not counted either:
the check runs after the models are loaded, so they are already gone from what is available).
One forward holds ``batch`` = guidance passes in the call (3 for Phantom's guidance, 2 for CFG,
unless ``max_batch_passes`` is lower) times ``tokens`` = video tokens
``f * h * w / patch`` + the kept reference slots' ``slots * h * w / patch``; under context windows
(``--context-frames``) ``f`` is one window's latent frames, since each model call sees one window
and every reference slot. Per (pass, token):

* the attention phase of a block: about ``9 * dim`` float32 values: the residual stream, the
  normed and modulated input, q / k / v, their float32 RoPE temporaries and the attention output
  with its copy (float32 temporaries dominate, so bf16 weights save little here);
* the feed-forward phase: about ``4 * dim`` float32 values plus the hidden layer and its GELU,
  ``2 * ffn_dim`` values of the DiT's dtype;
* the block peak is the larger of the two; add the latent input and output of the call
  (``2 * in_dim * prod(patch)`` float32 values);
* with SDPA's math kernel (no fused kernel for this device / dtype) also the ``L x L`` scores and
  their softmax per head: ``2 * heads * tokens**2`` values. Fused kernels (flash / memory-efficient,
  which recent torch uses on CPU too) keep no such matrix.

The constants come from the peak resident memory of DiT forwards on the CPU (widths 128-256, FFN
1-8x the width, 8k-40k tokens, 1-3 passes; allocations forced to mmap, so that the resident peak
is live memory, not freed heap): the estimate came out 8-19 % above the measurement in fp32 (a
whole toy generation: 7 %) and 19-34 % above in bf16. It is meant to err high, and the refusal waits until it exceeds
:data:`REFUSE_RATIO` times what is available, so only sizes that clearly cannot fit are refused.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import MVS2VError
from ..model.config import WanConfig

ATTENTION_FLOATS_PER_DIM = 9  # float32 values per token and model channel in a block's attention phase
FFN_FLOATS_PER_DIM = 4  # float32 values per token and model channel beside the FFN's hidden layer
FFN_HIDDEN_COPIES = 2  # the hidden layer and its GELU output, in the DiT's dtype
REFUSE_RATIO = 1.5  # refuse only when the estimate is clearly above what is available
GB = 1e9


@dataclass(frozen=True)
class ForwardMemory:
    """Peak activation memory of one DiT forward (see the module docstring for what is counted).

    Attributes:
        tokens: tokens per pass (video + kept reference slots).
        batch: guidance passes in the model call.
        activation_bytes: the block activations and the call's latent input / output.
        attention_bytes: the ``L x L`` attention scores under SDPA's math kernel, else 0.
        cache_bytes: cached reference keys/values (``ref_attention = cached``: the references are not
            in ``tokens``; every block keeps their keys and values instead), else 0.
    """

    tokens: int
    batch: int
    activation_bytes: int
    attention_bytes: int
    cache_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return self.activation_bytes + self.attention_bytes + self.cache_bytes


def forward_memory(
    cfg: WanConfig, tokens: int, batch: int, dtype: torch.dtype = torch.float32, math_attention: bool = False,
    cached_tokens: int = 0,
) -> ForwardMemory:
    """Estimate the peak activation memory of one forward of ``batch`` passes of ``tokens`` tokens each,
    plus ``cached_tokens`` reference tokens held as keys/values in every block (cached references)."""
    elem = torch.empty((), dtype=dtype).element_size()
    attention_phase = ATTENTION_FLOATS_PER_DIM * cfg.dim * 4
    ffn_phase = FFN_FLOATS_PER_DIM * cfg.dim * 4 + FFN_HIDDEN_COPIES * cfg.ffn_dim * elem
    io = 2 * cfg.in_dim * math.prod(cfg.patch_size) * 4
    per_token = max(attention_phase, ffn_phase) + io
    scores = 2 * cfg.num_heads * tokens * (tokens + cached_tokens) * 4 if math_attention else 0
    cache = 2 * cfg.num_layers * cached_tokens * cfg.dim * elem
    return ForwardMemory(tokens, batch, batch * tokens * per_token, batch * scores, batch * cache)


def uses_math_attention(device: torch.device, dtype: torch.dtype, head_dim: int) -> bool:
    """Whether SDPA would take its math kernel (which builds the ``L x L`` matrix) here.

    Asks torch's own kernel choice on a tiny input; ``torch._fused_sdp_choice`` is private, so when it
    is missing or fails, assume the fused kernels every supported torch has on CPU and CUDA.
    """
    try:
        q = torch.zeros(1, 1, 8, head_dim, device=device, dtype=dtype)
        return int(torch._fused_sdp_choice(q, q, q)) == 0  # SDPBackend.MATH
    except Exception:  # noqa: BLE001 - a private API: any failure means "unknown", not an error
        return False


def _meminfo_available() -> int | None:
    """Linux ``MemAvailable`` in bytes, lowered to the cgroup (container) limit left when there is one."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            avail = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None
    try:  # cgroup v2: the container's limit is what the OOM killer enforces
        limit = Path("/sys/fs/cgroup/memory.max").read_text(encoding="ascii").strip()
        if limit != "max":
            avail = min(avail, int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text(encoding="ascii")))
    except (OSError, ValueError):
        pass
    return avail


def available_memory(device: torch.device) -> int | None:
    """Bytes a generation on ``device`` can still allocate, or None when it cannot be told.

    CUDA: the free device memory plus what torch's caching allocator holds unused. CPU: Linux's
    ``MemAvailable`` (and a container limit), else the physical memory (``os.sysconf``).
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type != "cpu":
        return None
    avail = _meminfo_available()
    if avail is None and hasattr(os, "sysconf"):
        try:
            avail = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            return None
    return avail


def check_forward_memory(estimate: ForwardMemory, single: ForwardMemory, device: torch.device) -> None:
    """Refuse a generation whose estimate exceeds :data:`REFUSE_RATIO` x the available memory.

    Args:
        estimate: the forward as it will run first.
        single: the same forward with one pass per call (what ``--max-batch-passes 1`` would need).
        device: where the DiT runs.
    """
    avail = available_memory(device)
    if avail is None or estimate.total_bytes <= REFUSE_RATIO * avail:
        return
    fixes = "use a smaller --width / --height / --frames"
    if single.batch < estimate.batch and single.total_bytes <= avail:
        fixes = f"use --max-batch-passes 1 (about {single.total_bytes / GB:.1f} GB), or a smaller size"
    raise MVS2VError(
        f"this video needs about {estimate.total_bytes / GB:.1f} GB for one DiT forward ({estimate.batch} "
        f"guidance pass(es) x {estimate.tokens:,} tokens) but only {max(avail, 0) / GB:.1f} GB is available on "
        f"{device}: {fixes} (or --skip-memory-check / check_memory=False to try anyway)"
    )
