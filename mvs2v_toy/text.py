"""A tiny fixed text encoder with the :class:`~mvs2v_core.pipeline.text.TextEncoder` interface.

Each word of a fixed vocabulary (by default the toy caption grammar's,
:func:`mvs2v_toy.world.vocabulary`) has a fixed random unit vector of width ``dim``, drawn
from a generator seeded by ``(seed, crc32(word))`` -- adding a word never changes the others.
A prompt is lower-cased and split into words (runs of letters and digits; punctuation is
dropped); token ``i`` is::

    e_i = word_vector(w_i) + position_scale * sinusoid(i) / |sinusoid(i)|

The position code matters: Wan's DiT reads the text through cross-attention without positions,
so without it "a red cube ... on a blue floor" and "a blue cube ... on a red floor" would be the
same bag of vectors. Like umT5, every prompt ends with an end-of-sequence token ``</s>`` (so the
empty prompt is one token), and ``encode`` returns each prompt trimmed to its real length.

Unknown words raise :class:`MVS2VError` naming the word (``unknown="error"``, the default: a
misspelt colour would otherwise be silently ignored) or map to the ``<unk>`` vector
(``unknown="unk"``).

A saved encoder is a folder with ``toy_text_encoder.json`` (the marker and settings, including
the vocabulary; see :func:`is_toy_text_encoder`) and ``embeddings.safetensors``
(``embeddings``: float32 ``[V, dim]``, rows in vocabulary order). The stored table is what
``encode`` uses, so a saved encoder reproduces its vectors on any platform.
"""

from __future__ import annotations

import math
import os
import re
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ._core import CheckpointError, MVS2VError, save_safetensors_atomic
from .markers import TEXT_FORMAT, TEXT_MARKER, has_marker, read_marker, write_marker
from .world import vocabulary as grammar_vocabulary

__all__ = ["ToyTextEncoder", "save_toy_text_encoder", "load_toy_text_encoder", "is_toy_text_encoder", "position_code",
           "word_vector",
           "TEXT_MARKER", "TEXT_FORMAT", "EOS", "UNK", "tokenize"]

TEXT_WEIGHTS = "embeddings.safetensors"
TEXT_VERSION = 1
EOS = "</s>"
UNK = "<unk>"
_WORD = re.compile(r"[a-z0-9]+")


def tokenize(prompt: str) -> list[str]:
    """Lower-case words (runs of ``a-z0-9``) of a prompt, without the end-of-sequence token."""
    return _WORD.findall(prompt.lower())


def word_vector(word: str, dim: int, seed: int) -> np.ndarray:
    """The fixed unit vector ``[dim]`` (float32) of ``word`` for ``seed``."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(word.encode("utf-8"))])
    v = rng.standard_normal(int(dim))
    return (v / np.linalg.norm(v)).astype(np.float32)


def position_code(length: int, dim: int) -> torch.Tensor:
    """Unit-norm sinusoidal position codes ``[length, dim]`` (Transformer style, base 10000)."""
    pos = torch.arange(length, dtype=torch.float64)[:, None]
    i = torch.arange(dim, dtype=torch.float64)[None, :]
    angle = pos / torch.pow(10000.0, (2 * torch.div(i, 2, rounding_mode="floor")) / dim)
    code = torch.where(i % 2 == 0, torch.sin(angle), torch.cos(angle))
    return (code / code.norm(dim=1, keepdim=True).clamp_min(1e-12)).float()


class ToyTextEncoder:
    """Fixed word embeddings plus a position code, behind ``TextEncoder``'s interface.

    Args:
        vocabulary: the words (``</s>`` and ``<unk>`` are added); default the caption grammar's.
        dim: embedding width ``D``.
        seed: seeds the word vectors (ignored when ``embeddings`` is given).
        position_scale: weight of the position code relative to the unit word vectors.
        unknown: ``"error"`` or ``"unk"`` (see the module docstring).
        embeddings: a stored table ``[V, dim]`` in vocabulary order (as :func:`load_toy_text_encoder` passes).
        device, dtype: where ``encode`` returns its tensors and in which precision.
        source: where the encoder came from (for messages), or None.
    """

    def __init__(self, vocabulary: Sequence[str] | None = None, dim: int = 32, seed: int = 0,
                 position_scale: float = 0.5, unknown: str = "error", embeddings: torch.Tensor | None = None,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 source: str | None = None) -> None:
        if int(dim) < 2:
            raise MVS2VError(f"toy text encoder width must be at least 2, got {dim}")
        if unknown not in ("error", "unk"):
            raise MVS2VError(f"unknown={unknown!r}: use 'error' (refuse unknown words) or 'unk' (map them to {UNK})")
        if not math.isfinite(float(position_scale)) or float(position_scale) < 0:
            raise MVS2VError(f"position_scale must be a finite number >= 0, got {position_scale}")
        words = list(grammar_vocabulary() if vocabulary is None else vocabulary)
        bad = [w for w in words if w not in (EOS, UNK) and _WORD.fullmatch(w) is None]
        if bad:
            raise MVS2VError(f"vocabulary words must be lower-case letters/digits only, got {bad[:5]}")
        words = [w for w in dict.fromkeys(words) if w not in (EOS, UNK)] + [EOS, UNK]
        self.vocabulary: list[str] = words
        self.index: dict[str, int] = {w: i for i, w in enumerate(words)}
        self.seed = int(seed)
        self.position_scale = float(position_scale)
        self.unknown = unknown
        if embeddings is None:
            table = torch.from_numpy(np.stack([word_vector(w, int(dim), self.seed) for w in words]))
        else:
            table = torch.as_tensor(embeddings, dtype=torch.float32)
            if table.shape != (len(words), int(dim)):
                raise MVS2VError(f"embedding table shape {tuple(table.shape)} does not match the vocabulary "
                                 f"({len(words)} words with {EOS}/{UNK}) and width {dim}")
        self.embeddings = table.float().contiguous()
        self._device = torch.device(device)
        self._dtype = dtype
        self.source = source

    @property
    def dim(self) -> int:
        """Embedding width ``D``."""
        return int(self.embeddings.shape[1])

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return self._device

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> "ToyTextEncoder":
        """Change where / in which precision ``encode`` returns tensors (in place); returns ``self``."""
        if device is not None:
            self._device = torch.device(device)
        if dtype is not None:
            self._dtype = dtype
        return self

    def token_ids(self, prompt: str, max_length: int = 512) -> list[int]:
        """Vocabulary indices of a prompt's words plus ``</s>``, at most ``max_length`` (``</s>`` kept)."""
        ids = []
        for w in tokenize(prompt):
            if w in self.index:
                ids.append(self.index[w])
            elif self.unknown == "unk":
                ids.append(self.index[UNK])
            else:
                known = ", ".join(w for w in self.vocabulary if w not in (EOS, UNK))
                raise MVS2VError(f"the word {w!r} in the prompt {prompt!r} is not in the toy text encoder's "
                                 f"vocabulary; use only these words: {known} (or build the encoder with "
                                 "unknown='unk')")
        return ids[: int(max_length) - 1] + [self.index[EOS]]

    def encode(self, prompts: str | Sequence[str], max_length: int = 512) -> list[torch.Tensor]:
        """Encode prompts, each trimmed to its real token count.

        Args:
            prompts: one prompt or a list of prompts (the empty prompt is the single ``</s>`` token).
            max_length: longer prompts keep their first ``max_length - 1`` words and ``</s>``.

        Returns:
            A list with one tensor ``[L_i, D]`` per prompt, in :attr:`dtype`, on :attr:`device`.
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        if not isinstance(prompts, (list, tuple)) or not all(isinstance(p, str) for p in prompts):
            raise MVS2VError("ToyTextEncoder.encode expects a prompt string or a list of prompt strings.")
        if int(max_length) < 1:
            raise MVS2VError(f"max_length must be at least 1, got {max_length}.")
        out = []
        for p in prompts:
            ids = torch.tensor(self.token_ids(p, max_length), dtype=torch.long)
            e = self.embeddings[ids] + self.position_scale * position_code(len(ids), self.dim)
            out.append(e.to(device=self.device, dtype=self.dtype))
        return out

    def __repr__(self) -> str:
        return (f"ToyTextEncoder(words={len(self.vocabulary)}, dim={self.dim}, unknown={self.unknown!r}, "
                f"dtype={self.dtype}, device={self.device}, source={self.source!r})")


def is_toy_text_encoder(path: str | os.PathLike) -> bool:
    """True when ``path`` is a toy text-encoder folder (it holds ``toy_text_encoder.json``) or that file."""
    return has_marker(path, TEXT_MARKER)


def save_toy_text_encoder(encoder: ToyTextEncoder, folder: str | os.PathLike) -> Path:
    """Write ``encoder`` as a folder (``toy_text_encoder.json`` + ``embeddings.safetensors``)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    save_safetensors_atomic({"embeddings": encoder.embeddings}, out / TEXT_WEIGHTS, {"format": TEXT_FORMAT})
    meta = {"format": TEXT_FORMAT, "version": TEXT_VERSION, "dim": encoder.dim, "seed": encoder.seed,
            "position_scale": encoder.position_scale, "unknown": encoder.unknown,
            "vocabulary": encoder.vocabulary}
    return write_marker(out, TEXT_MARKER, meta, "text_encoder")


def load_toy_text_encoder(path: str | os.PathLike, device: str | torch.device = "cpu",
                          dtype: torch.dtype = torch.float32) -> ToyTextEncoder:
    """Load an encoder written by :func:`save_toy_text_encoder` (the folder or its marker file)."""
    folder, meta = read_marker(path, TEXT_MARKER, TEXT_FORMAT, TEXT_VERSION, "toy text encoder",
                               "mvs2v_toy.text.save_toy_text_encoder(ToyTextEncoder(), folder)")
    marker = folder / TEXT_MARKER
    weights = folder / TEXT_WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"toy text encoder '{folder}' has no {TEXT_WEIGHTS}; write it again")
    try:
        from safetensors.torch import load_file

        table = load_file(str(weights), device="cpu")["embeddings"]
    except KeyError:
        raise CheckpointError(f"'{weights}' has no 'embeddings' tensor; write the encoder again") from None
    except Exception as exc:
        raise CheckpointError(f"cannot read '{weights}' as safetensors ({exc})") from None
    try:
        vocab = list(meta["vocabulary"])
        return ToyTextEncoder(vocab, int(meta["dim"]), int(meta.get("seed", 0)), float(meta["position_scale"]),
                              str(meta.get("unknown", "error")), embeddings=table, device=device, dtype=dtype,
                              source=str(folder))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"'{marker}' is malformed ({exc!r}); write the encoder again") from None
