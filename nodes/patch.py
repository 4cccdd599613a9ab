"""The MV-S2V patch of a native ComfyUI Wan model: one DIFFUSION_MODEL wrapper.

Per model call the wrapper

1. takes the reference slots that produce tokens (all, or the filled ones under ``drop``), scaled
   by the per-sample reference gate (0 in the no-reference guidance pass), and hands them to the
   model's own ``_forward`` as ``time_dim_concat`` -- so the model's own Conv3d patch-embeds them
   after the video frames and its own code trims them from the output;
2. takes the position ids from the shared reference-token plan
   (``mvs2v_core.references.tokens.ReferenceTokenPlan``, the one ``WanDiT`` runs too) and turns
   them into freqs with the model's own ``rope_embedder``;
3. adds a block replacement for every block (composed with any replacement another node set) that
   hands the block those freqs, and, in block 0, whose input is the patch embedding, puts the
   adapter's proxy vector into every empty slot;
4. extends per-frame / per-token timesteps (Wan 2.2) over the reference frames, or gives the
   references timestep 0 when asked.

With cached references (``ref_attention = cached``) the references are not handed to ``_forward``:
on the first call of a sampling run with given reference latents (and batch, gates, grid) the
reference tokens run alone through the model's own modules at timestep 0, without the text
(``compat.wan_reference_keys_values``), and every block's keys/values are kept in a
``ReferenceKVMemo`` (core's; one per sampling run, see :class:`ReferenceKVCaches`). Every call then
runs the video tokens only, each block's self-attention over ``[video keys | cached keys]``
(``compat.with_reference_keys_values``): the computation of ``WanDiT.forward(..., ref_cache=)``.

So the computation is the one of ``mvs2v_core.model.transformer.WanDiT.forward`` with references,
run by ComfyUI's modules (attention backends, weight casting, LoRA patches, offloading).

Under ComfyUI's context windows each model call sees one window of the video (its positions start
at 0, as ComfyUI's own Wan model gives them) and every reference slot; the references are placed
as if the video had ``WINDOW_FRAMES_KEY`` frames (the most frames any window call gets, written
into ``transformer_options`` by :attr:`ReferenceInjection.sampling_plan`, which the PREPARE_SAMPLING
wrapper in ``compat.py`` runs), so every window sees them at the same positions. Without that key
they follow the call's own video, as before.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..mvs2v_core.errors import MVS2VError
from ..mvs2v_core.model.reference_kv import ReferenceKV, ReferenceKVMemo
from ..mvs2v_core.references.layout import ReferenceLayout
from ..mvs2v_core.references.settings import ReferenceSettings
from ..mvs2v_core.references.tokens import ReferenceTokenPlan, check_proxy_tokens

REF_GATE_KEY = "mvs2v_ref_gate"
WINDOW_FRAMES_KEY = "mvs2v_window_frames"
"""``transformer_options`` key: the latent frames the reference positions count as the video under
context windows (the longest window call), so every window places the references alike."""
CONTEXT_WINDOW_KEY = "context_window"
"""ComfyUI's ``transformer_options`` key holding the current window; present only in windowed calls."""
REFERENCE_KV_KEY = "mvs2v_reference_kv"
"""``transformer_options`` key: the sampling run's :class:`ReferenceKVCaches` (written at PREPARE_SAMPLING)."""


class ReferenceKVCaches:
    """One sampling run's cached reference keys/values (``ref_attention = cached``).

    One core :class:`ReferenceKVMemo` per (patch, diffusion model, rope options); inside it one cache per
    distinct reference batch (gates, batch size) and reference grid, so every step and guidance pass of
    the run reuses it. ``ReferenceInjection.sampling_plan`` (run by ``compat.ReferencePlanning``) puts a
    fresh one into ``transformer_options`` per sampling run, so the keys/values never outlive it (nor
    see weights a later run patched differently); a call made outside a sampler uses the patch's own.
    """

    def __init__(self) -> None:
        self._memos: dict[tuple, ReferenceKVMemo] = {}

    def memo(self, key: tuple) -> ReferenceKVMemo:
        if key not in self._memos:
            self._memos[key] = ReferenceKVMemo()
        return self._memos[key]


def shape_with_references(noise_shape: Any, ref_frames: int, window_frames: int | None = None) -> list:
    """The noise shape ComfyUI's memory estimate should see: the video plus ``ref_frames`` latent frames.

    ComfyUI's estimate (``BaseModel.memory_required``) is linear in ``batch * frames * height * width``
    of this shape. Without context windows the references simply become extra frames on the time
    axis. With a context handler that windows the time axis (``window_frames`` = its window length),
    ComfyUI's own PREPARE_SAMPLING wrapper cuts the time axis down to the window, before or after this
    one depending on node order, which would drop extra frames put there; so the references are
    counted on the batch axis instead, as the factor ``(frames + ref_frames) / frames`` with the
    frames one window call gets. Either way the estimate grows by exactly the reference tokens.
    Shapes other than a 5-D video latent are returned unchanged.
    """
    shape = list(noise_shape)
    if ref_frames <= 0 or len(shape) != 5 or shape[2] <= 0:
        return shape
    if window_frames is None:
        shape[2] = shape[2] + ref_frames
        return shape
    frames = min(int(shape[2]), int(window_frames))
    shape[0] = shape[0] * (frames + ref_frames) / frames
    return shape


class ReferenceInjection:
    """Callable ``(executor, x, timestep, context, clip_fea, time_dim_concat, transformer_options, **kw)``.

    Args:
        latents: ``[1, C, S, h, w]`` normalised latents of every slot (token order).
        layout: which slots are filled.
        settings: the reference settings (slots, scheme, empty-slot mode, reference timestep).
        proxy_tokens: ``[K, dim]`` or None (needed when ``proxy`` meets an empty slot).
    """

    def __init__(
        self,
        latents: torch.Tensor,
        layout: ReferenceLayout,
        settings: ReferenceSettings,
        proxy_tokens: torch.Tensor | None,
    ) -> None:
        if latents.ndim != 5 or latents.shape[2] != layout.num_slots:
            raise MVS2VError(
                f"reference latents {tuple(latents.shape)} do not hold one frame per slot ({layout.num_slots} slots)"
            )
        check_proxy_tokens(layout, settings, proxy_tokens, "connect MV-S2V Load Adapter")
        self.layout = layout
        self.settings = settings
        self.kept = layout.kept_slots(settings.empty_slot_mode)
        self.latents = latents[:, :, self.kept].detach().float().cpu().contiguous()
        self.proxy_tokens = proxy_tokens.detach().float().cpu() if proxy_tokens is not None else None
        self._freqs_key: Any = None
        self._freqs: torch.Tensor | None = None
        self._own_caches = ReferenceKVCaches()
        self.kv_computations = 0
        """How many times the cached mode computed reference keys/values (once per sampling run and batch)."""

    @property
    def sampling_plan(self) -> Any:
        """The plan ComfyUI's PREPARE_SAMPLING wrapper (``compat.ReferencePlanning``) runs, or None when no slot
        makes tokens (nothing to plan for)."""
        return self._plan_sampling if self.kept else None

    def _plan_sampling(self, model_options: Any, noise_shape: Any, windows: tuple[int, int] | None) -> list:
        """Prepare one sampling run; return the noise shape ComfyUI's memory estimate should see.

        * the estimate ComfyUI loads / offloads the model by counts the reference frames every model call
          appends (:func:`shape_with_references`);
        * under context windows over time (``windows``: ``compat.time_windows``), the most latent frames one
          window call gets goes into ``transformer_options[WINDOW_FRAMES_KEY]``, where every call finds it
          and places the references after that many frames in every window;
        * a fresh :class:`ReferenceKVCaches` goes into ``transformer_options[REFERENCE_KV_KEY]``: cached
          reference keys/values live exactly as long as this sampling run (every step and guidance pass
          sees the same object: ComfyUI copies the options' dicts per call, not the values in them).
        """
        window_frames = None
        if windows is not None and len(noise_shape) == 5:
            # Written whether or not this video is long enough for windows: ComfyUI's own wrapper may
            # already have cut noise_shape to one window. The patch uses it only in windowed calls.
            window_frames = windows[0]
            model_options.setdefault("transformer_options", {})[WINDOW_FRAMES_KEY] = windows[1]
        if isinstance(model_options, dict):
            model_options.setdefault("transformer_options", {})[REFERENCE_KV_KEY] = ReferenceKVCaches()
        return shape_with_references(noise_shape, len(self.kept), window_frames)

    # ---- pieces --------------------------------------------------------------------------------
    def position_ids(self, plan: ReferenceTokenPlan, transformer_options: dict) -> torch.Tensor:
        """The plan's ids (references placed after ``plan.reference_frames``), with any rope options applied."""
        ids = plan.position_ids()
        rope = transformer_options.get("rope_options")
        if rope:  # ModelPatcher.set_model_rope_options (2026): the same scale/shift on every token
            scale = torch.tensor([rope.get("scale_t", 1.0), rope.get("scale_y", 1.0), rope.get("scale_x", 1.0)])
            shift = torch.tensor([rope.get("shift_t", 0.0), rope.get("shift_y", 0.0), rope.get("shift_x", 0.0)])
            ids = ids * scale + shift
        return ids

    def freqs(self, model: Any, plan: ReferenceTokenPlan, device: torch.device,
              transformer_options: dict) -> torch.Tensor:
        """The model's own ``rope_embedder`` over the plan's position ids, cached per grid and reference basis."""
        rope = transformer_options.get("rope_options")
        key = (plan.grid, plan.reference_frames, str(device), tuple(sorted(rope.items())) if rope else None)
        if key != self._freqs_key or self._freqs is None:
            ids = self.position_ids(plan, transformer_options).to(device)
            self._freqs = model.rope_embedder(ids[None]).movedim(1, 2)
            self._freqs_key = key
        return self._freqs

    def reference_frames(self, grid: tuple[int, int, int], pt: int, transformer_options: dict) -> int | None:
        """Under context windows: the frames (in patches) every window places the references after, else None.

        The window's own video keeps ``grid`` (positions from 0, timesteps and tokens per window); only
        the reference positions are taken as if the video had the longest window's frames, so they do
        not move between a window that starts the video and one that gets ComfyUI's extra leading frame,
        or a shorter last window.
        """
        frames = transformer_options.get(WINDOW_FRAMES_KEY)
        if not frames or transformer_options.get(CONTEXT_WINDOW_KEY) is None:
            return None  # not a windowed call: the references follow this call's whole video
        return max(grid[0], math.ceil(int(frames) / pt))

    def _block_patches(self, transformer_options: dict, num_blocks: int, freqs: torch.Tensor,
                       plan: ReferenceTokenPlan, cached: tuple[ReferenceKV, Any] | None = None) -> dict:
        """Options with a replacement of every block; ``cached``: ``(cache, attach)`` in the cached mode."""
        opts = dict(transformer_options)
        replace = dict(opts.get("patches_replace", {}))
        dit = dict(replace.get("dit", {}))
        for i in range(num_blocks):
            dit[("double_block", i)] = self._block_patch(i, dit.get(("double_block", i)), freqs, plan, cached)
        replace["dit"] = dit
        opts["patches_replace"] = replace
        return opts

    def _block_patch(self, index: int, inner: Any, freqs: torch.Tensor, plan: ReferenceTokenPlan,
                     cached: tuple[ReferenceKV, Any] | None = None):
        # Block 0's input is the patch embedding: that is where empty slots become proxy vectors
        # (in the cached mode the references were embedded and filled in the reference stream).
        insert = index == 0 and bool(plan.proxy_fill) and cached is None

        def patch(args: dict, extra: dict) -> dict:
            args = dict(args)
            args["pe"] = freqs
            if insert:
                args["img"] = plan.fill_proxies(args["img"], self.proxy_tokens)
            if cached is not None:  # this block's self-attention also attends to its cached reference keys
                cache, attach = cached
                args["transformer_options"] = attach(args["transformer_options"], cache.blocks[index])
            if inner is not None:  # another node's replacement of this block still runs
                return inner(args, extra)
            return extra["original_block"](args)

        return patch

    # ---- the wrapper ---------------------------------------------------------------------------
    def __call__(self, executor: Any, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor,
                 clip_fea: Any = None, time_dim_concat: Any = None, transformer_options: dict | None = None,
                 **kwargs: Any) -> torch.Tensor:
        transformer_options = transformer_options if transformer_options is not None else {}
        gate = kwargs.pop(REF_GATE_KEY, None)
        if not self.kept:  # 'drop' with nothing filled: the plain model
            return executor(x, timestep, context, clip_fea, time_dim_concat, transformer_options, **kwargs)
        model = executor.class_obj
        if time_dim_concat is not None:
            raise MVS2VError(
                "this conditioning already carries Phantom reference frames (from WanPhantomSubjectToVideo); "
                "MV-S2V adds the references itself: use plain text conditioning with an MV-S2V-patched model"
            )
        if kwargs.get("context_latents") is not None or (
            getattr(model, "ref_conv", None) is not None and kwargs.get("reference_latent") is not None
        ):
            raise MVS2VError("in-context reference latents of another node cannot be combined with MV-S2V references")
        b, c, f, h, w = x.shape
        refs = self.latents
        if refs.shape[1] != c:
            raise MVS2VError(
                f"the references are {refs.shape[1]}-channel latents but this model takes {c} channels: encode them "
                f"with the VAE of the same Wan release (Wan2.1 / Phantom / Wan2.2 A14B: Wan2.1 VAE, 16; Wan2.2 TI2V 5B: Wan2.2 VAE, 48); image-to-video models "
                f"are not supported"
            )
        if tuple(refs.shape[-2:]) != (h, w):
            if getattr(transformer_options.get(CONTEXT_WINDOW_KEY), "dim", 2) in (3, 4):
                raise MVS2VError("context windows over the height or width (dim 3 / 4) cut the video but not the "
                                 "references: window the frames (dim 2, Wan Context Windows) with MV-S2V")
            raise MVS2VError(
                f"the reference latents are {refs.shape[-1]}x{refs.shape[-2]} but the video latent is {w}x{h}: set "
                f"MV-S2V Encode References to the video's width and height"
            )
        refs = refs.to(device=x.device, dtype=x.dtype).expand(b, -1, -1, -1, -1)
        if gate is not None:
            g = gate.reshape(-1).to(device=x.device, dtype=x.dtype)
            if g.numel() == 1:
                g = g.expand(b)
            refs = refs * g.reshape(b, 1, 1, 1, 1)
        pt, ph, pw = model.patch_size
        grid = (math.ceil(f / pt), math.ceil(h / ph), math.ceil(w / pw))
        plan = ReferenceTokenPlan.build(grid, self.layout, self.settings,
                                        reference_frames=self.reference_frames(grid, pt, transformer_options))
        freqs = self.freqs(model, plan, x.device, transformer_options)
        if self.settings.cached:
            opts = self._cached_options(model, refs, plan, freqs, transformer_options)
            return executor(x, timestep, context, clip_fea, None, opts, **kwargs)  # the video tokens alone
        opts = self._block_patches(transformer_options, len(model.blocks), freqs, plan)
        return executor(x, plan.timesteps(timestep), context, clip_fea, refs, opts, **kwargs)

    def _cached_options(self, model: Any, refs: torch.Tensor, plan: ReferenceTokenPlan, freqs: torch.Tensor,
                        transformer_options: dict) -> dict:
        """The cached mode: the run's reference keys/values (computed on a miss) attached to every block.

        Args:
            refs: ``[B, C, S_kept, h, w]`` gated reference latents of this call; freqs: video then reference rows.
        """
        from . import compat  # ComfyUI internals; imported here so the patch loads without ComfyUI

        n_video = plan.num_video_tokens
        caches = transformer_options.get(REFERENCE_KV_KEY) or self._own_caches
        rope = transformer_options.get("rope_options")
        memo = caches.memo((id(self), id(model), tuple(sorted(rope.items())) if rope else None))

        def compute() -> ReferenceKV:
            self.kv_computations += 1
            fill = lambda tokens: plan.fill_proxies(tokens, self.proxy_tokens, start=0)  # noqa: E731
            pairs = compat.wan_reference_keys_values(model, refs, freqs[:, n_video:], fill, transformer_options)
            return ReferenceKV(pairs, plan.reference_grid)

        cache = memo.get(refs, plan.reference_grid, compute)
        cache.check(plan.reference_grid, refs.shape[0], len(model.blocks))
        return self._block_patches(transformer_options, len(model.blocks), freqs[:, :n_video], plan,
                                   (cache, compat.with_reference_keys_values))

