"""A tiny, exactly invertible latent codec: a :class:`~mvs2v_core.pipeline.components.LatentCodec`, like Wan's VAE.

``encode`` is a pixel unshuffle: every ``s x s`` block of a frame becomes ``3 * s * s`` channels
of one latent cell (``F.pixel_unshuffle``; channel ``c * s * s + i * s + j`` holds colour ``c`` of
pixel ``(i, j)`` of the block), followed by the same fixed per-channel normalization as Wan::

    z = (x - latents_mean) / latents_std        x = pixels in [-1, 1]

With the default statistics (mean 0, std 0.5) ``decode(encode(x)) == x`` holds bit for bit for
any ``x`` in ``[-1, 1]``: dividing and multiplying by a power of two is exact in binary floating
point. Toy-world pixels have a per-channel standard deviation of about 0.55 (mean about -0.2) in
``[-1, 1]``, so these latents have roughly unit scale (std ~1.1, mean ~-0.4), like Wan's
normalized latents.

**Temporal factor 1**: each frame is its own latent frame. The toy clips are short (9-17 frames);
Wan's 4x temporal compression would leave 3-5 latent frames, too few to see an object turn, and
its causal first frame (alone, then groups of four) has no exactly invertible block form with a
fixed channel count. With factor 1 a reference image encodes exactly like a video frame, each
latent frame's yaw is known exactly, and any frame count is valid (``F = 1 + (F - 1) // 1``).

Default spatial factor 4: ``z_dim = 48`` (as many channels as the Wan 2.2 VAE), a 32 x 32 clip
becomes 8 x 8 latent cells, i.e. 4 x 4 DiT tokens per frame with Wan's 2 x 2 patches.

A saved codec is a folder with ``toy_codec.json`` (the marker, see :func:`is_toy_codec`) and
``latents_stats.safetensors`` (``latents_mean``, ``latents_std``, float32 ``[z_dim]``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ._core import CheckpointError, MVS2VError, save_safetensors_atomic
from .markers import CODEC_FORMAT, CODEC_MARKER, has_marker, read_marker, write_marker

__all__ = ["ToyCodec", "save_codec", "load_codec", "is_toy_codec", "CODEC_MARKER", "CODEC_FORMAT",
           "DEFAULT_LATENTS_STD"]

CODEC_STATS = "latents_stats.safetensors"
CODEC_VERSION = 1
DEFAULT_LATENTS_STD = 0.5


class ToyCodec:
    """Pixel-unshuffle "VAE" with Wan's normalized-latent interface.

    Args:
        spatial_factor: pixels per latent cell along H and W (``z_dim = 3 * s * s``).
        latents_mean, latents_std: per-channel statistics ``[z_dim]`` (default 0 and 0.5, the
            exactly invertible choice).
        device, dtype: where to compute and in which precision the input is cast before
            encoding (float32 keeps the round trip exact).
        source: where the codec came from (for messages), or None.
    """

    lossless_output = True  # the toy metrics classify exact colours: write its videos losslessly

    def __init__(self, spatial_factor: int = 4, latents_mean: Sequence[float] | torch.Tensor | None = None,
                 latents_std: Sequence[float] | torch.Tensor | None = None, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, source: str | None = None) -> None:
        s = int(spatial_factor)
        if s < 1 or s > 16:
            raise MVS2VError(f"toy codec spatial_factor must be between 1 and 16, got {spatial_factor}")
        self._spatial = s
        self._z_dim = 3 * s * s
        z = self._z_dim
        mean = torch.zeros(z) if latents_mean is None else torch.as_tensor(latents_mean, dtype=torch.float32).flatten()
        std = torch.full((z,), DEFAULT_LATENTS_STD) if latents_std is None else torch.as_tensor(
            latents_std, dtype=torch.float32).flatten()
        if mean.numel() != z or std.numel() != z:
            raise MVS2VError(f"toy codec with spatial_factor {s} needs latents_mean/latents_std of length {z}, got "
                             f"{mean.numel()}/{std.numel()}")
        if not bool((std > 0).all()) or not bool(torch.isfinite(mean).all()) or not bool(torch.isfinite(std).all()):
            raise MVS2VError("toy codec latents_std must be positive and both statistics finite")
        self.latents_mean = mean.float()
        self.latents_std = std.float()
        self._device = torch.device(device)
        self._dtype = dtype
        self.source = source

    # ---- properties (WanVAE's) ---------------------------------------------------------------
    @property
    def z_dim(self) -> int:
        """Latent channels: ``3 * spatial_factor ** 2``."""
        return self._z_dim

    @property
    def spatial_factor(self) -> int:
        """Pixels per latent cell along H and W."""
        return self._spatial

    @property
    def temporal_factor(self) -> int:
        """Frames per latent frame: always 1 (see the module docstring)."""
        return 1

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return self._device

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "ToyCodec":
        """Change the working device / input precision (in place) and return ``self``."""
        if device is not None:
            self._device = torch.device(device)
        if dtype is not None:
            self._dtype = dtype
        return self

    def enable_tiling(self, **kwargs: Any) -> "ToyCodec":
        """Accepted for interface parity; the codec works on independent ``s x s`` blocks, so a tiled
        encode or decode would give exactly the same result and nothing needs to change."""
        return self

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(z, f, h, w)`` of the latents of a ``num_frames`` x ``height`` x ``width`` video."""
        return (self.z_dim, int(num_frames), int(height) // self.spatial_factor, int(width) // self.spatial_factor)

    # ---- encode / decode ---------------------------------------------------------------------
    def _stats(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, self.z_dim, 1, 1, 1)
        return self.latents_mean.to(device).view(shape), self.latents_std.to(device).view(shape)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Encode videos to normalized latents.

        Args:
            video: ``[B, 3, F, H, W]`` in ``[-1, 1]``; ``H`` and ``W`` multiples of :attr:`spatial_factor`.

        Returns:
            float32 ``[B, z_dim, F, H / s, W / s]`` on the codec's device.
        """
        if not isinstance(video, torch.Tensor):
            raise MVS2VError(f"ToyCodec.encode expects a tensor [B, 3, F, H, W], got {type(video).__name__}.")
        if video.ndim != 5 or video.shape[1] != 3:
            raise MVS2VError(f"ToyCodec.encode expects a video tensor [B, 3, F, H, W], got shape "
                             f"{tuple(video.shape)}. For still images use encode_images([N, 3, H, W]).")
        b, _, f, h, w = video.shape
        s = self.spatial_factor
        if b == 0 or f == 0:
            raise MVS2VError(f"ToyCodec.encode got an empty video of shape {tuple(video.shape)}.")
        if h % s or w % s or h == 0 or w == 0:
            raise MVS2VError(f"Video size {w}x{h} is not a multiple of {s} (the toy codec's spatial factor); "
                             f"use a width and height divisible by {s}.")
        if not video.is_floating_point():
            raise MVS2VError(f"ToyCodec.encode expects float pixels in [-1, 1], got dtype {video.dtype}.")
        with torch.no_grad():
            x = video.to(device=self.device, dtype=self.dtype).float()
            frames = x.permute(0, 2, 1, 3, 4).reshape(b * f, 3, h, w)
            cells = F.pixel_unshuffle(frames, s)  # [B*F, 3*s*s, h/s, w/s]
            lat = cells.reshape(b, f, self.z_dim, h // s, w // s).permute(0, 2, 1, 3, 4)
            mean, std = self._stats(lat.device)
            return ((lat - mean) / std).contiguous()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Decode normalized latents.

        Args:
            latents: ``[B, z_dim, f, h, w]``.

        Returns:
            float32 video ``[B, 3, f, h * s, w * s]`` clamped to ``[-1, 1]``, on the codec's device.
        """
        if not isinstance(latents, torch.Tensor):
            raise MVS2VError(f"ToyCodec.decode expects a tensor [B, z, f, h, w], got {type(latents).__name__}.")
        if latents.ndim != 5 or latents.shape[1] != self.z_dim:
            raise MVS2VError(f"ToyCodec.decode expects latents [B, {self.z_dim}, f, h, w], got shape "
                             f"{tuple(latents.shape)}. A channel mismatch means the latents were made by "
                             "another codec (spatial factor) or by a Wan VAE.")
        if any(int(d) == 0 for d in latents.shape):
            raise MVS2VError(f"ToyCodec.decode got empty latents of shape {tuple(latents.shape)}.")
        b, _, f, h, w = latents.shape
        s = self.spatial_factor
        with torch.no_grad():
            z = latents.to(device=self.device, dtype=torch.float32)
            mean, std = self._stats(z.device)
            cells = (z * std + mean).permute(0, 2, 1, 3, 4).reshape(b * f, self.z_dim, h, w)
            frames = F.pixel_shuffle(cells, s)  # [B*F, 3, H, W]
            video = frames.reshape(b, f, 3, h * s, w * s).permute(0, 2, 1, 3, 4)
            return video.clamp(-1.0, 1.0).contiguous()

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Encode still images, each as a one-frame video.

        Args:
            images: ``[N, 3, H, W]`` in ``[-1, 1]``.

        Returns:
            float32 ``[N, z_dim, 1, H / s, W / s]``.
        """
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise MVS2VError(f"ToyCodec.encode_images expects images [N, 3, H, W], got {shape}.")
        if images.shape[0] == 0:
            return torch.zeros((0, self.z_dim, 1, images.shape[2] // self.spatial_factor,
                                images.shape[3] // self.spatial_factor), device=self.device)
        # Frames are independent (temporal factor 1), so one batched call equals one call per image.
        return self.encode(images.unsqueeze(2))

    def __repr__(self) -> str:
        return (f"ToyCodec(z_dim={self.z_dim}, spatial_factor={self.spatial_factor}, temporal_factor=1, "
                f"dtype={self.dtype}, device={self.device}, source={self.source!r})")


# --------------------------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------------------------


def is_toy_codec(path: str | os.PathLike) -> bool:
    """True when ``path`` is a toy-codec folder (it holds ``toy_codec.json``) or that file."""
    return has_marker(path, CODEC_MARKER)


def save_codec(codec: ToyCodec, folder: str | os.PathLike) -> Path:
    """Write ``codec`` as a folder (``toy_codec.json`` + ``latents_stats.safetensors``), atomically per file."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    save_safetensors_atomic({"latents_mean": codec.latents_mean, "latents_std": codec.latents_std},
                            out / CODEC_STATS, {"format": CODEC_FORMAT})
    meta = {"format": CODEC_FORMAT, "version": CODEC_VERSION, "spatial_factor": codec.spatial_factor,
            "temporal_factor": 1, "z_dim": codec.z_dim,
            "note": "mvs2v toy codec: pixel unshuffle + fixed normalization; exactly invertible"}
    return write_marker(out, CODEC_MARKER, meta, "vae")


def load_codec(path: str | os.PathLike, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> ToyCodec:
    """Load a codec written by :func:`save_codec` (``path``: the folder or its ``toy_codec.json``)."""
    folder, meta = read_marker(path, CODEC_MARKER, CODEC_FORMAT, CODEC_VERSION, "toy codec",
                               "mvs2v_toy.codec.save_codec(ToyCodec(), folder)")
    marker = folder / CODEC_MARKER
    if meta.get("temporal_factor", 1) != 1:
        raise CheckpointError(f"'{marker}' asks for temporal_factor {meta.get('temporal_factor')}; the toy codec "
                              "only has 1")
    stats = folder / CODEC_STATS
    if not stats.is_file():
        raise CheckpointError(f"toy codec '{folder}' has no {CODEC_STATS}; write it again with save_codec")
    try:
        from safetensors.torch import load_file

        tensors = load_file(str(stats), device="cpu")
        mean, std = tensors["latents_mean"], tensors["latents_std"]
    except KeyError as exc:
        raise CheckpointError(f"'{stats}' lacks the tensor {exc}; write the codec again with save_codec") from None
    except Exception as exc:
        raise CheckpointError(f"cannot read '{stats}' as safetensors ({exc})") from None
    try:
        codec = ToyCodec(int(meta["spatial_factor"]), mean, std, device=device, dtype=dtype, source=str(folder))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"'{marker}' is malformed ({exc!r}); write the codec again with save_codec") from None
    if "z_dim" in meta and int(meta["z_dim"]) != codec.z_dim:
        raise CheckpointError(f"'{marker}' says z_dim {meta['z_dim']} but spatial_factor "
                              f"{codec.spatial_factor} gives {codec.z_dim}")
    return codec
