"""The umT5 text encoder used by Wan (any T5-style encoder with a Hugging Face tokenizer works).

Wan encodes each prompt, keeps only the embeddings of its real tokens (``encode`` returns
``[L_i, D]`` per prompt), and the DiT zero-pads them to ``text_len = 512`` (:func:`pad_context`).

transformers is imported lazily, inside the functions.
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

import torch

from ..errors import CheckpointError, MVS2VError
from ..safe_files import refuse_pickle, refuse_pickle_folder, require_all_finite

__all__ = ["TextEncoder", "load_text_encoder", "pad_context", "clean_prompt"]

_TOKENIZER_FILES = ("tokenizer.json", "spiece.model", "tokenizer_config.json")
_EXPECTED = ("a local folder with config.json + *.safetensors weights (e.g. the 'text_encoder' folder "
             "of Wan-AI/Wan2.1-T2V-1.3B-Diffusers) and its tokenizer files, either in the same folder "
             "or in a sibling 'tokenizer' folder")


def clean_prompt(text: str) -> str:
    """Light prompt cleanup as in Wan: fix text with ftfy if installed, unescape HTML, squeeze spaces."""
    try:
        import ftfy  # optional

        text = ftfy.fix_text(text)
    except ImportError:
        pass
    text = html.unescape(html.unescape(text))
    return re.sub(r"\s+", " ", text).strip()


class TextEncoder:
    """A T5-style encoder plus its tokenizer.

    Attributes:
        model: the transformers encoder (eval mode, no grad).
        tokenizer: the matching tokenizer.
    """

    def __init__(self, model: Any, tokenizer: Any, source: str | None = None) -> None:
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.source = source

    @property
    def dim(self) -> int:
        """Embedding width ``D`` (4096 for umT5-XXL)."""
        return int(self.model.config.d_model)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "TextEncoder":
        """Move the model (in place) and return ``self``."""
        kwargs: dict[str, Any] = {}
        if device is not None:
            kwargs["device"] = device
        if dtype is not None:
            kwargs["dtype"] = dtype
        if kwargs:
            self.model.to(**kwargs)
        return self

    def encode(self, prompts: str | Sequence[str], max_length: int = 512) -> list[torch.Tensor]:
        """Encode prompts, each trimmed to its real token count.

        Args:
            prompts: one prompt or a list of prompts (the empty string is allowed; it still has
                the end-of-sequence token).
            max_length: longer prompts are truncated to this many tokens (Wan: 512).

        Returns:
            A list with one tensor ``[L_i, D]`` per prompt (``L_i <= max_length``), in the model's
            dtype, on its device.
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, (list, tuple)) or not all(isinstance(p, str) for p in prompts):
            raise MVS2VError("TextEncoder.encode expects a prompt string or a list of prompt strings.")
        if len(prompts) == 0:
            return []
        if int(max_length) < 1:
            raise MVS2VError(f"max_length must be at least 1, got {max_length}.")
        texts = [clean_prompt(p) for p in prompts]
        batch = self.tokenizer(texts, padding="longest", truncation=True, max_length=int(max_length),
                               add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        ids = batch["input_ids"].to(self.device)
        mask = batch["attention_mask"].to(self.device)
        with torch.no_grad():
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        lengths = mask.gt(0).sum(dim=1).tolist()
        return [hidden[i, : int(n)] for i, n in enumerate(lengths)]

    def __repr__(self) -> str:
        return (f"TextEncoder({type(self.model).__name__}, dim={self.dim}, dtype={self.dtype}, "
                f"device={self.device}, source={self.source!r})")


def pad_context(context: Sequence[torch.Tensor], text_len: int = 512) -> torch.Tensor:
    """Stack per-prompt embeddings ``[L_i, D]`` into ``[B, text_len, D]``, zero-padded.

    Sequences longer than ``text_len`` are cut to ``text_len`` (Wan's encoder never produces
    them when ``max_length <= text_len``). dtype and device follow the first tensor.
    """
    if len(context) == 0:
        raise MVS2VError("pad_context needs at least one embedding tensor.")
    if int(text_len) < 1:
        raise MVS2VError(f"text_len must be at least 1, got {text_len}.")
    dims = {int(c.shape[-1]) for c in context if isinstance(c, torch.Tensor)}
    if len(dims) != 1 or not all(isinstance(c, torch.Tensor) and c.ndim == 2 for c in context):
        raise MVS2VError("pad_context expects a list of [L_i, D] tensors with one common D; got shapes "
                         f"{[tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__ for c in context]}.")
    first = context[0]
    out = first.new_zeros((len(context), int(text_len), dims.pop()))
    for i, c in enumerate(context):
        n = min(int(c.shape[0]), int(text_len))
        out[i, :n] = c[:n].to(device=out.device, dtype=out.dtype)
    return out


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / f).is_file() for f in _TOKENIZER_FILES)


def _resolve_folders(path: Path) -> tuple[Path, Path]:
    """Return (model folder, tokenizer folder) for a text-encoder or pipeline folder."""
    model_dir = path
    if not (path / "config.json").is_file() and (path / "text_encoder" / "config.json").is_file():
        model_dir = path / "text_encoder"
    if not (model_dir / "config.json").is_file():
        raise CheckpointError(f"'{path}' has no config.json. Pass {_EXPECTED}.")
    for candidate in (model_dir, model_dir.parent / "tokenizer", model_dir / "tokenizer"):
        if candidate.is_dir() and _has_tokenizer(candidate):
            return model_dir, candidate
    raise CheckpointError(f"No tokenizer found for the text encoder '{model_dir}': looked for "
                          f"{', '.join(_TOKENIZER_FILES)} in '{model_dir}' and '{model_dir.parent / 'tokenizer'}'. "
                          "Copy the 'tokenizer' folder of the same model (for Wan: google/umt5-xxl's "
                          "tokenizer, shipped as 'tokenizer/' in the Wan diffusers repositories) next to it.")


def _check_weights(model_dir: Path) -> None:
    safes = list(model_dir.glob("*.safetensors"))
    index = list(model_dir.glob("*.safetensors.index.json"))
    if index:
        for idx in index:
            try:
                shards = set(json.loads(idx.read_text(encoding="utf-8"))["weight_map"].values())
            except (OSError, ValueError, KeyError) as exc:
                raise CheckpointError(f"Cannot read the shard index '{idx}': {exc}.") from exc
            missing = sorted(s for s in shards if not (model_dir / s).is_file())
            if missing:
                raise CheckpointError(f"The text encoder '{model_dir}' is incomplete: shard(s) {missing[:3]} "
                                      f"listed in '{idx.name}' are missing. Finish the download.")
        return
    if safes:
        return
    refuse_pickle_folder(model_dir, "text encoder folder")
    raise CheckpointError(f"'{model_dir}' has a config.json but no .safetensors weights. Pass {_EXPECTED}.")


def _dtype_kwargs(dtype: torch.dtype) -> dict[str, Any]:
    import transformers

    try:
        major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    except ValueError:
        major, minor = 5, 0
    return {"dtype": dtype} if (major, minor) >= (4, 56) else {"torch_dtype": dtype}


def load_text_encoder(path: str | os.PathLike, device: str | torch.device = "cpu",
                      dtype: torch.dtype = torch.float32) -> TextEncoder:
    """Load a T5/umT5 encoder and its tokenizer from local files (never from a hub).

    Args:
        path: the model folder (``config.json`` + ``*.safetensors`` [+ ``*.index.json``]) with the
            tokenizer files in it or in a sibling ``tokenizer/`` folder, or a diffusers pipeline
            folder containing ``text_encoder/`` and ``tokenizer/``.
        device, dtype: where and in which precision to keep the weights (Wan uses bfloat16).

    Raises:
        CheckpointError: missing folder, pickle-only weights, missing shards or tokenizer, or a
            config that is not a T5-style encoder.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f"Text encoder not found: '{p}'. Pass {_EXPECTED}.")
    from .components import find_component

    kind = find_component(p, "text_encoder")
    if kind is not None:  # a folder declaring another encoder kind (e.g. the toy world's word embeddings)
        return kind.loader(p, device=device, dtype=dtype)
    if p.is_file():
        refuse_pickle(p, "text encoder")
        raise CheckpointError(
            f"'{p}' is a single file; the standalone pipeline needs {_EXPECTED}. (ComfyUI's single-file "
            "umt5_xxl_*.safetensors is used by the ComfyUI nodes through ComfyUI's own loader.)")
    model_dir, tok_dir = _resolve_folders(p)
    _check_weights(model_dir)
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"Cannot read '{model_dir / 'config.json'}': {exc}.") from exc
    model_type = config.get("model_type")
    try:
        import transformers
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise MVS2VError("The text encoder needs transformers: `pip install transformers sentencepiece` "
                         "(or `pip install mvs2v[cli]`).") from exc
    classes = {"umt5": "UMT5EncoderModel", "t5": "T5EncoderModel", "mt5": "MT5EncoderModel"}
    if model_type not in classes:
        raise CheckpointError(f"'{model_dir}' holds a '{model_type}' model; expected a T5-style encoder "
                              "(model_type 'umt5' for Wan, or 't5'/'mt5').")
    cls = getattr(transformers, classes[model_type])
    try:
        model = cls.from_pretrained(str(model_dir), local_files_only=True, use_safetensors=True,
                                    **_dtype_kwargs(dtype))
    except Exception as exc:
        raise CheckpointError(f"Cannot load the text encoder '{model_dir}': {exc}") from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
    except Exception as exc:
        raise CheckpointError(f"Cannot load the tokenizer in '{tok_dir}': {exc}. For Wan, copy google/umt5-xxl's "
                              "tokenizer files (spiece.model / tokenizer.json + tokenizer_config.json).") from exc
    model = model.to(device=device)
    if next(model.parameters()).dtype != dtype:
        model = model.to(dtype=dtype)
    require_all_finite(model.state_dict(), model_dir)  # a NaN context would be blamed on dtype after sampling
    return TextEncoder(model, tokenizer, source=str(model_dir))
