"""Writes a Wan VAE file with deterministic random weights, in ComfyUI's own key layout.

Run with the Python that runs ComfyUI: ``python write_vae.py COMFYUI_DIR OUT_FILE 2.1|2.2``.
ComfyUI builds Wan VAEs with a fixed width (no size is read from the file), so the test VAE has the
real architecture; its weights are random, scaled by fan-in so activations stay finite.
"""

import sys

import torch


def main() -> None:
    comfy_dir, out_file, version = sys.argv[1], sys.argv[2], sys.argv[3]
    sys.path.insert(0, comfy_dir)
    from comfy.cli_args import args

    args.cpu = True
    from safetensors.torch import save_file

    if version == "2.1":
        from comfy.ldm.wan.vae import WanVAE

        model = WanVAE(dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                       temperal_downsample=[False, True, True], dropout=0.0)
    else:
        from comfy.ldm.wan.vae2_2 import WanVAE

        model = WanVAE(dim=160, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                       temperal_downsample=[False, True, True], dropout=0.0)
    gen = torch.Generator().manual_seed(1234)
    sd = {}
    for name, p in model.state_dict().items():
        if p.ndim <= 1 or name.endswith("gamma"):
            sd[name] = (torch.ones(p.shape) if (name.endswith(("gamma", "weight"))) else torch.zeros(p.shape))
        else:
            fan_in = p[0].numel()
            sd[name] = (torch.randn(p.shape, generator=gen) * (0.5 / fan_in**0.5))
        sd[name] = sd[name].to(torch.float16).contiguous()
    save_file(sd, out_file)


if __name__ == "__main__":
    main()
