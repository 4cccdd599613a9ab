"""Captioning with a local vision-language model (transformers), for items without a caption.

``caption.model`` is a local folder (``config.json`` + ``*.safetensors`` + the processor files), loaded
with ``AutoProcessor`` and ``AutoModelForImageTextToText`` (LLaVA, Qwen2-VL / Qwen2.5-VL, ...) with
``local_files_only``: nothing is downloaded and pickled weights are refused. ``caption.frames`` frames
spread over the clip (or the item's image) go into one chat message with ``caption.prompt``; greedy
decoding, so a re-run gives the same caption.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mvs2v_core.errors import CheckpointError, MVS2VError

__all__ = ["VLMCaptioner", "sample_frames"]

MAX_NEW_TOKENS = 96


def sample_frames(frames: np.ndarray, n: int) -> list[np.ndarray]:
    """``n`` frames of ``[F, H, W, 3]`` evenly spread from first to last (all when F <= n)."""
    idx = np.unique(np.linspace(0, len(frames) - 1, min(n, len(frames))).round().astype(int))
    return [frames[i] for i in idx]


class VLMCaptioner:
    """``captioner(images) -> str``: one caption for a list of RGB ``uint8 [H, W, 3]`` images."""

    def __init__(self, folder: str | os.PathLike, prompt: str, device: str | None = None) -> None:
        from mvs2v_core.safe_files import refuse_pickle_folder

        p = Path(folder).expanduser()
        if not (p / "config.json").is_file():
            raise CheckpointError(f"caption.model '{p}' is not a transformers model folder (no config.json): give a "
                                  "local VLM folder, or leave caption.model empty to use the items' captions")
        if not list(p.glob("*.safetensors")) and not list(p.glob("*.safetensors.index.json")):
            refuse_pickle_folder(p, "caption model folder")
            raise CheckpointError(f"caption.model '{p}' has no .safetensors weights")
        try:
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError:
            raise MVS2VError("captioning needs torch and transformers: pip install torch transformers") from None
        try:
            self.processor = AutoProcessor.from_pretrained(str(p), local_files_only=True)
            self.model = AutoModelForImageTextToText.from_pretrained(str(p), local_files_only=True,
                                                                     use_safetensors=True)
        except Exception as exc:  # transformers raises many types for a folder it cannot use
            raise CheckpointError(f"cannot load the caption model '{p}': {exc}") from None
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device).eval()
        self.prompt = prompt

    def __call__(self, images: Sequence[np.ndarray]) -> str:
        import torch
        from PIL import Image

        content: list[dict[str, Any]] = [{"type": "image"} for _ in images] + [{"type": "text", "text": self.prompt}]
        text = self.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
        pil = [Image.fromarray(np.ascontiguousarray(im)) for im in images]
        inputs = self.processor(text=text, images=pil, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1]:]
        return self.processor.batch_decode(new, skip_special_tokens=True)[0].strip()
