"""The trainable model: a frozen Wan DiT (+ LoRA or fully trainable), proxy tokens and the MFI projector.

:meth:`TrainableModel.forward` is one rectified-flow loss evaluation over a batch whose samples share
one reference layout. It conditions the DiT exactly as inference does -- a
:class:`~mvs2v_core.references.conditioning.ReferenceConditioning` with the configured position
scheme, empty-slot mode, proxy tokens and reference timestep, and MFI tokens appended to the text
context by :meth:`~mvs2v_core.references.mfi.MFIProjector.append` -- so what is trained is what
``mvs2v generate`` and the ComfyUI nodes run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from mvs2v_core.errors import MVS2VError
from mvs2v_core.model.config import WanConfig
from mvs2v_core.model.transformer import WanDiT
from mvs2v_core.references.conditioning import ReferenceConditioning
from mvs2v_core.references.layout import ReferenceLayout
from mvs2v_core.references.mfi import MFIProjector, ProxyTokens
from mvs2v_core.references.settings import EmptySlotMode, ReferenceSettings
from mvs2v_core.references.tokens import ReferenceTokenPlan

from .align import BlockOutput, ReferenceAlignment
from .config import TrainConfig
from .curriculum import derive_seed
from .lora import add_lora, lora_layers

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class TrainBatch:
    """Samples that share one reference layout and one latent shape.

    Attributes:
        x0: clean video latents ``[B, C, F, H, W]``.
        noise: ``[B, C, F, H, W]``.
        sigma: noise levels ``[B]`` in (0, 1].
        weight: per-sample loss weights ``[B]``.
        context: text embeddings ``[B, L, text_dim]`` (zero-padded).
        ref_latents: ``[B, C, S, H, W]`` one latent frame per slot (S = layout.num_slots), or None.
        layout: the shared :class:`ReferenceLayout`, or None for text-only samples.
        mfi_features: frontal-view ViT features ``[B, n_subjects, tokens, vit_dim]`` or None.
        sample_layouts: one layout per sample when the samples fill different slots (``proxy`` /
            ``gray``), else None (``layout`` holds for all).
        align_features: the alignment loss's targets, one image's vision features per slot
            ``[B, S, tokens, vit_dim]`` (zeros for empty slots), or None.
        align_filled: ``[B, S]`` bool, the slots that have a target (filled and not reference-dropped).
    """

    x0: torch.Tensor
    noise: torch.Tensor
    sigma: torch.Tensor
    weight: torch.Tensor
    context: torch.Tensor
    ref_latents: torch.Tensor | None = None
    layout: ReferenceLayout | None = None
    mfi_features: torch.Tensor | None = None
    sample_layouts: tuple[ReferenceLayout, ...] | None = None
    align_features: torch.Tensor | None = None
    align_filled: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return int(self.x0.shape[0])

    def to(self, device: torch.device) -> "TrainBatch":
        move = lambda t: None if t is None else t.to(device, non_blocking=True)
        return TrainBatch(move(self.x0), move(self.noise), move(self.sigma), move(self.weight), move(self.context),
                          move(self.ref_latents), self.layout, move(self.mfi_features), self.sample_layouts,
                          move(self.align_features), move(self.align_filled))


class TrainableModel(nn.Module):
    """DiT + optional proxy tokens + optional MFI projector; ``forward(batch)`` returns the summed loss.

    Args:
        dit: the Wan DiT (frozen except the LoRA layers, or fully trainable).
        references: the reference settings (as at inference).
        proxy: :class:`ProxyTokens` (trained or loaded) or None.
        mfi: :class:`MFIProjector` or None.
        align: the reference alignment loss's projector (training only), or None.
        align_weight: that loss's weight.
    """

    def __init__(self, dit: WanDiT, references: ReferenceSettings, proxy: ProxyTokens | None = None,
                 mfi: MFIProjector | None = None, align: ReferenceAlignment | None = None,
                 align_weight: float = 0.0) -> None:
        super().__init__()
        self.dit = dit
        self.proxy = proxy
        self.mfi = mfi
        self.align = align
        self.align_weight = float(align_weight)
        self._align_hook = BlockOutput(dit.blocks[align.block]) if align is not None else None
        # The last forward's alignment loss for the logs: (unweighted sum, detached; samples with a target).
        self.last_align: tuple[torch.Tensor, int] | None = None
        self.references = references
        # DDP needs a gradient for every trainable tensor each step; FSDP does not (and shards them).
        self.touch_unused = True

    @property
    def config(self) -> WanConfig:
        return self.dit.config

    def proxy_tokens(self) -> torch.Tensor | None:
        return self.proxy.tokens if self.proxy is not None else None

    def conditioning(self, ref_latents: torch.Tensor, layout: ReferenceLayout,
                     sample_layouts: tuple[ReferenceLayout, ...] | None = None) -> ReferenceConditioning:
        """The same :class:`ReferenceConditioning` inference builds (see ``MVS2VPipeline._model_fn``)."""
        return ReferenceConditioning(ref_latents.to(self.dit.dtype), layout, self.references, self.proxy_tokens(),
                                     sample_layouts)

    def velocity(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor, ref_latents: torch.Tensor | None,
                 layout: ReferenceLayout | None, mfi_features: torch.Tensor | None,
                 sample_layouts: tuple[ReferenceLayout, ...] | None = None) -> torch.Tensor:
        """The DiT's velocity ``[B, C, F, H, W]`` for noisy latents ``x`` at timesteps ``t`` ``[B]`` (0..1000)."""
        if self.mfi is not None and mfi_features is not None:
            context = self.mfi.append(context.float(), mfi_features.float(), self.dit.config.text_len)
        refs = None
        if layout is not None and ref_latents is not None:
            refs = self.conditioning(ref_latents, layout, sample_layouts)
        dtype = self.dit.dtype
        return self.dit(x.to(dtype), t, context.to(dtype), refs=refs)

    def _touch_trainables(self) -> torch.Tensor:
        """0 * one element of every trainable tensor: DDP then sees a gradient for each of them even in a
        step where a part is unused (proxy tokens when every slot is filled), instead of failing."""
        zero = None
        for p in self.parameters():
            if p.requires_grad:
                term = p.reshape(-1)[0].float() * 0.0
                zero = term if zero is None else zero + term
        return zero if zero is not None else torch.zeros(())

    def forward(self, batch: TrainBatch | None, velocity: dict | None = None,
                mfi_append: tuple | None = None) -> torch.Tensor:
        """Sum over the batch of ``weight * mean((v_pred - (noise - x0))^2)``; 0 for ``None`` (a rank with
        no sample this step still joins the gradient all-reduce).

        For sampling through a sharding wrapper (FSDP), whose parameters are only whole inside the
        root module's forward: ``velocity`` returns ``dit(**velocity)`` with the live proxy tokens put
        into its reference conditioning, ``mfi_append`` returns ``mfi.append(*mfi_append)``.
        """
        if velocity is not None:
            refs = velocity.get("refs")
            if refs is not None and self.proxy is not None:
                velocity = {**velocity, "refs": dataclasses.replace(refs, proxy_tokens=self.proxy_tokens())}
            return self.dit(**velocity)
        if mfi_append is not None:
            return self.mfi.append(*mfi_append)  # type: ignore[union-attr]
        touch = self._touch_trainables() if self.touch_unused or batch is None else 0.0
        if batch is None:
            return touch  # type: ignore[return-value]
        sigma = batch.sigma.float()
        s = sigma.view(-1, 1, 1, 1, 1)
        x0, noise = batch.x0.float(), batch.noise.float()
        x_t = (1.0 - s) * x0 + s * noise
        aligned = self._align_hook is not None and batch.align_features is not None and batch.layout is not None
        with self._align_hook if aligned else contextlib.nullcontext():  # type: ignore[attr-defined]
            pred = self.velocity(x_t, sigma * 1000.0, batch.context, batch.ref_latents, batch.layout,
                                 batch.mfi_features, batch.sample_layouts)
        target = noise - x0
        per_sample = (pred.float() - target).pow(2).mean(dim=(1, 2, 3, 4))
        loss = (per_sample * batch.weight.float()).sum() + touch
        self.last_align = None
        if aligned:
            # A zero-weight batch (a process whose samples all failed) adds nothing.
            assert batch.align_filled is not None
            has_target = (batch.weight > 0) & batch.align_filled.any(dim=1).to(batch.weight.device)
            align = (self._alignment_loss(batch, tuple(x0.shape)) * has_target).sum()
            self.last_align = (align.detach(), int(has_target.sum()))
            loss = loss + self.align_weight * align
        return loss

    def _alignment_loss(self, batch: TrainBatch, shape: tuple[int, ...]) -> torch.Tensor:
        """Per-sample alignment loss ``[B]`` from the block output the hook kept in this forward."""
        assert self.align is not None and self._align_hook is not None and batch.layout is not None
        assert batch.align_features is not None and batch.align_filled is not None
        hidden = self._align_hook.output
        if hidden is None:
            raise MVS2VError(f"the alignment loss found no output of DiT block {self.align.block}")
        plan = ReferenceTokenPlan.build(self.dit.patch_grid(shape), batch.layout, self.references,
                                        batch.sample_layouts)
        return self.align.per_sample_loss(hidden, plan.num_video_tokens, plan.kept, (plan.grid[1], plan.grid[2]),
                                          batch.align_features, batch.align_filled)

    # ---- parameter groups ------------------------------------------------------------------------
    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.named_parameters() if p.requires_grad}

    def parameter_groups(self, cfg: TrainConfig) -> list[dict]:
        """AdamW groups (LoRA / full DiT, proxy, MFI) with their ``lr_scale``; no weight decay on proxies."""
        groups: dict[str, dict] = {}
        for name, p in self.trainable_parameters().items():
            if name.startswith("proxy."):
                key, scale, decay = "proxy", cfg.trainable.proxy_lr_scale, 0.0
            elif name.startswith("mfi."):
                key, scale, decay = "mfi", cfg.trainable.mfi_lr_scale, cfg.train.weight_decay
            elif name.startswith("align."):
                key, scale, decay = "align", 1.0, cfg.train.weight_decay
            else:
                key, scale, decay = "dit", 1.0, cfg.train.weight_decay
            g = groups.setdefault(key, {"name": key, "params": [], "param_names": [], "lr_scale": scale,
                                        "weight_decay": decay})
            g["params"].append(p)
            g["param_names"].append(name)
        return list(groups.values())


def vision_width(folder: Path) -> int:
    """Feature width of a local CLIP / SigLIP vision folder (from its config.json), or of a folder that
    declares another vision-encoder kind (loaded through the component registry: small by design)."""
    from mvs2v_core.pipeline.components import find_component

    kind = find_component(folder, "vision_encoder")
    if kind is not None:
        return int(kind.loader(folder, device="cpu", dtype=torch.float32).width)
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise MVS2VError(f"model.vision_encoder {folder} has no config.json: give the CLIP / SigLIP vision folder")
    d = json.loads(cfg_path.read_text())
    d = d.get("vision_config", d)
    if "hidden_size" not in d:
        raise MVS2VError(f"{cfg_path} has no hidden_size: is it a CLIP / SigLIP vision model?")
    return int(d["hidden_size"])


def build_model(cfg: TrainConfig, device: torch.device | str = "cpu") -> TrainableModel:
    """Load the base DiT and attach the trainable parts the config asks for (deterministic init)."""
    from mvs2v_core.adapter import apply_lora, load_adapter, lora_pairs, require_compatible
    from mvs2v_core.model.loading import load_dit

    if cfg.trainable.full and cfg.model.dtype != "fp32":
        raise MVS2VError("trainable.full needs model.dtype = \"fp32\" (float32 master weights); bf16 compute comes "
                         "from train.mixed_precision")
    dit = load_dit(cfg.resolve(cfg.model.dit), config=cfg.model.config or None, device=device,
                   dtype=DTYPES[cfg.model.dtype])
    dit.requires_grad_(False)
    dcfg = dit.config
    seed = cfg.train.seed
    refs = cfg.references.settings()
    adapter = None
    if cfg.model.init_adapter:
        adapter = load_adapter(cfg.resolve(cfg.model.init_adapter))
        require_compatible(adapter, dcfg, refs)
        if adapter.has_mfi and not cfg.model.vision_encoder:
            raise MVS2VError("model.init_adapter has an MFI projector: set model.vision_encoder to the vision "
                             "model it was trained with")
        if adapter.lora and not cfg.trainable.lora:
            # The adapter's LoRA becomes part of the frozen base; a new LoRA (if any) trains on top.
            apply_lora(dit, adapter.lora)

    if cfg.trainable.full:
        dit.requires_grad_(True)
        if dcfg.is_i2v:
            dit.img_emb.requires_grad_(False)  # no CLIP image features in subject-to-video training
    if cfg.trainable.lora:
        lc = cfg.lora
        add_lora(dit, list(lc.targets), lc.rank, lc.alpha, lc.dropout, seed=derive_seed(seed, "lora"))
        if adapter is not None and adapter.lora:
            from .lora import load_lora_triples

            load_lora_triples(dit, lora_pairs(adapter.lora))
    if cfg.train.gradient_checkpointing:
        dit.enable_gradient_checkpointing()

    proxy = None
    if refs.empty_slot_mode == EmptySlotMode.PROXY:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "proxy"))
            proxy = ProxyTokens(refs.slots_per_subject, dcfg.dim)
        if adapter is not None and adapter.proxy_tokens is not None:
            with torch.no_grad():
                proxy.tokens.copy_(adapter.proxy_tokens)
        proxy.tokens.requires_grad_(cfg.trainable.proxy)
        proxy.to(device)

    mfi = None
    if cfg.trainable.mfi or (adapter is not None and adapter.has_mfi):
        if adapter is not None and adapter.has_mfi:
            vit_dim = int(adapter.mfi_weight.shape[1])  # type: ignore[union-attr]
        else:
            vit_dim = vision_width(cfg.resolve(cfg.model.vision_encoder))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "mfi"))
            mfi = MFIProjector(vit_dim, dcfg.text_dim)
        if adapter is not None and adapter.has_mfi:
            with torch.no_grad():
                mfi.proj.weight.copy_(adapter.mfi_weight)
                mfi.proj.bias.copy_(adapter.mfi_bias)
        mfi.requires_grad_(cfg.trainable.mfi)
        mfi.to(device)

    align = _build_alignment(cfg, dcfg, seed, device)
    model = TrainableModel(dit, refs, proxy, mfi, align, cfg.align.weight)
    if not model.trainable_parameters():
        raise MVS2VError("nothing to train: the config's [trainable] parts are all off or absent")
    return model


def _build_alignment(cfg: TrainConfig, dcfg: WanConfig, seed: int,
                     device: torch.device | str) -> ReferenceAlignment | None:
    """The alignment loss's projector (``[align]``), or None when the loss is off."""
    if not cfg.align.enabled:
        return None
    block = cfg.align.block if cfg.align.block is not None else dcfg.num_layers // 3
    if block >= dcfg.num_layers:
        raise MVS2VError(f"align.block = {block} but the DiT has {dcfg.num_layers} blocks (0..{dcfg.num_layers - 1}): "
                         "give a block inside it, or leave align.block out for a third of the depth")
    feature_dim = vision_width(cfg.resolve(cfg.model.vision_encoder))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "align"))
        align = ReferenceAlignment(dcfg.dim, feature_dim, cfg.align.projector_dim, block)
    return align.to(device)


def has_lora(model: TrainableModel) -> bool:
    return bool(lora_layers(model.dit))


__all__ = ["TrainBatch", "TrainableModel", "build_model", "vision_width", "DTYPES", "has_lora"]
