"""What the DiT needs to add reference tokens: latents per slot, the layout, the scheme, proxies.

Reference latents never enter the noisy sample ``x``: they are a separate input that the DiT
patch-embeds and appends after the video tokens, so they stay clean at every sampling step and
the model output covers the video frames only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import MVS2VError
from .layout import ReferenceLayout
from .settings import ReferenceSettings
from .tokens import check_proxy_tokens, check_sample_layouts


@dataclass
class ReferenceConditioning:
    """Reference input of one DiT forward.

    Attributes:
        latents: ``[B, C, S, H, W]``, one clean latent frame per slot (``S = layout.num_slots``,
            token order). Empty slots' frames are ignored under ``proxy`` / ``drop``; under ``gray``
            the caller puts the latent of a mid-gray image there.
        layout: which slots are filled.
        settings: slots per subject, position scheme, empty-slot mode, reference timestep.
        proxy_tokens: ``[K, dim]`` learnable vectors (K = slots per subject), needed under ``proxy``
            when a slot is empty; broadcast over the slot's token grid after patch embedding.
        sample_layouts: one layout per sample when the samples of the batch fill different slots
            (``proxy`` / ``gray`` only: positions and token counts never depend on which slots are
            filled, so only the proxy fill differs); None when ``layout`` holds for every sample.
        reference_frames: place the references as if the video had this many latent frames (>= the
            call's own): every window of a long video passes the window length, so all windows see
            the references at the same positions; None: after the call's own frames.
    """

    latents: torch.Tensor
    layout: ReferenceLayout
    settings: ReferenceSettings
    proxy_tokens: torch.Tensor | None = None
    sample_layouts: tuple[ReferenceLayout, ...] | None = None
    reference_frames: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.settings, ReferenceSettings):
            raise MVS2VError(f"reference settings must be a ReferenceSettings, got {type(self.settings).__name__}")
        if self.latents.ndim != 5:
            raise MVS2VError(
                f"reference latents must be [batch, channels, slots, height, width], got shape {tuple(self.latents.shape)}"
            )
        if self.latents.shape[2] != self.layout.num_slots:
            raise MVS2VError(
                f"reference latents have {self.latents.shape[2]} slot frames but the layout has "
                f"{self.layout.num_slots} slots ({self.layout.num_subjects} subjects x "
                f"{self.layout.slots_per_subject}); give one latent frame per slot, empty ones included"
            )
        check_proxy_tokens(self.layout, self.settings, self.proxy_tokens, "load an adapter that has them")
        rf = self.reference_frames
        if rf is not None and (isinstance(rf, bool) or not isinstance(rf, int) or rf < 1):
            raise MVS2VError(f"reference_frames must be None or an integer >= 1 (latent frames), got {rf!r}")
        if self.sample_layouts is not None:
            self.sample_layouts = tuple(self.sample_layouts)
            if len(self.sample_layouts) != self.latents.shape[0]:
                raise MVS2VError(f"{len(self.sample_layouts)} per-sample layouts for a batch of {self.latents.shape[0]}: "
                                 "give one layout per sample")
            check_sample_layouts(self.layout, self.sample_layouts, self.settings)
            for lay in self.sample_layouts:
                check_proxy_tokens(lay, self.settings, self.proxy_tokens, "load an adapter that has them")

    def with_latents(self, latents: torch.Tensor) -> "ReferenceConditioning":
        """The same conditioning with other latents (e.g. zeros for the no-reference guidance pass)."""
        return ReferenceConditioning(latents, self.layout, self.settings, self.proxy_tokens, self.sample_layouts,
                                     self.reference_frames)
