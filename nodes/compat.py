"""The one place that touches ComfyUI internals.

Every other node file goes through these functions, so a change in ComfyUI is fixed here.

Checked against (read in the code and run end to end with tests/comfyui/, in CI through
scripts/comfyui_tests.sh; one environment for both versions, Python 3.11, CPU with ``--cpu``):
    ComfyUI 0.3.64 (Comfy-Org/ComfyUI a125cd84, 2025-10-12)
    ComfyUI 0.33.0 (mirror yzkee/ComfyUI 783545f6, 2026-08-22)
    torch 2.13.0 (PyPI's CUDA build), torchvision 0.28.0, torchaudio 2.11.1
    comfyui-frontend-package 1.49.6 (0.33.0's pin, served to both; 0.3.64 asks for 1.27.10): the tests
    use the HTTP API and check that web/mvs2v.js is served, no browser runs the frontend

What is used, and why it is public enough to rely on:
    * ``ModelPatcher.clone()``, ``add_wrapper_with_key`` / ``remove_wrappers_with_key`` with
      ``WrappersMP.DIFFUSION_MODEL`` (the wrapper gets ``executor.class_obj`` = the ``WanModel``);
    * ``WrappersMP.PREPARE_SAMPLING`` (the hook ComfyUI's own context windows use for the same job):
      ``sampler_helpers.prepare_sampling(model, noise_shape, conds, model_options=...)`` runs its
      wrappers around ``_prepare_sampling``, whose only use of ``noise_shape`` is
      ``estimate_memory`` -> ``BaseModel.memory_required([2B, C, T, H, W] and [B, ...])``, linear in
      ``B * T * H * W`` (Wan declares no ``memory_usage_factor_conds``, so a conditioning cannot add
      to it); the result goes to ``load_models_gpu`` as ``memory_required`` /
      ``minimum_memory_required`` (both versions). ``model_options`` is the guider's copy, which
      ``inner_sample`` clones into every model call's ``transformer_options`` afterwards (as it does
      with ``sample_sigmas``);
    * context windows (``comfy/context_windows.py``, both versions): ``model_options["context_handler"]``
      (an ``IndexListContextHandler``: ``dim``, ``context_length`` in latent frames, and in 0.33.0
      ``causal_window_fix``, which gives every window but the first the frame before it as an extra
      leading frame); ComfyUI's own PREPARE_SAMPLING wrapper clamps ``noise_shape[dim]`` to
      ``context_length``; each window's model call gets the window's frames with positions from 0
      and ``transformer_options["context_window"]`` (set only when the video is windowed);
    * ``transformer_options["patches_replace"]["dit"][("double_block", i)]`` block replacements,
      which ``WanModel.forward_orig`` calls with ``{"img", "txt", "vec", "pe", "transformer_options"}``
      and ``{"original_block"}`` (identical in both versions);
    * ``WanModel.rope_embedder`` (``EmbedND``) turning ``[1, L, 3]`` ids into freqs, ``.movedim(1, 2)``;
    * cached references (``ref_attention = cached``, :func:`wan_reference_keys_values`): the model's
      ``patch_embedding`` / ``time_embedding`` / ``time_projection`` and ``comfy.ldm.wan.model.
      sinusoidal_embedding_1d`` as ``WanModel.forward_orig`` uses them, and each ``WanAttentionBlock``'s
      ``modulation`` (``[1, 6, dim]``, cast with ``model_management.cast_to``), ``norm1`` / ``norm2``,
      ``self_attn(x, freqs, transformer_options=)`` and ``ffn``; and
      ``transformer_options["optimized_attention_override"]`` (``attention.wrap_attn``, both versions:
      called as ``override(func, q, k, v, heads=..., transformer_options=..., ...)`` in place of the
      attention function ``func``). ``WanSelfAttention.forward`` makes the block's first attention call,
      with ``q, k, v`` ``[B, L, heads * head_dim]`` and ``k`` RoPE'd; the cross-attention comes after it
      (identical in both versions);
    * a conditioning's ``model_conds`` (kept by ``sampler_helpers.convert_cond``) carrying a
      ``comfy.conds.CONDRegular`` per sample, which reaches the diffusion model as a keyword;
    * ``comfy.samplers.KSAMPLER``, ``CFGGuider`` + ``calc_cond_batch`` (as ``Guider_DualCFG``),
      ``comfy.sample.prepare_noise`` / ``fix_empty_latent_channels``, ``latent_preview.prepare_callback``;
    * ``comfy.sd.load_lora_for_models`` (what ``LoraLoaderModelOnly`` does), ``folder_paths``;
    * for the bundled toy demo model (``toy_nodes.py``): ``comfy.sd.load_diffusion_model_state_dict``
      (what ``UNETLoader`` calls after reading the file; ``model_options={"dtype": ...}``), and the
      MODEL's ``model.process_latent_in`` / ``process_latent_out`` (its latent format).

The toy demo model needs two adaptations, both exact:
    * **Text width.** Neither version takes a Wan DiT's text width from its weights:
      ``model_detection.detect_unet_config`` leaves ``text_dim`` out, so ``WanModel`` is built with its
      default 4096 (``WAN_TEXT_DIM``). 0.33.0 would read a ``transformer`` entry of the safetensors
      metadata "config" when the metadata is passed (``load_diffusion_model_state_dict(..., metadata=)``),
      0.3.64 has no such path. So, the same on both, the toy DiT's ``text_embedding.0.weight``
      ``[256, 32]`` is zero-padded to ``[256, 4096]`` in memory and the toy text conditioning is
      zero-padded to 4096 features: zero columns meet zero features, the output is unchanged.
    * **Latent format.** A 48-channel Wan DiT is detected as Wan2.2 TI2V 5B (``supported_models.WAN22_T2V``),
      whose ``latent_formats.Wan22`` normalises raw latents with the Wan2.2 VAE's mean / std. The toy
      codec's VAE wrapper hands ComfyUI ``process_latent_out(z)`` for the codec's normalised latents z
      and decodes ``process_latent_in(raw)``, so the DiT sees exactly z, with whatever statistics the
      version's format has.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import comfy.conds
import comfy.ldm.common_dit
import comfy.model_management
import comfy.patcher_extension
import comfy.sample
import comfy.samplers
import comfy.sd
import comfy.utils
import folder_paths
import latent_preview
import torch
from comfy.ldm.wan.model import WanModel, sinusoidal_embedding_1d

from ..mvs2v_core.errors import MVS2VError
from ..mvs2v_core.model.config import WanConfig

CHECKED_COMFYUI_VERSIONS = ("0.3.64", "0.33.0")

ADAPTER_FOLDER = "mvs2v"
WRAPPER_KEY = "mvs2v_references"
REF_GATE_KEY = "mvs2v_ref_gate"
MFI_NO_REF_KEY = "mvs2v_mfi_no_ref_context"

CFGGuider = comfy.samplers.CFGGuider
calc_cond_batch = comfy.samplers.calc_cond_batch


def comfyui_version() -> str:
    try:
        import comfyui_version  # type: ignore[import-not-found]

        return str(comfyui_version.__version__)
    except Exception:  # noqa: BLE001 - an unknown layout only affects messages
        return "unknown"


# ---- folders -------------------------------------------------------------------------------------


def register_adapter_folder() -> None:
    """``models/mvs2v`` (and any ``mvs2v:`` entry of extra_model_paths.yaml), safetensors only."""
    default = os.path.join(folder_paths.models_dir, ADAPTER_FOLDER)
    if ADAPTER_FOLDER in folder_paths.folder_names_and_paths:
        paths, _ = folder_paths.folder_names_and_paths[ADAPTER_FOLDER]
        folder_paths.folder_names_and_paths[ADAPTER_FOLDER] = (paths, {".safetensors"})
        if default not in paths:
            folder_paths.add_model_folder_path(ADAPTER_FOLDER, default)
    else:
        folder_paths.folder_names_and_paths[ADAPTER_FOLDER] = ([default], {".safetensors"})


def adapter_filenames() -> list[str]:
    return folder_paths.get_filename_list(ADAPTER_FOLDER)


def adapter_folders() -> list[str]:
    return folder_paths.get_folder_paths(ADAPTER_FOLDER)


def input_directory() -> str:
    return folder_paths.get_input_directory()


# ---- the Wan model -------------------------------------------------------------------------------


def wan_diffusion_model(model_patcher: Any) -> WanModel:
    """The ``WanModel`` inside a MODEL, refusing the variants whose forward differs (VACE, S2V...)."""
    try:
        dm = model_patcher.get_model_object("diffusion_model")
    except Exception:  # noqa: BLE001
        dm = None
    if type(dm) is not WanModel:
        name = type(dm).__name__ if dm is not None else type(model_patcher).__name__
        raise MVS2VError(
            f"MV-S2V needs a Wan 2.1 / 2.2 text-to-video DiT (Wan2.1 T2V, Phantom-Wan, Wan2.2 T2V A14B or "
            f"TI2V 5B) loaded with Load Diffusion Model; this MODEL is a {name}"
        )
    return dm


def wan_config(dm: WanModel) -> WanConfig:
    return WanConfig(
        dim=int(dm.dim), ffn_dim=int(dm.ffn_dim), num_heads=int(dm.num_heads), num_layers=int(dm.num_layers),
        in_dim=int(dm.patch_embedding.weight.shape[1]), out_dim=int(dm.out_dim), text_dim=int(dm.text_dim),
        freq_dim=int(dm.freq_dim), text_len=int(dm.text_len), patch_size=tuple(dm.patch_size),  # type: ignore[arg-type]
        image_dim=1280 if getattr(dm, "img_emb", None) is not None else None, family="comfyui-wan",
    )


def process_latent_in(model_patcher: Any, latents: torch.Tensor) -> torch.Tensor:
    """VAE latents -> the normalised latents the DiT sees (the model's own latent format)."""
    return model_patcher.model.process_latent_in(latents)


def latent_format_maps(model_patcher: Any) -> tuple[Callable, Callable]:
    """``(normalised -> raw, raw -> normalised)``: the MODEL's ``process_latent_out`` / ``process_latent_in``."""
    base = model_patcher.model
    return base.process_latent_out, base.process_latent_in


# ---- loading a DiT from a state dict (the bundled toy demo model) --------------------------------

WAN_TEXT_DIM = 4096
"""The text width ``WanModel`` is built with when detection gives none (both versions)."""


def load_wan_state_dict(state_dict: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32) -> Any:
    """A native MODEL from a Wan DiT state dict, through ComfyUI's own detection and loader.

    ComfyUI's loader consumes the dict (it pops the tensors it loads): pass one you no longer need.
    """
    expected = int(state_dict["text_embedding.0.weight"].shape[1])
    model = comfy.sd.load_diffusion_model_state_dict(state_dict, model_options={"dtype": dtype})
    if model is None:
        raise MVS2VError("ComfyUI did not recognise the bundled toy DiT as a model it can load")
    width = int(wan_diffusion_model(model).text_dim)
    if width != expected:
        raise MVS2VError(
            f"this ComfyUI built the toy DiT with text width {width}, not the padded {expected} "
            f"(ComfyUI {comfyui_version()} is not one of {', '.join(CHECKED_COMFYUI_VERSIONS)}): update mvs2v"
        )
    return model


def set_reference_wrapper(model_patcher: Any, wrapper: Callable, plan: Callable | None = None) -> Any:
    """A clone of the MODEL with ``wrapper`` as its MV-S2V DIFFUSION_MODEL wrapper (replacing an older one).

    With ``plan`` (``plan(model_options, noise_shape, windows) -> noise shape``, the patch's
    ``ReferenceInjection.sampling_plan``) it also gets a PREPARE_SAMPLING wrapper,
    :class:`ReferencePlanning`, so ComfyUI's memory estimate and context windows know the references.
    """
    wrappers = comfy.patcher_extension.WrappersMP
    m = model_patcher.clone()
    m.remove_wrappers_with_key(wrappers.DIFFUSION_MODEL, WRAPPER_KEY)
    m.remove_wrappers_with_key(wrappers.PREPARE_SAMPLING, WRAPPER_KEY)
    m.add_wrapper_with_key(wrappers.DIFFUSION_MODEL, WRAPPER_KEY, wrapper)
    if plan is not None:
        m.add_wrapper_with_key(wrappers.PREPARE_SAMPLING, WRAPPER_KEY, ReferencePlanning(plan))
    return m


def time_windows(model_options: dict) -> tuple[int, int] | None:
    """``(window frames ComfyUI's estimate counts, most latent frames a window call gets)`` when a context
    handler windows the time axis of a Wan latent ``[B, C, T, H, W]`` (dim 2), else None."""
    handler = model_options.get("context_handler")
    length = getattr(handler, "context_length", None)
    if handler is None or getattr(handler, "dim", None) != 2 or not isinstance(length, int) or length < 1:
        return None  # no windows, windows over another axis, or another pack's handler
    anchor = bool(getattr(handler, "causal_window_fix", False))  # 0.33.0; 0.3.64 has no leading frame
    return length, length + int(anchor)


class ReferencePlanning:
    """PREPARE_SAMPLING wrapper: ComfyUI plans memory and context windows knowing the references.

    It reads what ComfyUI's sampling options say about context windows over time (:func:`time_windows`)
    and hands them, with the options and the noise shape, to ``plan`` (``patch.ReferenceInjection.
    sampling_plan``), which prepares the run's ``transformer_options`` and returns the noise shape ComfyUI's
    memory estimate should see; ComfyUI then goes on with that shape.
    """

    def __init__(self, plan: Callable[[Any, Any, tuple[int, int] | None], Any]) -> None:
        self.plan = plan

    def __call__(self, executor: Any, model: Any, noise_shape: Any, conds: Any, *args: Any, **kwargs: Any) -> Any:
        model_options = kwargs.get("model_options", args[0] if args else None) or {}
        shape = self.plan(model_options, noise_shape, time_windows(model_options))
        return executor(model, shape, conds, *args, **kwargs)


def reference_wrappers(model_patcher: Any) -> list:
    return model_patcher.get_wrappers(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, WRAPPER_KEY)


# ---- cached references (ref_attention = cached) --------------------------------------------------

ATTENTION_OVERRIDE_KEY = "optimized_attention_override"
"""``transformer_options`` key ``attention.wrap_attn`` calls instead of the attention function (both versions)."""


class _CaptureKeysValues:
    """Attention override that keeps the keys/values of the call it sees (a reference self-attention)."""

    def __init__(self, previous: Callable | None) -> None:
        self.previous = previous
        self.kv: tuple[torch.Tensor, torch.Tensor] | None = None

    def __call__(self, func: Callable, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *args: Any,
                 **kwargs: Any) -> torch.Tensor:
        self.kv = (k, v)
        if self.previous is not None:  # another node's override (an attention backend) still runs
            return self.previous(func, q, k, v, *args, **kwargs)
        return func(q, k, v, *args, **kwargs)


class _ExtraKeysValues:
    """Attention override of one block call: its first attention (the block's self-attention) also
    attends to the cached reference keys/values ``[B, Lr, heads * head_dim]``; later calls (the text
    cross-attention) run unchanged."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor, previous: Callable | None) -> None:
        self.k, self.v, self.previous = k, v, previous
        self.used = False

    def __call__(self, func: Callable, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *args: Any,
                 **kwargs: Any) -> torch.Tensor:
        if not self.used:
            self.used = True
            if k.ndim != 3 or k.shape[:2] != q.shape[:2] or k.shape[0] != self.k.shape[0]:
                raise MVS2VError(
                    f"cached references expected the Wan block's self-attention first (q and k {tuple(q.shape)}), "
                    f"got k {tuple(k.shape)}: this ComfyUI ({comfyui_version()}) is not one of "
                    f"{', '.join(CHECKED_COMFYUI_VERSIONS)}; use reference attention 'full' or update mvs2v"
                )
            k = torch.cat([k, self.k.to(k)], dim=1)
            v = torch.cat([v, self.v.to(v)], dim=1)
        if self.previous is not None:
            return self.previous(func, q, k, v, *args, **kwargs)
        return func(q, k, v, *args, **kwargs)


def with_reference_keys_values(transformer_options: dict, kv: tuple[torch.Tensor, torch.Tensor]) -> dict:
    """A copy of one block call's ``transformer_options`` whose self-attention also sees ``kv``.

    Args:
        kv: the block's cached reference keys and values, ``[B, heads, Lr, head_dim]`` (keys RoPE'd).
    """
    k, v = (t.transpose(1, 2).flatten(2) for t in kv)  # a view when kv came from wan_reference_keys_values
    opts = dict(transformer_options)
    opts[ATTENTION_OVERRIDE_KEY] = _ExtraKeysValues(k, v, transformer_options.get(ATTENTION_OVERRIDE_KEY))
    return opts


def wan_reference_keys_values(model: WanModel, latents: torch.Tensor, freqs: torch.Tensor,
                              fill: Callable[[torch.Tensor], torch.Tensor],
                              transformer_options: dict) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """Every block's reference keys/values, by ComfyUI's own modules (the cached mode's reference stream).

    The reference tokens run alone, as ``WanDiT.reference_cache`` runs them: timestep 0, self-attention
    among themselves (with ``freqs``, their RoPE), no text cross-attention, then the FFN.

    Args:
        latents: ``[B, C, S, h, w]`` kept reference slots, in the model's dtype.
        freqs: ``[1, S*h'*w', 1, head_dim / 2, 2, 2]``, the model's ``rope_embedder`` over their ids.
        fill: puts the proxy vectors into the embedded tokens ``[B, Lr, dim]`` (the plan's ``fill_proxies``).

    Returns:
        ``(k, v)`` per block, ``[B, heads, Lr, head_dim]``.
    """
    dtype = latents.dtype
    x = comfy.ldm.common_dit.pad_to_patch_size(latents, model.patch_size)
    r = model.patch_embedding(x.float()).to(dtype).flatten(2).transpose(1, 2)  # as forward_orig embeds
    r = fill(r)
    b, n = r.shape[:2]
    t = torch.zeros(b, device=r.device)
    e = model.time_embedding(sinusoidal_embedding_1d(model.freq_dim, t).to(dtype=dtype)).reshape(b, 1, -1)
    e0 = model.time_projection(e).unflatten(2, (6, model.dim))  # [B, 1, 6, dim]
    skip = ("patches", "patches_replace", ATTENTION_OVERRIDE_KEY)  # video-only patches; override composed below
    base = {key: val for key, val in transformer_options.items() if key not in skip}
    pairs, last = [], len(model.blocks) - 1
    for i, block in enumerate(model.blocks):
        capture = _CaptureKeysValues(transformer_options.get(ATTENTION_OVERRIDE_KEY))
        mod = (comfy.model_management.cast_to(block.modulation, dtype=r.dtype, device=r.device).unsqueeze(0)
               + e0).unbind(2)  # shift, scale, gate (attention), shift, scale, gate (FFN): [B, 1, dim] each
        y = block.self_attn(torch.addcmul(mod[0], block.norm1(r), 1 + mod[1]), freqs,
                            transformer_options={**base, ATTENTION_OVERRIDE_KEY: capture})
        if capture.kv is None:
            raise MVS2VError(f"block {i}'s self-attention made no attention call mvs2v could see: this ComfyUI "
                             f"({comfyui_version()}) is not one of {', '.join(CHECKED_COMFYUI_VERSIONS)}; use "
                             "reference attention 'full' or update mvs2v")
        if i < last:  # the last block's output is never read, only its keys/values
            r = torch.addcmul(r, y, mod[2])
            r = torch.addcmul(r, block.ffn(torch.addcmul(mod[3], block.norm2(r), 1 + mod[4])), mod[5])
        k, v = capture.kv
        heads = int(model.num_heads)
        pairs.append(tuple(t.reshape(b, n, heads, -1).transpose(1, 2) for t in (k, v)))
    return tuple(pairs)  # type: ignore[return-value]


# ---- conditioning --------------------------------------------------------------------------------


def with_reference_gate(conditioning: list, gate: float) -> list:
    """A copy of CONDITIONING whose samples see the references scaled by ``gate`` (0 = no references)."""
    out = []
    for tensor, extra in conditioning:
        d = dict(extra)
        conds = dict(d.get("model_conds", {}))
        conds[REF_GATE_KEY] = comfy.conds.CONDRegular(torch.tensor([float(gate)]))
        d["model_conds"] = conds
        out.append([tensor, d])
    return out


def without_references(conditioning: list) -> list:
    """The no-reference pass of Phantom's guidance: gate 0 and, where MFI added tokens, zero features."""
    swapped = []
    for tensor, extra in conditioning:
        alt = extra.get(MFI_NO_REF_KEY)
        swapped.append([alt if alt is not None else tensor, extra])
    return with_reference_gate(swapped, 0.0)


# ---- LoRA ----------------------------------------------------------------------------------------


def apply_lora(model_patcher: Any, lora: dict[str, torch.Tensor], strength: float) -> tuple[Any, int]:
    """ComfyUI's own weight patching (what LoraLoaderModelOnly does); returns (model, keys matched)."""
    if not lora or strength == 0:
        return model_patcher, 0
    new_model, _ = comfy.sd.load_lora_for_models(model_patcher, None, lora, strength, 0)
    matched = len(new_model.patches) - len(model_patcher.patches)
    return new_model, matched


# ---- sampling ------------------------------------------------------------------------------------


def make_sampler(sampler_function: Callable) -> Any:
    return comfy.samplers.KSAMPLER(sampler_function)


def prepare_noise(latent_image: torch.Tensor, seed: int, batch_index: Any = None) -> torch.Tensor:
    return comfy.sample.prepare_noise(latent_image, seed, batch_index)


def fix_latent_channels(model_patcher: Any, latent_image: torch.Tensor) -> torch.Tensor:
    return comfy.sample.fix_empty_latent_channels(model_patcher, latent_image)


def model_shift(model_patcher: Any) -> float:
    sampling = model_patcher.get_model_object("model_sampling")
    shift = getattr(sampling, "shift", None)
    if shift is None:
        raise MVS2VError("this MODEL has no flow shift (not a rectified-flow model such as Wan); set shift > 0")
    return float(shift)


def preview_callback(model_patcher: Any, steps: int) -> Callable:
    return latent_preview.prepare_callback(model_patcher, steps)


def intermediate_device() -> torch.device:
    return comfy.model_management.intermediate_device()


def throw_if_interrupted() -> None:
    comfy.model_management.throw_exception_if_processing_interrupted()
