"""A Wan 2.1 / 2.2 DiT that also takes multi-view reference tokens.

Module and parameter names follow the original Wan code (``blocks.N.self_attn.q``), so original
and ComfyUI checkpoints load without renaming. With no references the forward pass is the plain
Wan text-to-video (or I2V) model; with a :class:`ReferenceConditioning` the reference slots are
patch-embedded with the same Conv3d, empty slots are handled by the empty-slot mode, the tokens are
appended after the video tokens, every token gets its position from the chosen scheme, and only the
video tokens go through the output head.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import MVS2VError
from ..references.conditioning import ReferenceConditioning
from ..references.positions import video_position_ids
from ..references.tokens import ReferenceTokenPlan
from .config import WanConfig
from .reference_kv import ReferenceKV
from .rope import COMPLEX_ROPE_DEVICES, apply_rope, rope_cos_sin, rope_rotation


KV3 = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class RMSNorm(nn.Module):
    """RMS norm over the last dim, computed in float32; weight ``[dim]``.

    ``torch.nn.functional.rms_norm`` (fused where the backend has a kernel) on the float32 input and
    weight, cast once at the end: for bf16 / fp16 models the mean of squares, the normalisation and
    the weight product all stay in float32, as before (equal bit for bit on CPU).
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x.float(), self.weight.shape, self.weight.float(), self.eps).type_as(x)


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the input dtype (as Wan does)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).type_as(x)


_RUNS_UNSET = object()


class Modulation:
    """Per-token modulation (shift / scale / gate vectors) applied without materialising ``[B, L, n, dim]``.

    ``table`` holds one row per distinct timestep (``[B, 1, n, dim]`` when every token of a sample
    shares its timestep, else ``[U, n, dim]`` over the U distinct values); ``index`` (``[B, L]``,
    or None) picks each token's row.

    :meth:`modulate` and :meth:`gated_add` are one fused ``addcmul`` pass over the tokens. With an
    index, tokens usually come in a few long runs that use one row each in every sample (video
    tokens, then reference tokens at timestep 0; Wan 2.2's clean first frame): each run is then
    computed as a per-sample slice written straight into the output, so per-token timesteps cost
    no extra pass. Runs are used when there are at most ``MAX_RUNS`` of them, ``MIN_RUN_TOKENS``
    tokens long on average; otherwise each token's row is gathered (one ``index_select`` per vector).
    """

    MAX_RUNS = 32
    MIN_RUN_TOKENS = 16

    def __init__(self, table: torch.Tensor, index: torch.Tensor | None) -> None:
        self.table = table
        self.index = index
        self._runs_cache: object = _RUNS_UNSET
        self._run_tables: list[torch.Tensor] | None = None

    def chunk(self, i: int) -> torch.Tensor:
        """Vector ``i``, broadcastable to ``[B, L, dim]`` (float32)."""
        if self.index is None:
            return self.table[:, :, i]  # [B, 1, dim]
        rows = torch.index_select(self.table[:, i], 0, self.index.reshape(-1))  # faster than fancy indexing
        return rows.view(*self.index.shape, -1)  # [B, L, dim]

    def plus(self, param: torch.Tensor) -> "Modulation":
        """Add a learned ``[1, n, dim]`` table (a block's or the head's ``modulation``)."""
        p = param.float()
        if self.index is None:
            return Modulation(self.table + p.unsqueeze(0), None)
        out = Modulation(self.table + p, self.index)
        out._runs_cache = self._runs()  # same index, same runs: found once per forward, not per block
        return out

    # ---- fused application ----------------------------------------------------------------------
    def modulate(self, y: torch.Tensor, shift: int, scale: int) -> torch.Tensor:
        """``y * (1 + scale) + shift`` per token, float32 (``y`` ``[B, L, dim]``)."""
        return self._map(lambda v, y, out=None: torch.addcmul(v(shift), y, v(scale, True), out=out), y.float())

    def gated_add(self, x: torch.Tensor, y: torch.Tensor, gate: int) -> torch.Tensor:
        """``x + y * gate`` per token, float32 (``x``, ``y`` ``[B, L, dim]``)."""
        return self._map(lambda v, x, y, out=None: torch.addcmul(x, y, v(gate), out=out), x.float(), y.float())

    def _runs(self) -> list[tuple[int, int, torch.Tensor]] | None:
        """``(start, end, row per sample [B])`` of the token runs that share a row, or None to gather."""
        if self._runs_cache is _RUNS_UNSET:
            self._runs_cache = None
            idx = self.index
            if idx is not None and idx.shape[1] > 0:
                cuts = (torch.nonzero((idx[:, 1:] != idx[:, :-1]).any(0)).flatten() + 1).tolist()
                n = len(cuts) + 1
                if n <= self.MAX_RUNS and n * self.MIN_RUN_TOKENS <= idx.shape[1]:
                    starts, ends = [0, *cuts], [*cuts, idx.shape[1]]
                    self._runs_cache = [(a, b, idx[:, a]) for a, b in zip(starts, ends)]
        return self._runs_cache  # type: ignore[return-value]

    @staticmethod
    def _vectors(table: torch.Tensor):
        """``v(i, plus_one=False)``: row ``i`` of a per-sample table ``[B, 1, n, dim]`` (+1 on the small table)."""
        return lambda i, plus_one=False: (table[:, :, i] + 1) if plus_one else table[:, :, i]

    def _map(self, fn, *xs: torch.Tensor) -> torch.Tensor:
        """``fn(v, *token_slices, out=...)`` over every token, ``v(i, plus_one)`` giving the slice's vectors."""
        if self.index is None:
            return fn(self._vectors(self.table), *xs)
        runs = self._runs()
        if runs is None:
            flat, shape = self.index.reshape(-1), (*self.index.shape, -1)
            table = self.table

            def gathered(i: int, plus_one: bool = False) -> torch.Tensor:
                rows = (table[:, i] + 1) if plus_one else table[:, i]
                return torch.index_select(rows, 0, flat).view(shape)

            return fn(gathered, *xs)
        if self._run_tables is None:
            self._run_tables = [self.table[rows].unsqueeze(1) for _, _, rows in runs]  # [B, 1, n, dim] each
        parts = [(a, b, self._vectors(t)) for (a, b, _), t in zip(runs, self._run_tables)]
        if len(parts) == 1:
            return fn(parts[0][2], *xs)
        if torch.is_grad_enabled() and (self.table.requires_grad or any(x.requires_grad for x in xs)):
            return torch.cat([fn(v, *(x[:, a:b] for x in xs)) for a, b, v in parts], dim=1)  # out= has no autograd
        out = torch.empty(xs[0].shape, dtype=torch.float32, device=xs[0].device)
        for a, b, v in parts:
            fn(v, *(x[:, a:b] for x in xs), out=out[:, a:b])
        return out


class _AttentionProjections(nn.Module):
    """The q / k / v / o projections and RMS q / k norms every Wan attention has (width ``dim``)."""

    def __init__(self, dim: int, num_heads: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)


class WanSelfAttention(_AttentionProjections):
    """Self-attention with RMS q/k norm and 3D RoPE. Input/output ``[B, L, dim]``.

    ``cos, sin``: the RoPE tables of :func:`rope_cos_sin`, or ``cos`` alone holding the complex
    table of :func:`rope_rotation` (``sin`` None); see :func:`apply_rope`.
    """

    def project(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor | None = None) -> KV3:
        """``x`` ``[B, L, dim]`` -> ``(q, k, v)``, each ``[B, heads, L, head_dim]``, RoPE applied to q and k."""
        b, n, _ = x.shape
        q = self.norm_q(self.q(x)).view(b, n, self.num_heads, -1)
        k = self.norm_k(self.k(x)).view(b, n, self.num_heads, -1)
        v = self.v(x).view(b, n, self.num_heads, -1)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Heads-first ``q [B, h, Lq, d]`` over ``k, v [B, h, Lk, d]`` -> ``[B, Lq, dim]`` after ``o``."""
        return self.o(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2))

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor | None = None,
                extra_kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``extra_kv``: cached reference keys and values ``[B, heads, Lr, head_dim]`` the queries also see."""
        q, k, v = self.project(x, cos, sin)
        if extra_kv is not None:
            k, v = torch.cat([k, extra_kv[0].to(k.dtype)], dim=2), torch.cat([v, extra_kv[1].to(v.dtype)], dim=2)
        return self.attend(q, k, v)


class WanCrossAttention(_AttentionProjections):
    """Cross-attention to the text context, plus the I2V image context when ``image_branch``.

    Input ``x`` ``[B, L, dim]``; ``context`` ``[B, Lc, dim]``; ``context_img`` ``[B, Li, dim]``.
    """

    def __init__(self, dim: int, num_heads: int, eps: float = 1e-6, image_branch: bool = False) -> None:
        super().__init__(dim, num_heads, eps)
        if image_branch:
            self.k_img = nn.Linear(dim, dim)
            self.v_img = nn.Linear(dim, dim)
            self.norm_k_img = RMSNorm(dim, eps)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b = q.shape[0]
        heads = lambda t: t.view(b, t.shape[1], self.num_heads, -1).transpose(1, 2)  # noqa: E731
        return F.scaled_dot_product_attention(heads(q), heads(k), heads(v)).transpose(1, 2).flatten(2)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, context_img: torch.Tensor | None = None
    ) -> torch.Tensor:
        q = self.norm_q(self.q(x))
        out = self._attend(q, self.norm_k(self.k(context)), self.v(context))
        if context_img is not None:
            if not hasattr(self, "k_img"):
                raise MVS2VError("image features were given to a model without an image branch (a T2V model)")
            out = out + self._attend(q, self.norm_k_img(self.k_img(context_img)), self.v_img(context_img))
        return self.o(out)


class WanBlock(nn.Module):
    """One DiT block: modulated self-attention, cross-attention, modulated tanh-GELU FFN."""

    def __init__(self, cfg: WanConfig) -> None:
        super().__init__()
        dim = cfg.dim
        self.norm1 = FP32LayerNorm(dim, cfg.eps, elementwise_affine=False)
        self.self_attn = WanSelfAttention(dim, cfg.num_heads, cfg.eps)
        self.norm3 = FP32LayerNorm(dim, cfg.eps, elementwise_affine=True) if cfg.cross_attn_norm else nn.Identity()
        self.cross_attn = WanCrossAttention(dim, cfg.num_heads, cfg.eps, image_branch=cfg.is_i2v)
        self.norm2 = FP32LayerNorm(dim, cfg.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(dim, cfg.ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.ffn_dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / dim**0.5)

    def forward(
        self,
        x: torch.Tensor,
        e: Modulation,
        context: torch.Tensor,
        context_img: torch.Tensor | None,
        cos: torch.Tensor,
        sin: torch.Tensor | None = None,
        extra_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``cos, sin`` as for :class:`WanSelfAttention` (WanDiT passes the complex table and ``sin`` None
        on CPU and CUDA); ``extra_kv``: this block's cached reference keys/values (cached mode)."""
        m = e.plus(self.modulation)  # rows: shift, scale, gate (attention), shift, scale, gate (FFN)
        h = m.modulate(self.norm1(x), 0, 1).type_as(x)
        x = m.gated_add(x, self.self_attn(h, cos, sin, extra_kv), 2).type_as(x)
        x = x + self.cross_attn(self.norm3(x), context, context_img)
        h = m.modulate(self.norm2(x), 3, 4).type_as(x)
        return m.gated_add(x, self.ffn(h), 5).type_as(x)

    def forward_reference(
        self, r: torch.Tensor, e: Modulation, cos: torch.Tensor, sin: torch.Tensor | None = None,
        need_output: bool = True,
    ) -> tuple[torch.Tensor | None, tuple[torch.Tensor, torch.Tensor]]:
        """The reference stream of the cached mode: self-attention among reference tokens only, no text.

        Args:
            r: reference tokens ``[B, Lr, dim]``; ``e``: their modulation (timestep 0).
            need_output: False for the last block, whose output nobody reads (only its keys/values).

        Returns:
            ``(r after the block or None, (k, v))``, keys/values ``[B, heads, Lr, head_dim]`` (RoPE applied).
        """
        m = e.plus(self.modulation)
        h = m.modulate(self.norm1(r), 0, 1).type_as(r)
        q, k, v = self.self_attn.project(h, cos, sin)
        if not need_output:
            return None, (k, v)
        r = m.gated_add(r, self.self_attn.attend(q, k, v), 2).type_as(r)
        h = m.modulate(self.norm2(r), 3, 4).type_as(r)
        return m.gated_add(r, self.ffn(h), 5).type_as(r), (k, v)


class WanHead(nn.Module):
    """Output head: modulated LayerNorm then a linear map to ``prod(patch) * out_dim`` per token."""

    def __init__(self, cfg: WanConfig) -> None:
        super().__init__()
        self.norm = FP32LayerNorm(cfg.dim, cfg.eps, elementwise_affine=False)
        self.head = nn.Linear(cfg.dim, math.prod(cfg.patch_size) * cfg.out_dim)
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim**0.5)

    def forward(self, x: torch.Tensor, e: Modulation) -> torch.Tensor:
        m = e.plus(self.modulation)  # rows: shift, scale
        return self.head(m.modulate(self.norm(x), 0, 1).type_as(x))


class WanImageEmbedding(nn.Module):
    """I2V image branch: CLIP features ``[B, Li, image_dim]`` -> ``[B, Li, dim]``."""

    def __init__(self, image_dim: int, dim: int, pos_len: int | None = None) -> None:
        super().__init__()
        self.proj = nn.Sequential(
            FP32LayerNorm(image_dim),
            nn.Linear(image_dim, image_dim),
            nn.GELU(),
            nn.Linear(image_dim, dim),
            FP32LayerNorm(dim),
        )
        if pos_len is not None:
            self.emb_pos = nn.Parameter(torch.zeros(1, pos_len, image_dim))

    def forward(self, clip_fea: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "emb_pos"):
            b, n, d = clip_fea.shape
            clip_fea = clip_fea.reshape(-1, 2 * n, d) + self.emb_pos
        return self.proj(clip_fea)


def sinusoidal_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``[N]`` timesteps -> ``[N, dim]`` ``cat(cos, sin)`` features, phases in float64 as in Wan."""
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    ang = torch.outer(t.to(torch.float64), freqs)
    return torch.cat([ang.cos(), ang.sin()], dim=1).float()


class WanDiT(nn.Module):
    """Wan DiT with optional multi-view reference tokens.

    Args:
        config: a :class:`WanConfig` (or pass its fields as keyword arguments).
    """

    def __init__(self, config: WanConfig | None = None, **kwargs) -> None:
        super().__init__()
        cfg = config if config is not None else WanConfig(**kwargs)
        self.config = cfg
        dim = cfg.dim
        self.patch_embedding = nn.Conv3d(cfg.in_dim, dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        self.text_embedding = nn.Sequential(nn.Linear(cfg.text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim))
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.blocks = nn.ModuleList([WanBlock(cfg) for _ in range(cfg.num_layers)])
        self.head = WanHead(cfg)
        if cfg.is_i2v:
            self.img_emb = WanImageEmbedding(cfg.image_dim, dim, cfg.image_pos_len)  # type: ignore[arg-type]
        self.gradient_checkpointing = False

    # ---------------------------------------------------------------------------------------------
    def enable_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute each block in the backward pass instead of storing its activations."""
        self.gradient_checkpointing = enabled

    @property
    def dtype(self) -> torch.dtype:
        return self.patch_embedding.weight.dtype

    def patch_grid(self, shape: Sequence[int]) -> tuple[int, int, int]:
        """``(F', H', W')``, the token grid of video latents of ``shape`` ``[B, C, F, H, W]``."""
        f, h, w = (int(s) for s in shape[2:5])
        pt, ph, pw = self.config.patch_size
        if f % pt or h % ph or w % pw:
            raise MVS2VError(f"latent size {f}x{h}x{w} is not divisible by the patch size {self.config.patch_size}")
        return f // pt, h // ph, w // pw

    def _embed_patches(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, F, H, W]`` -> ``[B, F', H', W', dim]``; the Conv3d runs in float32 as in Wan."""
        w = self.patch_embedding.weight
        y = F.conv3d(x.float(), w.float(), self.patch_embedding.bias.float(), stride=self.config.patch_size)
        # contiguous: a transposed residual stream would make every norm and add copy or stride.
        return y.to(self.dtype).permute(0, 2, 3, 4, 1).contiguous()

    def _time_modulation(self, t: torch.Tensor, num_tokens: int) -> tuple[Modulation, Modulation]:
        """Time embedding -> (block modulation [.., 6, dim], head modulation [.., 1, dim]).

        Args:
            t: ``[B]`` (every token of a sample shares it) or ``[B, N]`` with ``N`` dividing
                ``num_tokens`` (per frame or per token; a frame's value covers its tokens).
        """
        if t.ndim == 1:
            values, index = t.float(), None
        else:
            if num_tokens % t.shape[1]:
                raise MVS2VError(f"timesteps of shape {tuple(t.shape)} do not divide the {num_tokens} tokens")
            t = t.repeat_interleave(num_tokens // t.shape[1], dim=1)
            values, index = torch.unique(t.float(), return_inverse=True)
        e = self.time_embedding(sinusoidal_embedding(values, self.config.freq_dim).to(self.time_embedding[0].weight.dtype)).float()
        # (the input in the projection's own dtype: a model cast to bf16 as a whole runs too)
        e0 = self.time_projection(e.to(self.time_projection[1].weight.dtype)).float().unflatten(1, (6, -1))
        if index is None:
            return Modulation(e0[:, None], None), Modulation(e[:, None, None], None)
        return Modulation(e0, index), Modulation(e[:, None], index)

    def _reference_tokens(self, refs: ReferenceConditioning, grid: tuple[int, int, int], batch: int,
                          device: torch.device) -> tuple[ReferenceTokenPlan, torch.Tensor]:
        """The shared :class:`ReferenceTokenPlan` and the kept slots as tokens ``[B, Lr, dim]``: embedded with
        the model's own Conv3d, empty slots replaced by proxy vectors (the ComfyUI patch runs the same plan)."""
        plan = ReferenceTokenPlan.build(grid, refs.layout, refs.settings, refs.sample_layouts,
                                        self.reference_frames(refs))
        if refs.latents.shape[0] != batch or refs.latents.shape[1] != self.config.in_dim:
            raise MVS2VError(
                f"reference latents {tuple(refs.latents.shape)} do not match the video latents "
                f"(batch {batch}, {self.config.in_dim} channels): batch and channel counts must agree"
            )
        ref_tok = self._embed_patches(plan.select_latents(refs.latents).to(device))  # [B, S_k, H', W', dim]
        if ref_tok.shape[2:4] != grid[1:]:
            raise MVS2VError(
                f"reference latents give a {ref_tok.shape[2]}x{ref_tok.shape[3]} token grid but the video gives "
                f"{grid[1]}x{grid[2]}: letterbox the references to the video's width and height"
            )
        return plan, plan.fill_proxies(ref_tok.flatten(1, 3), refs.proxy_tokens, start=0)

    def reference_frames(self, refs: ReferenceConditioning) -> int | None:
        """``refs.reference_frames`` (latent frames) in patches, or None: where the references are placed."""
        if refs.reference_frames is None:
            return None
        return math.ceil(refs.reference_frames / self.config.patch_size[0])

    def reference_grid(self, refs: ReferenceConditioning, grid: tuple[int, int, int]) -> tuple[int, int, int]:
        """The grid the reference positions are computed for: ``grid`` with ``refs.reference_frames`` frames
        when given. What a cached-reference entry depends on besides the latents (not the video's length)."""
        frames = self.reference_frames(refs)
        return (int(grid[0]) if frames is None else frames, int(grid[1]), int(grid[2]))

    def _append_references(
        self, tokens: torch.Tensor, timestep: torch.Tensor, grid: tuple[int, int, int], refs: ReferenceConditioning
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Video tokens ``[B, Lv, dim]`` -> (video + reference tokens, their timesteps, position ids ``[L, 3]``)."""
        plan, ref_tok = self._reference_tokens(refs, grid, tokens.shape[0], tokens.device)
        return torch.cat([tokens, ref_tok], dim=1), plan.timesteps(timestep), plan.position_ids()

    def _rope(self, pos: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
        """RoPE tables for position ids ``[L, 3]``: the complex table (and None) where it is faster."""
        cos, sin = rope_cos_sin(pos.to(device), self.config.head_dim)
        if device.type in COMPLEX_ROPE_DEVICES:
            return rope_rotation(cos, sin), None  # built once per forward
        return cos, sin

    def _run_block(self, method, *args):
        """``method(*args)``, recomputed in the backward pass under gradient checkpointing."""
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(method, *args, use_reentrant=False)
        return method(*args)

    def reference_cache(self, refs: ReferenceConditioning, grid: tuple[int, int, int]) -> ReferenceKV:
        """Every block's reference keys/values for a video of ``grid`` patches (``ref_attention = cached``).

        The reference tokens run through the blocks on their own: timestep 0, self-attention among
        themselves, no text. The result is valid for every step and guidance pass of a generation with
        these reference latents (see :mod:`mvs2v_core.model.reference_kv`); it is differentiable, so
        the trainer computes it inside each training forward. With ``refs.reference_frames`` the
        references are placed after that many frames, so one cache serves every context window.
        """
        if not refs.settings.cached:
            raise MVS2VError("reference keys/values can be cached only with reference attention 'cached' "
                             "(and reference timestep 'zero'): set them in the reference settings")
        b = refs.latents.shape[0]
        device = self.patch_embedding.weight.device
        plan, r = self._reference_tokens(refs, grid, b, device)
        cos, sin = self._rope(plan.reference_position_ids(), device)
        e, _ = self._time_modulation(torch.zeros(b, device=device), r.shape[1])
        pairs, last = [], len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            r, kv = self._run_block(block.forward_reference, r, e, cos, sin, i < last)
            pairs.append(kv)
        return ReferenceKV(tuple(pairs), plan.reference_grid)

    def forward(
        self,
        x: torch.Tensor,
        timestep: torch.Tensor,
        context: torch.Tensor,
        clip_fea: torch.Tensor | None = None,
        refs: ReferenceConditioning | None = None,
        ref_cache: ReferenceKV | None = None,
    ) -> torch.Tensor:
        """Predict the flow velocity for the video latents.

        Args:
            x: noisy video latents ``[B, in_dim, F, H, W]`` (H, W divisible by the patch size).
            timestep: ``[B]`` (or a scalar) in [0, 1000], or ``[B, F'*H'*W']`` per video token (Wan 2.2).
            context: text embeddings ``[B, Lc, text_dim]``; zero-padded to ``text_len`` when shorter.
                MFI tokens, when used, are already appended (see :mod:`mvs2v_core.references.mfi`).
            clip_fea: CLIP features ``[B, 257, image_dim]`` for I2V models.
            refs: reference slots, layout and position scheme; None for plain T2V.
            ref_cache: under ``ref_attention = cached``, the keys/values :meth:`reference_cache` made for
                these references and this reference grid (:meth:`reference_grid`: the video's size, or
                the window length under ``refs.reference_frames``); computed here when None.

        Returns:
            Velocity ``[B, out_dim, F, H, W]`` for the video frames only.
        """
        cfg = self.config
        if x.ndim != 5 or x.shape[1] != cfg.in_dim:
            raise MVS2VError(
                f"video latents must be [batch, {cfg.in_dim}, frames, height, width] for this model, got {tuple(x.shape)}"
            )
        b = x.shape[0]
        grid = self.patch_grid(x.shape)
        tokens = self._embed_patches(x).flatten(1, 3)  # [B, Lv, dim]
        if timestep.ndim == 0:
            timestep = timestep.expand(b)
        timestep = timestep.to(tokens.device)
        if timestep.ndim == 2 and timestep.shape[1] != tokens.shape[1]:
            raise MVS2VError(
                f"per-token timesteps must be [batch, {tokens.shape[1]}] (one per video token), got {tuple(timestep.shape)}"
            )
        cache = None
        if refs is not None and refs.settings.cached:  # video tokens only; references come as keys/values
            cache = ref_cache if ref_cache is not None else self.reference_cache(refs, grid)
            cache.check(self.reference_grid(refs, grid), b, len(self.blocks))
            pos = video_position_ids(grid)
        elif refs is None:
            if ref_cache is not None:
                raise MVS2VError("ref_cache was given without references: pass the refs it was computed from")
            pos = video_position_ids(grid)
        else:
            tokens, timestep, pos = self._append_references(tokens, timestep, grid, refs)
        n_video = grid[0] * grid[1] * grid[2]
        cos, sin = self._rope(pos, tokens.device)
        e_blocks, e_head = self._time_modulation(timestep, tokens.shape[1])

        if context.shape[1] < cfg.text_len:
            context = F.pad(context, (0, 0, 0, cfg.text_len - context.shape[1]))
        ctx = self.text_embedding(context.to(self.text_embedding[0].weight.dtype))
        ctx_img = None
        if clip_fea is not None:
            if not cfg.is_i2v:
                raise MVS2VError("CLIP image features were given, but this is a T2V model without an image branch")
            ctx_img = self.img_emb(clip_fea.to(self.text_embedding[0].weight.dtype))

        for i, block in enumerate(self.blocks):
            extra = () if cache is None else (cache.blocks[i],)  # the plain call keeps the block's old signature
            tokens = self._run_block(block, tokens, e_blocks, ctx, ctx_img, cos, sin, *extra)

        video = tokens[:, :n_video]
        if e_head.index is not None:
            e_head = Modulation(e_head.table, e_head.index[:, :n_video])
        out = self.head(video, e_head)
        return self.unpatchify(out, grid)

    def unpatchify(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """``[B, F'*H'*W', pt*ph*pw*C]`` -> ``[B, C, F'*pt, H'*ph, W'*pw]``."""
        pt, ph, pw = self.config.patch_size
        return rearrange(tokens, "b (f h w) (pt ph pw c) -> b c (f pt) (h ph) (w pw)",
                         f=grid[0], h=grid[1], w=grid[2], pt=pt, ph=ph, pw=pw)
