"""Tiny RANDOM models for the quick-start and the tests.

These writers build miniature versions of the Wan VAE and the umT5 text encoder with random
weights, deterministically from a seed, and save them in the same formats the real models use
(diffusers folder for the VAE; ``text_encoder/`` + ``tokenizer/`` for the text encoder). They
exist so the whole pipeline can run end to end on a laptop CPU in seconds, without any download.

THE MODELS ARE RANDOM: a video generated with them is noise. They test plumbing, not quality.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["make_tiny_vae", "make_tiny_vae_config", "make_tiny_text_encoder", "TINY_WORDS"]

# A small fixed vocabulary for the tiny word-level tokenizer (anything else maps to <unk>).
TINY_WORDS = sorted(set("""
a an the and or of in on at to with from by for is are was be this that it its his her their
man woman person girl boy child dog cat bird horse car bike robot toy doll bag shoe hat cup
red green blue yellow black white gray grey orange pink purple brown gold silver
walks runs sits stands jumps dances plays holds looks turns smiles waves rides drives flies
street park beach room kitchen garden forest city road field table chair window sky water
slowly quickly camera view front back side left right close up shot scene video photo
bright dark sunny rainy night day light shadow background foreground high quality detailed
blurry static low worst ugly deformed extra fingers still picture overall gray
""".split()))


def make_tiny_vae_config(seed: int = 0, variant: str = "wan2.1") -> dict[str, Any]:
    """The ``AutoencoderKLWan`` config of the tiny VAE.

    ``variant="wan2.1"`` keeps the exact Wan 2.1 block structure (4 levels, 2 residual blocks,
    8x spatial / 4x temporal, causal 3-D convs) at widths 8..32 with 4 latent channels;
    ``variant="wan2.2"`` mirrors the Wan 2.2 VAE (residual up/down blocks, 2x2 patchify, 16x
    spatial) at widths 8..48 with 4 latent channels. ``latents_mean``/``latents_std`` are drawn
    from ``seed`` so that normalization is not the identity.
    """
    g = torch.Generator().manual_seed(int(seed) + 1)
    z_dim = 4
    mean = [round(float(v), 4) for v in (torch.rand(z_dim, generator=g) - 0.5)]
    std = [round(float(v), 4) for v in (torch.rand(z_dim, generator=g) * 1.5 + 0.5)]
    common = dict(z_dim=z_dim, dim_mult=[1, 2, 4, 4], attn_scales=[],
                  temperal_downsample=[False, True, True], latents_mean=mean, latents_std=std,
                  scale_factor_temporal=4)
    if variant == "wan2.1":
        return dict(common, base_dim=8, num_res_blocks=2, is_residual=False, in_channels=3,
                    out_channels=3, patch_size=None, scale_factor_spatial=8)
    if variant == "wan2.2":
        return dict(common, base_dim=8, decoder_base_dim=12, num_res_blocks=1, is_residual=True,
                    in_channels=12, out_channels=12, patch_size=2, scale_factor_spatial=16)
    raise ValueError(f"variant must be 'wan2.1' or 'wan2.2', got {variant!r}")


def make_tiny_vae(out_dir: str | os.PathLike, seed: int = 0, variant: str = "wan2.1") -> Path:
    """Write a tiny random ``AutoencoderKLWan`` as a diffusers folder and return its path.

    The folder holds ``config.json`` + ``diffusion_pytorch_model.safetensors`` and loads with
    :func:`mvs2v_core.pipeline.vae.load_vae`. Same ``seed`` and ``variant`` give the same weights.
    """
    from diffusers import AutoencoderKLWan

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = make_tiny_vae_config(seed, variant)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = AutoencoderKLWan(**cfg)
        # Default init leaves some output projections at zero; give every tensor random values
        # so that a key mix-up in a conversion changes the outputs.
        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("gamma"):
                    p.copy_(1.0 + 0.1 * torch.randn_like(p))
                elif p.ndim == 1:
                    p.copy_(0.02 * torch.randn_like(p))
                else:
                    fan_in = max(1, p[0].numel())
                    p.copy_(torch.randn_like(p) / fan_in ** 0.5)
    model.save_pretrained(str(out), safe_serialization=True)
    return out


def _build_tiny_tokenizer() -> Any:
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in TINY_WORDS:
        vocab.setdefault(w, len(vocab))
    for p in ",.!?;:'\"-()":
        vocab.setdefault(p, len(vocab))
    tok = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>", model_max_length=512, padding_side="right")


def make_tiny_text_encoder(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Write a tiny random umT5 encoder and its tokenizer in diffusers pipeline layout.

    Creates ``out_dir/text_encoder`` (``config.json`` + ``model.safetensors``; d_model 32, 2
    layers, vocabulary 320) and ``out_dir/tokenizer`` (a word-level tokenizer over
    :data:`TINY_WORDS` that appends ``</s>`` like T5's). Returns the ``text_encoder`` folder, which
    :func:`mvs2v_core.pipeline.text.load_text_encoder` accepts (as does ``out_dir`` itself).
    """
    from transformers import UMT5Config, UMT5EncoderModel

    out = Path(out_dir)
    enc_dir, tok_dir = out / "text_encoder", out / "tokenizer"
    enc_dir.mkdir(parents=True, exist_ok=True)
    tok_dir.mkdir(parents=True, exist_ok=True)
    config = UMT5Config(
        vocab_size=320, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
        relative_attention_num_buckets=8, relative_attention_max_distance=32, dropout_rate=0.0,
        feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = UMT5EncoderModel(config)
        with torch.no_grad():
            for p in model.parameters():
                if p.ndim == 1:
                    p.copy_(1.0 + 0.1 * torch.randn_like(p))
                else:
                    p.copy_(torch.randn_like(p) / max(1, p.shape[-1]) ** 0.5)
    model.eval()
    model.save_pretrained(str(enc_dir), safe_serialization=True)
    tokenizer = _build_tiny_tokenizer()
    tokenizer.save_pretrained(str(tok_dir))
    return enc_dir
