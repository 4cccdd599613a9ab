"""The table of named weights ``mvs2v models`` can fetch: repository, file(s), revision, sha256,
target folder and licence of each.

Folders are ComfyUI's ``models/`` subfolders (``folder_paths.py``: ``diffusion_models``, ``vae``,
``text_encoders``, ``clip_vision``), so one layout serves ComfyUI (``--comfyui-dir``) and the local
cache of the CLI, evaluation and data pipeline (``--dir``). Models ComfyUI has no folder for get one
it ignores: ``transformers/`` (transformers / diffusers folders for the CLI and evaluation) and
``insightface/models/`` (the layout InsightFace-based node packs read).

Pins: a sha256 is given only where it was read from the repository's own file page or LFS pointer
(``source``); everything else is ``None`` ("unpinned"): the command says so, and records the sha256
it computed in the lock file (``mvs2v-models.lock.json``), against which later runs check. A pinned
revision is a full commit id read from the repository's commit page; otherwise ``main``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from ..errors import MVS2VError

UNPINNED = "unpinned"


@dataclass(frozen=True)
class Preset:
    """One named download.

    Either ``file`` (one file of the repository, saved as ``<folder>/<its base name>``) or
    ``patterns`` (``snapshot_download`` allow-patterns: the matching files, with their paths in the
    repository, saved under ``<folder>/<name>/``).
    """

    name: str
    description: str
    repo: str
    folder: str
    licence: str
    file: str | None = None
    patterns: tuple[str, ...] = ()
    revision: str = "main"
    sha256: tuple[tuple[str, str], ...] = ()  # (path in the repository, pinned sha256)
    size: str = ""  # approximate, for --list
    source: str = ""  # where the pins were read

    def __post_init__(self) -> None:
        if (self.file is None) == (not self.patterns):
            raise ValueError(f"preset {self.name}: give exactly one of file / patterns")

    @property
    def is_folder(self) -> bool:
        return self.file is None

    @property
    def target(self) -> str:
        """Where it goes, relative to the models root (``models/`` of ComfyUI, or ``--dir``)."""
        if self.file is not None:
            return f"{self.folder}/{self.file.rsplit('/', 1)[-1]}"
        return f"{self.folder}/{self.name}"

    def pinned(self, path: str) -> str | None:
        """The pinned sha256 of ``path`` (a path in the repository), or None."""
        return dict(self.sha256).get(path)

    @property
    def pin_state(self) -> str:
        if not self.sha256:
            return UNPINNED
        return "pinned" if self.file is not None else f"{len(self.sha256)} pinned"


_WAN21 = "Comfy-Org/Wan_2.1_ComfyUI_repackaged"
_WAN22 = "Comfy-Org/Wan_2.2_ComfyUI_Repackaged"
_WAN21_COMMIT = "dfcea77bcf258496e20c69cd84e8e8e41909bb3b"  # "Wan 2.1 t2v 1.3B": adds the bf16 DiT, umT5, VAE
_WAN = "Apache-2.0 (Wan)"
_SRC21 = f"LFS pointers of https://huggingface.co/{_WAN21}/commit/{_WAN21_COMMIT}"

PRESETS: tuple[Preset, ...] = (
    # ---- DiTs (ComfyUI single files) --------------------------------------------------------------
    Preset("wan2.1-t2v-1.3b", "Wan 2.1 T2V 1.3B DiT, fp16", _WAN21, "diffusion_models", _WAN,
           file="split_files/diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors", size="2.8 GB",
           sha256=(("split_files/diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors",
                    "be531024cd9018cb5b48c40cfbb6a6191645b1c792eb8bf4f8c1c6e10f924dc5"),),
           source=f"https://huggingface.co/{_WAN21}/blob/main/split_files/diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors"),
    Preset("wan2.1-t2v-1.3b-bf16", "Wan 2.1 T2V 1.3B DiT, bf16", _WAN21, "diffusion_models", _WAN,
           file="split_files/diffusion_models/wan2.1_t2v_1.3B_bf16.safetensors", size="2.8 GB",
           revision=_WAN21_COMMIT, source=_SRC21,
           sha256=(("split_files/diffusion_models/wan2.1_t2v_1.3B_bf16.safetensors",
                    "6f999b0d6cb9a72b3d98ac386ed96f57f8cecae13994a69232514ea4974ad5fd"),)),
    Preset("wan2.1-t2v-14b-fp8", "Wan 2.1 T2V 14B DiT, fp8 e4m3fn", _WAN21, "diffusion_models", _WAN,
           file="split_files/diffusion_models/wan2.1_t2v_14B_fp8_e4m3fn.safetensors", size="14.3 GB"),
    Preset("wan2.2-ti2v-5b", "Wan 2.2 TI2V 5B DiT, fp16 (needs the wan2.2 VAE)", _WAN22, "diffusion_models", _WAN,
           file="split_files/diffusion_models/wan2.2_ti2v_5B_fp16.safetensors", size="10 GB",
           sha256=(("split_files/diffusion_models/wan2.2_ti2v_5B_fp16.safetensors",
                    "456f901338bd9eadbded3828b819109a9b68e8a525ca5cf8d0049a69fcfeca1e"),),
           source="https://huggingface.co/Comfy-Org/Wan-2.2/blob/main/split_files/diffusion_models/wan2.2_ti2v_5B_fp16.safetensors "
                  "(the same repository, renamed)"),
    Preset("wan2.2-t2v-a14b-high", "Wan 2.2 T2V A14B high-noise expert, fp8 scaled", _WAN22, "diffusion_models", _WAN,
           file="split_files/diffusion_models/wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors", size="14.3 GB"),
    Preset("wan2.2-t2v-a14b-low", "Wan 2.2 T2V A14B low-noise expert, fp8 scaled", _WAN22, "diffusion_models", _WAN,
           file="split_files/diffusion_models/wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors", size="14.3 GB"),
    Preset("phantom-wan-1.3b", "Phantom-Wan 1.3B DiT, fp16 (safetensors conversion by Kijai)", "Kijai/WanVideo_comfy",
           "diffusion_models", "Apache-2.0 (Phantom-Wan)", file="Phantom-Wan-1_3B_fp16.safetensors", size="2.9 GB"),
    Preset("phantom-wan-14b", "Phantom-Wan 14B DiT, fp16 (safetensors conversion by Kijai)", "Kijai/WanVideo_comfy",
           "diffusion_models", "Apache-2.0 (Phantom-Wan)", file="Phantom-Wan-14B_fp16.safetensors", size="28 GB"),
    # ---- VAEs -------------------------------------------------------------------------------------------
    Preset("wan2.1-vae", "Wan 2.1 VAE (Wan 2.1, Phantom, Wan 2.2 A14B)", _WAN21, "vae", _WAN,
           file="split_files/vae/wan_2.1_vae.safetensors", size="254 MB", revision=_WAN21_COMMIT),
    Preset("wan2.2-vae", "Wan 2.2 VAE (Wan 2.2 TI2V 5B)", _WAN22, "vae", _WAN,
           file="split_files/vae/wan2.2_vae.safetensors", size="1.4 GB",
           sha256=(("split_files/vae/wan2.2_vae.safetensors",
                    "e40321bd36b9709991dae2530eb4ac303dd168276980d3e9bc4b6e2b75fed156"),),
           source="https://huggingface.co/Comfy-Org/Wan-2.2/blob/main/split_files/vae/wan2.2_vae.safetensors"),
    # ---- umT5 -------------------------------------------------------------------------------------------
    Preset("umt5-xxl-fp8", "umT5-XXL text encoder, fp8 scaled (ComfyUI)", _WAN21, "text_encoders", "Apache-2.0 (umT5)",
           file="split_files/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors", size="6.7 GB",
           revision=_WAN21_COMMIT, source=_SRC21,
           sha256=(("split_files/text_encoders/umt5_xxl_fp8_e4m3fn_scaled.safetensors",
                    "c3355d30191f1f066b26d93fba017ae9809dce6c627dda5f6a66eaa651204f68"),)),
    Preset("umt5-xxl-fp16", "umT5-XXL text encoder, fp16 (ComfyUI)", _WAN21, "text_encoders", "Apache-2.0 (umT5)",
           file="split_files/text_encoders/umt5_xxl_fp16.safetensors", size="11.4 GB",
           revision=_WAN21_COMMIT, source=_SRC21,
           sha256=(("split_files/text_encoders/umt5_xxl_fp16.safetensors",
                    "7b8850f1961e1cf8a77cca4c964a358d303f490833c6c087d0cff4b2f99db2af"),)),
    Preset("umt5-xxl", "umT5-XXL encoder + tokenizer as a transformers folder (mvs2v generate --text-encoder)",
           "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "transformers", "Apache-2.0 (Wan, umT5)",
           patterns=("text_encoder/*", "tokenizer/*"), size=">11 GB"),
    # ---- vision encoders ----------------------------------------------------------------------------
    Preset("clip-vision-h", "CLIP ViT-H/14 vision tower for MFI (ComfyUI Load CLIP Vision)", _WAN21, "clip_vision",
           "MIT (OpenCLIP ViT-H/14 LAION-2B)", file="split_files/clip_vision/clip_vision_h.safetensors", size="1.3 GB"),
    Preset("clip-vit-h-14", "CLIP ViT-H/14 as a transformers folder (mvs2v generate / train --vision-encoder)",
           "laion/CLIP-ViT-H-14-laion2B-s32B-b79K", "transformers", "MIT (OpenCLIP ViT-H/14 LAION-2B)",
           patterns=("config.json", "model.safetensors", "preprocessor_config.json"), size="3.9 GB"),
    # ---- evaluation -----------------------------------------------------------------------------------
    Preset("dinov2-base", "DINOv2 ViT-B/14 (evaluation features)", "facebook/dinov2-base", "transformers", "Apache-2.0",
           patterns=("config.json", "model.safetensors", "preprocessor_config.json"), size="350 MB"),
    Preset("clip-vit-large-patch14", "CLIP ViT-L/14 (evaluation features, CLIP scores)", "openai/clip-vit-large-patch14",
           "transformers", "MIT (OpenAI CLIP)",
           patterns=("config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json",
                     "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json"), size="1.7 GB"),
    Preset("antelopev2", "InsightFace antelopev2 pack: SCRFD detector, ArcFace glintr100, landmarks (face metrics)",
           "DIAMONIK7777/antelopev2", "insightface/models",
           "InsightFace models: non-commercial research use only",
           patterns=("1k3d68.onnx", "2d106det.onnx", "genderage.onnx", "glintr100.onnx", "scrfd_10g_bnkps.onnx"),
           size="360 MB"),
)


def preset_names() -> list[str]:
    return [p.name for p in PRESETS]


def find_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name is one line with the nearest names."""
    for preset in PRESETS:
        if preset.name == name.strip().lower():
            return preset
    close = difflib.get_close_matches(name.strip().lower(), preset_names(), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise MVS2VError(f"no preset named {name!r}: {hint}'mvs2v models --list' shows them all")
