"""The caption stage: a given caption, a local VLM's caption (a tiny random LLaVA made here), or the prompt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from data_helpers import write_clip, write_items, write_tiny_vlm

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

WORDS = {"a", "red", "cube", "turns", "describe", ".", "USER:", "ASSISTANT:"}


@pytest.fixture(scope="module")
def vlm(tmp_path_factory) -> Path:
    return write_tiny_vlm(tmp_path_factory.mktemp("tiny_llava"))


def setup(tmp: Path, model: str) -> Path:
    clip = write_clip(np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3)), tmp / "clip.mp4")
    write_items(tmp / "items.jsonl", [{"id": "given", "video": clip, "caption": "a given caption", "kind": "object"},
                                      {"id": "vlm", "video": clip, "prompt": "the prompt", "kind": "object"}])
    cfg = tmp / "data.toml"
    cfg.write_text(f'[work]\ninputs = "items.jsonl"\n[caption]\nmodel = "{model}"\nprompt = "describe ."\nframes = 3\n')
    return cfg


def caption_of(tmp: Path, item: str) -> tuple[str, dict]:
    rec = json.loads((tmp / "work" / "items" / f"{item}.json").read_text())
    return rec["caption"], rec["stages"]["caption"]


def test_a_local_vlm_captions_items_without_a_caption(tmp_path: Path, vlm: Path, data_cli) -> None:
    rc, out, err = data_cli("caption", "--config", setup(tmp_path, str(vlm)))
    assert rc == 0, err
    assert caption_of(tmp_path, "given") == ("a given caption", {"state": "skipped", "reason": "caption given"})
    text, state = caption_of(tmp_path, "vlm")
    assert state == {"state": "done", "reason": None} and text and set(text.split()) <= WORDS
    again = tmp_path / "again"
    again.mkdir()
    assert data_cli("caption", "--config", setup(again, str(vlm)))[0] == 0
    assert caption_of(again, "vlm")[0] == text  # greedy decoding: the same caption on every run


def test_without_a_model_the_prompt_is_the_caption_and_a_bad_model_is_one_line(tmp_path: Path, data_cli) -> None:
    assert data_cli("caption", "--config", setup(tmp_path, ""))[0] == 0
    assert caption_of(tmp_path, "vlm") == ("the prompt", {"state": "done", "reason": None})
    other = tmp_path / "other"
    other.mkdir()
    (other / "not_a_model").mkdir()
    rc, _, err = data_cli("caption", "--config", setup(other, str(other / "not_a_model")))
    assert rc == 2 and err.count("\n") == 1 and "is not a transformers model folder (no config.json)" in err
    assert json.loads((other / "work" / "items" / "vlm.json").read_text())["stages"] == {}
