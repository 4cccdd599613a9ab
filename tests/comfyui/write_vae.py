"""Writes the Wan2.1 and Wan2.2 test VAEs: ComfyUI's real architecture, small deterministic files.

Run with the Python that runs ComfyUI: ``python write_vae.py COMFYUI_DIR OUT_WAN21 OUT_WAN22``.

ComfyUI builds a Wan VAE at a fixed width (0.3.64 reads no size from the file; 0.33.0 reads only the
Wan2.1 one's), so a test VAE needs every tensor at full size: 127 M values for Wan2.1 and 705 M for
Wan2.2. Safetensors stores every element (1.4 GB for the Wan2.2 VAE even in fp16). A torch pickle
stores storages, and each tensor as a view of one (offset, sizes, strides), so here every weight is
a strided view of a short random vector: output row ``o`` of an ``[out, in, *kernel]`` weight is the
window of that vector starting at ``o * ROW_SHIFT``, laid out like a dense row. ComfyUI's VAELoader
reads ``.pt`` files with ``torch.load(weights_only=True)`` and copies each view into the model's own
dense parameters, so the VAE it runs has full-size weights with distinct rows, whose scale (by fan-in)
keeps activations finite. Both files together are about 6 MB and take a second to write.
"""

from __future__ import annotations

import math
import sys

import torch

ROW_SHIFT = 31  # prime: neighbouring rows are shifted copies, never aligned with a kernel's period
WAN_VAE_CONFIG = {"z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_scales": [],
                  "temperal_downsample": [False, True, True], "dropout": 0.0}


def build_meta_vae(version: str) -> torch.nn.Module:
    """ComfyUI's own WanVAE with the widths its VAE loader uses, on the meta device (no memory)."""
    if version == "2.1":
        from comfy.ldm.wan.vae import WanVAE

        config = dict(WAN_VAE_CONFIG, dim=96)
    else:
        from comfy.ldm.wan.vae2_2 import WanVAE

        config = dict(WAN_VAE_CONFIG, dim=160, z_dim=48)
    with torch.device("meta"):
        return WanVAE(**config)


def strided_weight(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """A full-size ``shape`` view of a short random vector (see the module docstring)."""
    kernel = math.prod(shape[2:])
    strides = (ROW_SHIFT, kernel) + tuple(math.prod(shape[j + 1:]) for j in range(2, len(shape)))
    extent = sum((size - 1) * stride for size, stride in zip(shape, strides)) + 1
    scale = 0.5 / (shape[1] * kernel) ** 0.5  # by fan-in, as the random-normal weights before
    pool = (torch.randn(extent, generator=gen) * scale).to(torch.float16)
    return pool.as_strided(shape, strides)


def vae_state_dict(model: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Norm scales one, biases zero (both as expanded scalars), every other weight strided random."""
    gen = torch.Generator().manual_seed(seed)
    one, zero = torch.ones(1, dtype=torch.float16), torch.zeros(1, dtype=torch.float16)
    sd = {}
    for name, p in model.state_dict().items():
        shape = tuple(p.shape)
        if p.ndim <= 1 or name.endswith("gamma"):
            sd[name] = (one if name.endswith(("gamma", "weight")) else zero).expand(shape)
        else:
            sd[name] = strided_weight(shape, gen)
    return sd


def main() -> None:
    comfy_dir, out_wan21, out_wan22 = sys.argv[1:4]
    sys.path.insert(0, comfy_dir)
    from comfy.cli_args import args

    args.cpu = True  # before comfy.model_management is imported (through the VAE modules)
    for version, out in (("2.1", out_wan21), ("2.2", out_wan22)):
        torch.save(vae_state_dict(build_meta_vae(version), seed=1234), out)


if __name__ == "__main__":
    main()
