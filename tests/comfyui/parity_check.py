"""Patched native ComfyUI Wan model vs mvs2v_core's WanDiT: same weights, references and scheme.

Run with ComfyUI's Python: ``python parity_check.py COMFYUI_DIR CUSTOM_NODES_DIR PACK_NAME DIT_FILE``.
Prints one JSON line: per case, the largest absolute difference of the velocity (fp32).
The ComfyUI side is ComfyUI's own loader + WanModel + the pack's wrapper, called the way ComfyUI's
sampler calls it (wrappers taken from the patched ModelPatcher into transformer_options).
"""

import importlib
import json
import sys

import torch


def main() -> None:
    comfy_dir, custom_nodes, pack_name, dit_file = sys.argv[1:5]
    sys.path.insert(0, comfy_dir)
    from comfy.cli_args import args

    args.cpu = True
    import comfy.patcher_extension
    import comfy.sd

    sys.path.insert(0, custom_nodes)
    pack = importlib.import_module(pack_name)
    patch = importlib.import_module(f"{pack_name}.nodes.patch")
    compat = importlib.import_module(f"{pack_name}.nodes.compat")
    core_cfg = importlib.import_module(f"{pack_name}.mvs2v_core.model.config")
    core_dit = importlib.import_module(f"{pack_name}.mvs2v_core.model.transformer")
    loading = importlib.import_module(f"{pack_name}.mvs2v_core.model.loading")
    layout_m = importlib.import_module(f"{pack_name}.mvs2v_core.references.layout")
    pos_m = importlib.import_module(f"{pack_name}.mvs2v_core.references.positions")
    cond_m = importlib.import_module(f"{pack_name}.mvs2v_core.references.conditioning")
    settings_m = importlib.import_module(f"{pack_name}.mvs2v_core.references.settings")
    assert pack is not None

    native = comfy.sd.load_diffusion_model(dit_file)  # ComfyUI's own loader and model detection
    dm = native.get_model_object("diffusion_model")
    sd = loading.read_state_dict(dit_file)
    cfg = core_cfg.infer_config(sd)
    ours = core_dit.WanDiT(cfg)
    ours.load_state_dict(sd)
    ours.eval()

    gen = torch.Generator().manual_seed(0)
    b, c, f, h, w = 2, cfg.in_dim, 3, 8, 12
    x = torch.randn(b, c, f, h, w, generator=gen)
    context = torch.randn(b, 512, 4096, generator=gen) * 0.5
    layout = layout_m.ReferenceLayout.build([["front", "back"], ["front"]], 4, names=["a", "b"])
    latents = torch.randn(1, c, layout.num_slots, h, w, generator=gen)
    proxy = torch.randn(4, cfg.dim, generator=gen) * 0.5

    cases = [
        ("vanilla_gray", "vanilla", {}, "gray", "same", "per_sample"),
        ("ts_gray", "ts", {"gap": 8}, "gray", "same", "per_sample"),
        ("ss_drop", "ss", {"gap": 8}, "drop", "same", "per_sample"),
        ("jump_proxy", "jump", {"ref_gap": 9, "identity_gap": 24}, "proxy", "same", "per_sample"),
        ("jump_before_proxy_zero_t", "jump", {"ref_gap": 9, "identity_gap": 24, "placement": "before"}, "proxy", "zero", "per_sample"),
        ("ts_per_frame_t_wan22", "ts", {"gap": 8}, "gray", "same", "per_frame"),
    ]
    results = {}
    with torch.no_grad():
        for name, scheme_name, kw, mode, ref_t, t_kind in cases:
            scheme = pos_m.PositionScheme(scheme_name, **kw)
            settings = settings_m.ReferenceSettings(layout.slots_per_subject, scheme, mode, ref_t)
            injection = patch.ReferenceInjection(latents, layout, settings, proxy if mode == "proxy" else None)
            patched = compat.set_reference_wrapper(native, injection)
            options = {"wrappers": comfy.patcher_extension.copy_nested_dicts(patched.wrappers)}
            if t_kind == "per_sample":
                t_native = torch.tensor([700.0, 350.5])
                t_core = t_native
            else:  # Wan2.2's per-frame timesteps (WAN22.process_timestep); the core takes them per token
                t_native = torch.tensor([[900.0, 640.0, 250.0], [500.0, 500.0, 120.0]])
                t_core = t_native.repeat_interleave((h // 2) * (w // 2), dim=1)
            v_native = dm(x, t_native, context, transformer_options=options).float()
            refs = cond_m.ReferenceConditioning(latents.expand(b, -1, -1, -1, -1), layout, settings,
                                                proxy if mode == "proxy" else None)
            v_core = ours(x, t_core, context, refs=refs).float()
            assert v_native.shape == v_core.shape == x.shape, (v_native.shape, v_core.shape)
            results[name] = float((v_native - v_core).abs().max())
        plain = dm(x, torch.tensor([700.0, 350.5]), context, transformer_options={}).float()
        vanilla = settings_m.ReferenceSettings(layout.slots_per_subject, pos_m.PositionScheme("vanilla"), "gray", "same")
        injection = patch.ReferenceInjection(latents, layout, vanilla, None)
        patched = compat.set_reference_wrapper(native, injection)
        with_refs = dm(x, torch.tensor([700.0, 350.5]), context,
                       transformer_options={"wrappers": comfy.patcher_extension.copy_nested_dicts(patched.wrappers)}).float()
        results["unpatched_vs_patched_vanilla"] = float((plain - with_refs).abs().max())
        results["output_scale"] = float(with_refs.abs().mean())
    print("PARITY " + json.dumps(results))


if __name__ == "__main__":
    main()
