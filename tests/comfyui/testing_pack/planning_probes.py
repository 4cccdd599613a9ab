"""Test-only probes for ComfyUI's sampling plan: the memory estimate and the context-window calls.

* ``MVS2VTest_RecordMemoryEstimate``: a clone of MODEL whose PREPARE_SAMPLING wrapper logs, per
  sampling, what ComfyUI passes to ``comfy.model_management.load_models_gpu`` (``memory_required``
  and ``minimum_memory_required``: the numbers it loads / offloads the model by). It swaps in a
  recording ``load_models_gpu`` only while ComfyUI's own ``_prepare_sampling`` runs inside it, so
  where it sits among other PREPARE_SAMPLING wrappers does not matter, and it changes nothing.
* ``MVS2VTest_RecordWindows``: a clone of MODEL with a DIFFUSION_MODEL wrapper (inside MV-S2V's, when
  applied after Apply MV-S2V) and a first-block replacement (which MV-S2V's block patch calls) that
  save, per model call, the context window ComfyUI is evaluating, the video frames, the timesteps and
  the reference latents the model receives (``time_dim_concat``) and the rotary table the first
  block gets (``pe``, from which the test reads the position ids back).
"""

from __future__ import annotations

import json
import os

import comfy.model_management
import comfy.patcher_extension
import folder_paths
from safetensors.torch import save_file


class TestRecordMemoryEstimate:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "tag": ("STRING", {"default": "model"}),
                             "log_name": ("STRING", {"default": "mvs2v_memory.jsonl"})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "record"
    CATEGORY = "mvs2v_testing"

    def record(self, model, tag, log_name):
        path = os.path.join(folder_paths.get_output_directory(), log_name)

        def wrapper(executor, model_patcher, noise_shape, conds, *args, **kwargs):
            loads = []
            original = comfy.model_management.load_models_gpu

            def recording(*a, **kw):
                loads.append({"memory_required": kw.get("memory_required"),
                              "minimum_memory_required": kw.get("minimum_memory_required")})
                return original(*a, **kw)

            comfy.model_management.load_models_gpu = recording
            try:
                return executor(model_patcher, noise_shape, conds, *args, **kwargs)
            finally:
                comfy.model_management.load_models_gpu = original
                with open(path, "a") as f:
                    f.write(json.dumps({"tag": tag, "noise_shape_here": [float(v) for v in noise_shape],
                                        "loads": loads}) + "\n")

        m = model.clone()
        m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.PREPARE_SAMPLING, "mvs2v_test_memory", wrapper)
        return (m,)


class TestRecordWindows:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "tag": ("STRING", {"default": "windows"}),
                             "folder": ("STRING", {"default": "mvs2v_windows"})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "record"
    CATEGORY = "mvs2v_testing"

    def record(self, model, tag, folder):
        out_dir = os.path.join(folder_paths.get_output_directory(), folder)
        os.makedirs(out_dir, exist_ok=True)
        state = {"current": None, "count": 0}

        def block0(args, extra):
            if state["current"] is not None:
                state["current"]["pe"] = args["pe"].detach().float().cpu().contiguous()
                state["current"]["tokens"] = int(args["img"].shape[1])
            return extra["original_block"](args)

        def wrapper(executor, x, timestep, context, clip_fea=None, time_dim_concat=None, transformer_options=None,
                    **kwargs):
            record = {}
            state["current"] = record
            try:
                return executor(x, timestep, context, clip_fea, time_dim_concat, transformer_options, **kwargs)
            finally:
                state["current"] = None
                _save_call(out_dir, f"{tag}_{state['count']:03d}", x, timestep, time_dim_concat,
                           transformer_options or {}, record)
                state["count"] += 1

        m = model.clone()
        m.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "mvs2v_test_windows", wrapper)
        m.set_model_patch_replace(block0, "dit", "double_block", 0)
        return (m,)


def _save_call(out_dir, name, x, timestep, refs, transformer_options, record) -> None:
    window = transformer_options.get("context_window")
    anchor = getattr(window, "causal_anchor_index", None) if window is not None else None
    sigmas = transformer_options.get("sigmas")
    tensors = {"timestep": timestep.detach().float().cpu().reshape(timestep.shape[0], -1).contiguous()}
    if refs is not None:
        tensors["refs"] = refs.detach().float().cpu().contiguous()
    if "pe" in record:
        tensors["pe"] = record["pe"]
    meta = {
        "x_shape": json.dumps(list(x.shape)),
        "index_list": json.dumps([int(i) for i in window.index_list] if window is not None else None),
        "window_dim": json.dumps(getattr(window, "dim", None)),
        "anchor": json.dumps(int(anchor) if anchor is not None and anchor >= 0 else None),
        "sigma": json.dumps(float(sigmas.flatten()[0]) if sigmas is not None else None),
        "tokens": json.dumps(record.get("tokens")),
    }
    save_file(tensors, os.path.join(out_dir, name + ".safetensors"), metadata=meta)


NODE_CLASS_MAPPINGS = {
    "MVS2VTest_RecordMemoryEstimate": TestRecordMemoryEstimate,
    "MVS2VTest_RecordWindows": TestRecordWindows,
}

__all__ = ["NODE_CLASS_MAPPINGS"]
