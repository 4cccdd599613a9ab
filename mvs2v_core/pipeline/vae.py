"""The Wan video VAE (2.1: 16 latent channels, 8x spatial; 2.2: 48 channels, 16x spatial).

:class:`WanVAE` wraps diffusers' ``AutoencoderKLWan`` and works in *normalized* latents, the space
the Wan DiTs are trained in::

    z = (mu - latents_mean) / latents_std        (per channel; mu is the posterior mean)

:func:`load_vae` reads, from safetensors only:

(a) a diffusers folder (``config.json`` + ``diffusion_pytorch_model.safetensors``), or a pipeline
    folder with such a ``vae/`` subfolder;
(b) one ``.safetensors`` file in the original Wan key layout, as distributed for ComfyUI
    (``wan_2.1_vae.safetensors``, ``wan2.2_vae.safetensors``), with or without a wrapper prefix
    such as ``vae.`` or ``first_stage_model.``; the keys are converted by diffusers' own
    ``convert_wan_vae_to_diffusers`` (see :func:`_convert_original` for the Wan 2.2 blocks);
(c) one ``.safetensors`` file already in diffusers key layout.

For (b) and (c) the architecture (base width, channel multipliers, residual blocks, temporal
downsampling, patchify) is read from tensor shapes, and every key and shape is checked.
diffusers' ``AutoencoderKLWan.from_single_file`` is not used: it reads the config from a Hub repo
(a network call) or from a local folder named by ``config=`` (not a dict: a single file would need a
temporary config folder), and it loads with ``strict=False``, only logging missing or unexpected keys.

diffusers is imported lazily, inside the functions.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, MVS2VError
from ..safe_files import refuse_pickle, refuse_pickle_folder, require_all_finite

__all__ = ["WanVAE", "load_vae", "WAN22_LATENTS_MEAN", "WAN22_LATENTS_STD"]

# Per-channel latent statistics of the 48-channel Wan 2.2 VAE. A single file does not carry them
# and the installed diffusers (0.42.1) has them nowhere in its code (only the Hub config of
# Wan-AI/Wan2.2-TI2V-5B-Diffusers carries them).
# Wan 2.1's 16-channel statistics are the defaults of diffusers' AutoencoderKLWan, so they are
# not repeated here.
WAN22_LATENTS_MEAN = [
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
]
WAN22_LATENTS_STD = [
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
]

_EXPECTED = ("a diffusers AutoencoderKLWan folder (config.json + diffusion_pytorch_model.safetensors) "
             "or one Wan VAE .safetensors file (e.g. wan_2.1_vae.safetensors for Wan 2.1 / 14B Wan 2.2, "
             "wan2.2_vae.safetensors for Wan 2.2 TI2V-5B)")


def _import_autoencoder() -> Any:
    try:
        from diffusers import AutoencoderKLWan
    except ImportError as exc:
        raise MVS2VError("The Wan VAE needs diffusers >= 0.33: `pip install 'diffusers>=0.35'` "
                         "(or `pip install mvs2v[cli]`).") from exc
    return AutoencoderKLWan


# --------------------------------------------------------------------------------------------
# The wrapper
# --------------------------------------------------------------------------------------------


class WanVAE:
    """Normalized-latent interface to a diffusers ``AutoencoderKLWan``.

    Attributes:
        model: the underlying ``AutoencoderKLWan`` (eval mode, no grad).
        latents_mean, latents_std: float32 tensors ``[z_dim]`` used for normalization.
        source: where the weights came from (for messages), or ``None``.
    """

    lossless_output = False  # its decoded frames are approximate anyway: a normal (yuv420p) mp4 is enough

    def __init__(self, model: Any, source: str | None = None) -> None:
        cfg = model.config
        self.model = model.eval().requires_grad_(False)
        self.source = source
        z = int(cfg.z_dim)
        mean = torch.as_tensor(list(cfg.latents_mean), dtype=torch.float32)
        std = torch.as_tensor(list(cfg.latents_std), dtype=torch.float32)
        if mean.numel() != z or std.numel() != z:
            raise CheckpointError(
                f"VAE config{_src(source)} has latents_mean/latents_std of length "
                f"{mean.numel()}/{std.numel()} but z_dim={z}; fix config.json so both lists have {z} values.")
        if not bool((std > 0).all()):
            raise CheckpointError(f"VAE config{_src(source)} has a non-positive latents_std; fix config.json.")
        self.latents_mean = mean
        self.latents_std = std
        self._z_dim = z
        patch = int(cfg.patch_size) if cfg.patch_size else 1
        self._spatial = (2 ** (len(cfg.dim_mult) - 1)) * patch
        self._temporal = 2 ** sum(bool(t) for t in cfg.temperal_downsample)

    # ---- properties ------------------------------------------------------------------------
    @property
    def z_dim(self) -> int:
        """Latent channels (16 for Wan 2.1, 48 for Wan 2.2)."""
        return self._z_dim

    @property
    def spatial_factor(self) -> int:
        """Pixels per latent cell along H and W (8 for Wan 2.1, 16 for Wan 2.2)."""
        return self._spatial

    @property
    def temporal_factor(self) -> int:
        """Frames per latent frame after the first (4 for both Wan VAEs)."""
        return self._temporal

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "WanVAE":
        """Move the model (in place) and return ``self``."""
        if device is not None and dtype is not None:
            self.model.to(device=device, dtype=dtype)
        elif device is not None:
            self.model.to(device=device)
        elif dtype is not None:
            self.model.to(dtype=dtype)
        return self

    def enable_tiling(self, **kwargs: Any) -> "WanVAE":
        """Turn on diffusers' spatially tiled encode/decode (less memory for large frames)."""
        self.model.enable_tiling(**kwargs)
        return self

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(z, f, h, w)`` of the latents of a ``num_frames`` x ``height`` x ``width`` video."""
        return (self.z_dim, 1 + (int(num_frames) - 1) // self.temporal_factor,
                int(height) // self.spatial_factor, int(width) // self.spatial_factor)

    # ---- encode / decode -------------------------------------------------------------------
    def _stats(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, self.z_dim, 1, 1, 1)
        return self.latents_mean.to(device).view(shape), self.latents_std.to(device).view(shape)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Encode videos to normalized latents (deterministic: the posterior mean).

        Args:
            video: ``[B, 3, F, H, W]`` in ``[-1, 1]``; ``H`` and ``W`` multiples of
                :attr:`spatial_factor`. Frames past the last full group of
                :attr:`temporal_factor` (after the first frame) are ignored, so use ``F = 4k + 1``.

        Returns:
            float32 ``[B, z_dim, f, h, w]`` with ``f = 1 + (F - 1) // temporal_factor``,
            ``h = H / spatial_factor``, ``w = W / spatial_factor``, on the VAE's device.
        """
        if not isinstance(video, torch.Tensor):
            raise MVS2VError(f"WanVAE.encode expects a tensor [B, 3, F, H, W], got {type(video).__name__}.")
        if video.ndim != 5 or video.shape[1] != 3:
            raise MVS2VError(f"WanVAE.encode expects a video tensor [B, 3, F, H, W], got shape "
                             f"{tuple(video.shape)}. For still images use encode_images([N, 3, H, W]).")
        b, _, f, h, w = video.shape
        s = self.spatial_factor
        if b == 0 or f == 0:
            raise MVS2VError(f"WanVAE.encode got an empty video of shape {tuple(video.shape)}.")
        if h % s or w % s or h == 0 or w == 0:
            raise MVS2VError(f"Video size {w}x{h} is not a multiple of {s} (the VAE's spatial factor); "
                             f"use a width and height divisible by {s}"
                             f"{' (Wan 2.2 5B needs multiples of 32 for the DiT)' if s == 16 else ''}.")
        if not video.is_floating_point():
            raise MVS2VError(f"WanVAE.encode expects float pixels in [-1, 1], got dtype {video.dtype}.")
        device, dtype = self.device, self.dtype
        with torch.no_grad():
            x = video.to(device=device, dtype=dtype)
            posterior = self.model.encode(x).latent_dist
            mu = posterior.mode().float()
            mean, std = self._stats(mu.device)
            return (mu - mean) / std

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Decode normalized latents.

        Args:
            latents: ``[B, z_dim, f, h, w]`` normalized latents (as returned by :meth:`encode`).

        Returns:
            float32 video ``[B, 3, 1 + (f - 1) * temporal_factor, h * spatial_factor,
            w * spatial_factor]`` in ``[-1, 1]``, on the VAE's device.
        """
        if not isinstance(latents, torch.Tensor):
            raise MVS2VError(f"WanVAE.decode expects a tensor [B, z, f, h, w], got {type(latents).__name__}.")
        if latents.ndim != 5 or latents.shape[1] != self.z_dim:
            raise MVS2VError(f"WanVAE.decode expects latents [B, {self.z_dim}, f, h, w], got shape "
                             f"{tuple(latents.shape)}. A latent-channel mismatch means the VAE does not "
                             "belong to the DiT (Wan 2.1 and the 14B Wan 2.2 models use the 16-channel "
                             "Wan 2.1 VAE; Wan 2.2 TI2V-5B uses the 48-channel Wan 2.2 VAE).")
        if any(int(d) == 0 for d in latents.shape):
            raise MVS2VError(f"WanVAE.decode got empty latents of shape {tuple(latents.shape)}.")
        device, dtype = self.device, self.dtype
        with torch.no_grad():
            z = latents.to(device=device, dtype=torch.float32)
            mean, std = self._stats(device)
            raw = (z * std + mean).to(dtype)
            out = self.model.decode(raw).sample
            return out.float().clamp_(-1.0, 1.0)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Encode still images, each ALONE as a one-frame video (as Phantom does per reference).

        Args:
            images: ``[N, 3, H, W]`` in ``[-1, 1]``.

        Returns:
            float32 ``[N, z_dim, 1, H / spatial_factor, W / spatial_factor]`` normalized latents.
        """
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise MVS2VError(f"WanVAE.encode_images expects images [N, 3, H, W], got {shape}.")
        if images.shape[0] == 0:
            return torch.zeros((0, self.z_dim, 1, images.shape[2] // self.spatial_factor,
                                images.shape[3] // self.spatial_factor), device=self.device)
        return torch.cat([self.encode(img[None, :, None]) for img in images], dim=0)

    def __repr__(self) -> str:
        return (f"WanVAE(z_dim={self.z_dim}, spatial_factor={self.spatial_factor}, "
                f"temporal_factor={self.temporal_factor}, dtype={self.dtype}, device={self.device}, "
                f"source={self.source!r})")


def _src(source: str | None) -> str:
    return f" '{source}'" if source else ""


# --------------------------------------------------------------------------------------------
# State-dict inspection and conversion
# --------------------------------------------------------------------------------------------

_ORIGINAL_MARKERS = ("decoder.middle.0.residual.0.gamma", "encoder.conv1.weight")
_DIFFUSERS_MARKERS = ("decoder.mid_block.resnets.0.norm1.gamma", "encoder.conv_in.weight")
_PREFIXES = ("first_stage_model.", "vae.", "model.", "module.")


def _strip_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove a wrapper prefix shared by every key (``vae.``, ``first_stage_model.`` ...)."""
    for prefix in _PREFIXES:
        if sd and all(k.startswith(prefix) for k in sd):
            return {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def detect_layout(sd: dict[str, torch.Tensor]) -> str:
    """Return ``"original"`` or ``"diffusers"`` for a Wan VAE state dict, or ``"unknown"``."""
    if any(m in sd for m in _DIFFUSERS_MARKERS):
        return "diffusers"
    if any(m in sd for m in _ORIGINAL_MARKERS):
        return "original"
    return "unknown"


# diffusers' names for the layers of one original residual block (``residual.{0,2,3,6}``, ``shortcut``).
_RES_RENAMES = (
    (".residual.0.", ".norm1."),
    (".residual.2.", ".conv1."),
    (".residual.3.", ".norm2."),
    (".residual.6.", ".conv2."),
    (".shortcut.", ".conv_shortcut."),
)
# Wan 2.2's residual levels: ``encoder.downsamples.{i}.downsamples.{j}.*`` / ``decoder.upsamples.{i}.upsamples.{j}.*``.
_WAN22_LEVEL = re.compile(r"^(encoder|decoder)\.(?:down|up)samples\.(\d+)\.(?:down|up)samples\.(\d+)\.(.*)$")


def _rename_resblock(key: str) -> str:
    for old, new in _RES_RENAMES:
        if old in key:
            return key.replace(old, new, 1)
    return key


def _wan22_level_key(key: str) -> str | None:
    """diffusers' name of a key inside a Wan 2.2 residual level, or ``None`` for any other key.

    Original level ``i`` holds residual blocks ``0..n-1`` then, last, its resampler (``resample.*``,
    ``time_conv.*``; absent on the last level); diffusers splits them into
    ``{down,up}_blocks.{i}.resnets.{j}`` and ``.downsampler`` / ``.upsampler``.
    """
    m = _WAN22_LEVEL.match(key)
    if m is None:
        return None
    part, level, j, rest = m.groups()
    block = f"{part}.{'down_blocks' if part == 'encoder' else 'up_blocks'}.{level}"
    if rest.startswith(("resample.", "time_conv.")):
        return f"{block}.{'downsampler' if part == 'encoder' else 'upsampler'}.{rest}"
    return _rename_resblock(f"{block}.resnets.{j}.{rest}")


def _convert_original(sd: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Original Wan (ComfyUI) keys -> diffusers' ``AutoencoderKLWan`` keys, by diffusers' converter.

    diffusers 0.42.1's ``convert_wan_vae_to_diffusers`` maps the whole Wan 2.1 layout, and for Wan 2.2
    the parts it shares with 2.1 (``conv1``/``conv2``, the middle blocks, the heads); it does not know
    Wan 2.2's nested residual levels (it maps them to ``down_blocks.{i}.downsamples.{j}``, which
    ``AutoencoderKLWan(is_residual=True)`` does not have), so those are renamed here first. Keys it
    does not recognise it leaves as they are, which the strict load then reports.
    """
    try:
        from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
    except ImportError as exc:
        raise CheckpointError(f"'{path}' is an original-layout Wan VAE, and this diffusers has no "
                              "convert_wan_vae_to_diffusers; upgrade: `pip install -U 'diffusers>=0.33'`.") from exc
    renamed = {_wan22_level_key(k) or k: v for k, v in sd.items()}
    return convert_wan_vae_to_diffusers(renamed)


def _indices(sd: dict[str, torch.Tensor], pattern: str) -> list[int]:
    rx = re.compile(pattern)
    found = {int(m.group(1)) for k in sd for m in [rx.match(k)] if m}
    return sorted(found)


def infer_config(sd: dict[str, torch.Tensor], path: Path | str = "",
                 latents_stats: tuple[list[float], list[float]] | None = None) -> dict[str, Any]:
    """Read an ``AutoencoderKLWan`` config from the shapes of a diffusers-layout state dict.

    ``latents_stats`` (mean, std) overrides the per-channel statistics, which a single file does
    not carry: by default they are Wan 2.1's for 16 channels (diffusers' defaults, left out of the
    returned dict) and Wan 2.2's for 48.
    """
    def need(key: str) -> torch.Tensor:
        if key not in sd:
            raise CheckpointError(f"'{path}' does not look like a complete Wan VAE: key '{key}' is missing. "
                                  f"Expected {_EXPECTED}.")
        return sd[key]

    z_dim = int(need("post_quant_conv.weight").shape[0])
    conv_in = need("encoder.conv_in.weight")
    base_dim, in_channels = int(conv_in.shape[0]), int(conv_in.shape[1])
    out_channels = int(need("decoder.conv_out.weight").shape[0])
    is_residual = any(k.startswith("encoder.down_blocks.0.resnets.") for k in sd)
    side = int(round((in_channels / 3) ** 0.5))
    if in_channels == 3 and out_channels == 3:
        patch_size = None
    elif in_channels == out_channels and side > 1 and side * side * 3 == in_channels:
        patch_size = side   # pixels are patchified side x side into the channels (Wan 2.2: 2x2 -> 12)
    else:
        raise CheckpointError(f"'{path}': unexpected VAE input/output channels {in_channels}/{out_channels} "
                              f"(expected 3, or 12 for the patchified Wan 2.2 VAE).")
    enc_top = int(need("encoder.norm_out.gamma").shape[0])
    if enc_top % base_dim:
        raise CheckpointError(f"'{path}': encoder widths {base_dim} -> {enc_top} are not a Wan VAE.")
    top_mult = enc_top // base_dim
    levels = _indices(sd, r"^decoder\.up_blocks\.(\d+)\.")
    if not levels or levels != list(range(len(levels))):
        raise CheckpointError(f"'{path}': decoder up blocks missing or out of order. Expected {_EXPECTED}.")
    dec_top = int(need("decoder.conv_in.weight").shape[0])
    if dec_top % top_mult:
        raise CheckpointError(f"'{path}': decoder width {dec_top} does not fit multiplier {top_mult}.")
    dec_dim = dec_top // top_mult
    dim_mult_rev: list[int] = []
    temperal_up: list[bool] = []
    up_name = "upsampler" if is_residual else "upsamplers.0"
    for i in levels:
        width = int(need(f"decoder.up_blocks.{i}.resnets.0.conv2.weight").shape[0])
        if width % dec_dim:
            raise CheckpointError(f"'{path}': decoder level {i} width {width} is not a multiple of {dec_dim}.")
        dim_mult_rev.append(width // dec_dim)
        if i < len(levels) - 1:
            temperal_up.append(f"decoder.up_blocks.{i}.{up_name}.time_conv.weight" in sd)
    dim_mult = dim_mult_rev[::-1]
    n_up_resnets = len(_indices(sd, r"^decoder\.up_blocks\.0\.resnets\.(\d+)\."))
    num_res_blocks = n_up_resnets - 1
    if num_res_blocks < 1:
        raise CheckpointError(f"'{path}': no residual blocks found in the decoder. Expected {_EXPECTED}.")
    if any(".to_qkv." in k for k in sd if k.startswith(("encoder.down_blocks.", "decoder.up_blocks."))):
        raise CheckpointError(f"'{path}': attention inside the down/up blocks (attn_scales) is not used by "
                              "any Wan VAE and is not supported.")
    cfg: dict[str, Any] = dict(
        base_dim=base_dim,
        z_dim=z_dim,
        dim_mult=dim_mult,
        num_res_blocks=num_res_blocks,
        attn_scales=[],
        temperal_downsample=temperal_up[::-1],
        is_residual=is_residual,
        in_channels=in_channels,
        out_channels=out_channels,
        patch_size=patch_size,
        scale_factor_temporal=2 ** sum(temperal_up),
        scale_factor_spatial=(2 ** (len(dim_mult) - 1)) * (patch_size or 1),
    )
    if dec_dim != base_dim:
        cfg["decoder_base_dim"] = dec_dim
    cfg.update(_latent_stats(z_dim, path, latents_stats))
    return cfg


def _latent_stats(z_dim: int, path: Path | str,
                  latents_stats: tuple[list[float], list[float]] | None) -> dict[str, list[float]]:
    """The ``latents_mean`` / ``latents_std`` config entries for a single-file VAE with ``z_dim`` channels.

    Empty for 16 channels: Wan 2.1's statistics are ``AutoencoderKLWan``'s defaults.
    """
    if latents_stats is not None:
        return {"latents_mean": list(latents_stats[0]), "latents_std": list(latents_stats[1])}
    if z_dim == 16:
        return {}
    if z_dim == 48:
        return {"latents_mean": list(WAN22_LATENTS_MEAN), "latents_std": list(WAN22_LATENTS_STD)}
    warnings.warn(f"VAE '{path}' has {z_dim} latent channels (not a released Wan VAE); no latent "
                  "statistics are known, so latents are left unnormalized (mean 0, std 1).", stacklevel=4)
    return {"latents_mean": [0.0] * z_dim, "latents_std": [1.0] * z_dim}


def _summarize_mismatch(model_sd: dict[str, torch.Tensor], sd: dict[str, torch.Tensor]) -> str:
    missing = sorted(set(model_sd) - set(sd))
    unexpected = sorted(set(sd) - set(model_sd))
    wrong = sorted(k for k in set(model_sd) & set(sd) if tuple(model_sd[k].shape) != tuple(sd[k].shape))
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    if wrong:
        k = wrong[0]
        parts.append(f"{len(wrong)} with wrong shapes (e.g. {k}: file {tuple(sd[k].shape)} vs model "
                     f"{tuple(model_sd[k].shape)})")
    return "; ".join(parts)


def _build_from_state_dict(sd: dict[str, torch.Tensor], cfg: dict[str, Any], path: Path,
                           device: str | torch.device, dtype: torch.dtype) -> Any:
    AutoencoderKLWan = _import_autoencoder()
    try:
        with torch.device("meta"):
            model = AutoencoderKLWan(**cfg)
    except TypeError as exc:
        raise CheckpointError(f"'{path}' needs a newer diffusers for this VAE ({exc}); "
                              "`pip install -U 'diffusers>=0.35'` (Wan 2.2 VAE support).") from exc
    model_sd = model.state_dict()
    problem = _summarize_mismatch(model_sd, sd)
    if problem:
        raise CheckpointError(f"'{path}' does not match the Wan VAE architecture read from its shapes: "
                              f"{problem}. Expected {_EXPECTED}.")
    sd = {k: v.to(dtype=dtype) if v.is_floating_point() else v for k, v in sd.items()}
    model.load_state_dict(sd, strict=True, assign=True)
    return model.to(device=device)


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    except Exception as exc:
        raise CheckpointError(f"Cannot read '{path}' as safetensors ({exc}). The file may be truncated "
                              "(re-download it) or not a safetensors file.") from exc


def _load_single_file(path: Path, device: str | torch.device, dtype: torch.dtype,
                      latents_stats: tuple[list[float], list[float]] | None = None) -> WanVAE:
    refuse_pickle(path, "VAE")
    sd = _strip_prefix(_load_safetensors(path))
    layout = detect_layout(sd)
    if layout == "unknown":
        sample = sorted(sd)[:4]
        raise CheckpointError(f"'{path}' is not a Wan VAE: none of the expected keys "
                              f"({_ORIGINAL_MARKERS[0]!r}, {_DIFFUSERS_MARKERS[1]!r}) were found (first keys: "
                              f"{sample}). Expected {_EXPECTED}. Is this a DiT or text-encoder file?")
    require_all_finite(sd, path)  # NaN / inf would decode into a black or NaN video, named here instead
    if layout == "original":
        sd = _convert_original(sd, path)
    cfg = infer_config(sd, path, latents_stats)
    model = _build_from_state_dict(sd, cfg, path, device, dtype)
    return WanVAE(model, source=str(path))


def _load_diffusers_folder(folder: Path, device: str | torch.device, dtype: torch.dtype) -> WanVAE:
    cfg_path = folder / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"Cannot read the VAE config '{cfg_path}': {exc}.") from exc
    cls = cfg.get("_class_name")
    if cls not in (None, "AutoencoderKLWan"):
        raise CheckpointError(f"'{folder}' holds a {cls}, not a Wan VAE (AutoencoderKLWan). Expected {_EXPECTED}.")
    weights = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.safetensors.index.json"))
    if not weights:
        refuse_pickle_folder(folder, "VAE folder")
        raise CheckpointError(f"'{folder}' has a config.json but no diffusion_pytorch_model.safetensors. "
                              f"Expected {_EXPECTED}.")
    AutoencoderKLWan = _import_autoencoder()
    try:
        model = AutoencoderKLWan.from_pretrained(str(folder), local_files_only=True, use_safetensors=True,
                                                 torch_dtype=dtype, low_cpu_mem_usage=False)
    except Exception as exc:
        raise CheckpointError(f"Cannot load the diffusers VAE folder '{folder}': {exc}") from exc
    require_all_finite(model.state_dict(), folder)
    return WanVAE(model.to(device=device), source=str(folder))


def _override_stats(vae: WanVAE, stats: tuple[list[float], list[float]]) -> None:
    mean, std = stats
    if len(mean) != vae.z_dim:
        raise MVS2VError(f"latents_mean has {len(mean)} values but the VAE has {vae.z_dim} latent channels.")
    vae.latents_mean = torch.tensor(mean, dtype=torch.float32)
    vae.latents_std = torch.tensor(std, dtype=torch.float32)


def _check_stats(latents_mean: Any, latents_std: Any) -> tuple[list[float], list[float]] | None:
    if latents_mean is None and latents_std is None:
        return None
    if latents_mean is None or latents_std is None:
        raise MVS2VError("Pass both latents_mean and latents_std, or neither.")
    mean = [float(v) for v in torch.as_tensor(latents_mean).flatten()]
    std = [float(v) for v in torch.as_tensor(latents_std).flatten()]
    if len(mean) != len(std) or not all(v > 0 for v in std):
        raise MVS2VError("latents_mean and latents_std must have the same length and std must be > 0.")
    return mean, std


def load_vae(path: str | os.PathLike, device: str | torch.device = "cpu",
             dtype: torch.dtype = torch.float32, latents_mean: Any = None,
             latents_std: Any = None) -> WanVAE:
    """Load a Wan 2.1 or 2.2 VAE from safetensors.

    Args:
        path: a diffusers folder (``config.json`` + ``diffusion_pytorch_model.safetensors``), a
            diffusers pipeline folder with a ``vae/`` subfolder, or one ``.safetensors`` file in the
            original Wan layout (ComfyUI's ``wan_2.1_vae.safetensors`` / ``wan2.2_vae.safetensors``)
            or in diffusers layout.
        device, dtype: where and in which precision to keep the weights (the Wan authors run the
            VAE in float32; bfloat16 halves memory at a small quality cost).
        latents_mean, latents_std: optional per-channel statistics ``[z_dim]`` replacing those
            of the config (folders) or the Wan defaults (single files: Wan 2.1's for 16 channels,
            Wan 2.2's for 48). Only needed for non-Wan VAEs such as the tiny test models.

    Raises:
        CheckpointError: missing path, pickle file, unreadable file, or keys/shapes that are not a
            Wan VAE.
    """
    stats = _check_stats(latents_mean, latents_std)
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f"VAE not found: '{p}'. Pass {_EXPECTED}.")
    from .components import find_component

    kind = find_component(p, "vae")
    if kind is not None:  # a folder declaring another codec kind (e.g. the toy world's exact codec)
        if stats is not None:
            raise MVS2VError(f"'{p}' is a {kind.kind} folder, which stores its own normalization; drop latents_mean/std")
        return kind.loader(p, device=device, dtype=dtype)
    if p.is_dir():
        if not (p / "config.json").is_file() and (p / "vae" / "config.json").is_file():
            p = p / "vae"
        if (p / "config.json").is_file():
            vae = _load_diffusers_folder(p, device, dtype)
            if stats is not None:
                _override_stats(vae, stats)
            return vae
        singles = sorted(p.glob("*.safetensors"))
        if len(singles) == 1:
            return _load_single_file(singles[0], device, dtype, stats)
        raise CheckpointError(f"'{p}' is a folder without config.json"
                              f"{' and with several .safetensors files' if singles else ''}. Pass {_EXPECTED}.")
    refuse_pickle(p, "VAE")
    if p.suffix.lower() != ".safetensors":
        raise CheckpointError(f"'{p}' is not a .safetensors file. Pass {_EXPECTED}.")
    return _load_single_file(p, device, dtype, stats)
