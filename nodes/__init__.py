"""ComfyUI glue for mvs2v (V3 node schema). Thin wrappers only: model code lives in mvs2v_core."""
