"""CLIP text-image alignment and the LAION aesthetic predictor, from local folders (nothing downloaded).

* :class:`CLIPTextImage` -- a full CLIP transformers folder (``model_type: clip``: both towers and
  the tokenizer files): L2-normalized image features (:class:`~.features.HFImageFeatureExtractor`,
  the same preprocessing) and text features.
* :class:`AestheticMLP` -- LAION's aesthetic predictor: a stack of linear layers on the
  L2-normalized CLIP image embedding. The "improved aesthetic predictor" (v2, ViT-L/14, 768 inputs)
  is ``Linear(768,1024) Dropout Linear(1024,128) Dropout Linear(128,64) Dropout Linear(64,16)
  Linear(16,1)`` with no activation (its released weights: keys ``layers.{0,2,4,6,7}.{weight,bias}``);
  v1 is one ``Linear(768,1)`` (keys ``weight``, ``bias``). Both load from ``aesthetic_mlp.safetensors``
  (the released files are pickles, which this project never loads: convert once, see
  ``docs/evaluation.md``). Scores are on the predictor's own scale (v2: about 1..10).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

import torch

from ..errors import CheckpointError, MVS2VError
from .features import HFImageFeatureExtractor

__all__ = ["CLIPTextImage", "AestheticMLP", "AESTHETIC_FILE"]

AESTHETIC_FILE = "aesthetic_mlp.safetensors"


class CLIPTextImage:
    """Image and text features of one full CLIP model (a local transformers folder with its tokenizer).

    Args:
        path: the folder (``config.json`` with ``model_type: clip``, ``*.safetensors``, tokenizer files).
        device, dtype, batch_size: as :class:`~.features.HFImageFeatureExtractor`.
    """

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, batch_size: int = 32) -> None:
        self.images = HFImageFeatureExtractor(path, device=device, dtype=dtype, batch_size=batch_size)
        p = Path(path).expanduser()
        if self.images.kind != "clip":
            raise CheckpointError(f"'{p}' holds a {self.images.kind!r} model; text alignment needs a full CLIP "
                                  "folder (model_type clip: image and text towers)")
        import transformers

        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(p), local_files_only=True)
        except Exception as exc:
            raise CheckpointError(f"cannot load the CLIP tokenizer from '{p}' (vocab.json, merges.txt): "
                                  f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        self.model = self.images.model
        self.max_length = int(self.model.config.text_config.max_position_embeddings)
        self.name = self.images.name

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[N, 3, H, W]`` in [0, 1] (or uint8) -> L2-normalized ``[N, D]``."""
        return self.images(images)

    @torch.no_grad()
    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts -> L2-normalized ``[N, D]`` (CLIP's projected text embedding; longer texts are truncated)."""
        if isinstance(texts, str) or not texts:
            raise MVS2VError("text_features takes a non-empty list of strings")
        tok = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt")
        res = self.model.get_text_features(input_ids=tok["input_ids"].to(self.images.device),
                                           attention_mask=tok["attention_mask"].to(self.images.device))
        feats = res if isinstance(res, torch.Tensor) else res.pooler_output
        return torch.nn.functional.normalize(feats.float().cpu(), dim=-1, eps=1e-12)


def _layer_keys(state: dict[str, torch.Tensor], path: Path) -> list[str]:
    """Weight-key prefixes of the linear layers in order (``layers.0.``, ..., or ``""`` for one layer)."""
    if set(state) == {"weight", "bias"}:
        return [""]
    found = sorted({int(m.group(1)) for k in state if (m := re.fullmatch(r"layers\.(\d+)\.weight", k))})
    if not found:
        raise CheckpointError(f"'{path}' is not a LAION aesthetic MLP: expected keys layers.N.weight/bias or "
                              f"weight/bias, found {', '.join(sorted(state)[:6])}")
    return [f"layers.{i}." for i in found]


class AestheticMLP:
    """LAION aesthetic predictor: linear layers (no activations, dropout off) on normalized CLIP features.

    Args:
        folder: holds :data:`AESTHETIC_FILE`.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        from safetensors.torch import load_file

        path = Path(folder).expanduser() / AESTHETIC_FILE
        if not path.is_file():
            raise CheckpointError(f"no {AESTHETIC_FILE} in '{path.parent}'")
        try:
            state = load_file(str(path))
        except Exception as exc:
            raise CheckpointError(f"cannot read '{path}': {exc}") from None
        self.layers: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        for prefix in _layer_keys(state, path):
            weight = state[prefix + "weight"].double()
            bias = state.get(prefix + "bias")
            if weight.ndim != 2 or (self.layers and self.layers[-1][0].shape[0] != weight.shape[1]):
                raise CheckpointError(f"'{path}': layer {prefix or 'weight'} of shape {tuple(weight.shape)} does not "
                                      "follow the previous layer")
            self.layers.append((weight, None if bias is None else bias.double()))
        if self.layers[-1][0].shape[0] != 1:
            raise CheckpointError(f"'{path}': the last layer has {self.layers[-1][0].shape[0]} outputs, not 1")
        self.input_dim = int(self.layers[0][0].shape[1])

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        """L2-normalized image features ``[N, D]`` -> scores ``[N]`` (float64)."""
        x = torch.nn.functional.normalize(features.double(), dim=-1, eps=1e-12)
        if x.ndim != 2 or x.shape[1] != self.input_dim:
            raise MVS2VError(f"the aesthetic MLP takes {self.input_dim}-d CLIP features, got {tuple(x.shape)}; use "
                             "the CLIP model it was trained on (v2: ViT-L/14, 768-d)")
        for weight, bias in self.layers:
            x = x @ weight.T + (bias if bias is not None else 0.0)
        return x[:, 0]

