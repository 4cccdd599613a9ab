"""What the ablation compares: the tiny DiT, the arms (one change each to the base) and the settings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from mvs2v_core.errors import MVS2VError

# The tiny DiT: width 256 with two 128-wide heads (ComfyUI infers heads = width // 128), 4 blocks,
# 48 latent channels (the toy codec), 32-wide text (the toy text encoder), captions padded to 32
# tokens (the longest toy caption has 24). About 3.9 M parameters: 7.7 MB in bf16.
TOY_DIT = dict(dim=256, ffn_dim=512, num_heads=2, num_layers=4, in_dim=48, out_dim=48, text_dim=32,
               text_len=32, family="mvs2v-toy")


@dataclass(frozen=True)
class AblationConfig:
    """One ablation arm: what it changes relative to the base (TS-RoPE, proxy, multi-view, no MFI)."""

    name: str
    scheme: str = "ts"
    empty_slot_mode: str = "proxy"
    multi_view: bool = True
    mfi: bool = False
    change: str = "base: TS-RoPE, proxy empty slots, multi-view, no MFI"


CONFIGS: dict[str, AblationConfig] = {c.name: c for c in (
    AblationConfig("base"),
    AblationConfig("vanilla", scheme="vanilla", change="position scheme vanilla (Phantom: slots follow the video)"),
    AblationConfig("ss", scheme="ss", change="position scheme SS-RoPE (spatial shift)"),
    AblationConfig("jump", scheme="jump", change="position scheme Jump-RoPE (HarmoView)"),
    AblationConfig("gray", empty_slot_mode="gray", change="empty slots = mid-gray latent"),
    AblationConfig("drop", empty_slot_mode="drop", change="empty slots dropped"),
    AblationConfig("single", multi_view=False, change="single view: trained and evaluated with the front view only"),
    AblationConfig("mfi", mfi=True, change="with MFI (frontal-view patch features after the text)"),
)}


def parse_run_name(name: str, option: str = "--bundle-run") -> tuple[AblationConfig, int]:
    """``"base-s0"`` -> (the ``base`` arm, seed 0); ``option`` names the flag in the error."""
    config, _, seed = name.rpartition("-s")
    if config not in CONFIGS or not seed.isdigit():
        raise MVS2VError(f"{option} {name!r} must look like CONFIG-sSEED, e.g. base-s0")
    return CONFIGS[config], int(seed)


@dataclass(frozen=True)
class AblationSettings:
    """Everything that changes the numbers (stored in ``settings.json``)."""

    samples: int = 6000
    data_seed: int = 0
    size: int = 32
    frames: int = 9
    two_object_prob: float = 0.3
    val_fraction: float = 0.05
    batch_size: int = 8
    pretrain_steps: int = 6000
    pretrain_lr: float = 2e-3
    finetune_steps: int = 300
    finetune_lr: float = 5e-4
    timestep_shift: float = 3.0
    eval_samples: int = 24
    eval_views: tuple[str, ...] = ("front", "left", "back")
    sample_steps: int = 20
    sample_shift: float = 3.0
    solver: str = "unipc"
    ref_scale: float = 2.0
    text_scale: float = 3.0
    eval_seed: int = 0

    def to_json(self) -> dict:
        d = asdict(self)
        d["eval_views"] = list(self.eval_views)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "AblationSettings":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise MVS2VError(f"settings.json has unknown keys {unknown}: it was written by another mvs2v version")
        d = dict(d)
        if "eval_views" in d:
            d["eval_views"] = tuple(d["eval_views"])
        return cls(**d)

    def views_of(self, arm: AblationConfig) -> tuple[str, ...]:
        """The reference views a run of ``arm`` is given: the evaluation views, or the front one alone."""
        return self.eval_views if arm.multi_view else ("front",)
