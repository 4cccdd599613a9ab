"""Helpers of the mvs2v-data tests: items files and media written by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def write_items(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_png(image: np.ndarray, path: Path) -> str:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return str(path)


def write_clip(frames: np.ndarray, path: Path) -> str:
    from mvs2v_core.pipeline.video_io import write_lossless_mp4

    path.parent.mkdir(parents=True, exist_ok=True)
    write_lossless_mp4(np.asarray(frames, dtype=np.uint8), path, 8.0)
    return str(path)


def write_tiny_vlm(out: Path) -> Path:
    """A random LLaVA (CLIP tower width 16, Llama width 16) with a 13-word tokenizer and its processor, saved
    like a downloaded VLM folder (safetensors); it loads through AutoModelForImageTextToText / AutoProcessor."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor, PreTrainedTokenizerFast)

    words = ["<pad>", "<s>", "</s>", "<unk>", "<image>", "USER:", "ASSISTANT:", "a", "red", "cube", "turns",
             "describe", "."]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    template = ("{% for m in messages %}USER: {% for c in m['content'] %}{% if c['type'] == 'image' %}<image> "
                "{% else %}{{ c['text'] }} {% endif %}{% endfor %}{% endfor %}ASSISTANT:")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", extra_special_tokens={"image_token": "<image>"})
    processor = LlavaProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                  crop_size={"height": 32, "width": 32}),
                               tokenizer=fast, patch_size=16, vision_feature_select_strategy="default",
                               chat_template=template, num_additional_image_tokens=1)
    vision = CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                              image_size=32, patch_size=16)
    text = LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1,
                       eos_token_id=2, pad_token_id=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlavaForConditionalGeneration(LlavaConfig(vision_config=vision, text_config=text, image_token_index=4,
                                                          vision_feature_layer=-1))
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)
    return out
