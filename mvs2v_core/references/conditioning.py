"""What the DiT needs to add reference tokens: latents per slot, the layout, the scheme, proxies.

Reference latents never enter the noisy sample ``x``: they are a separate input that the DiT
patch-embeds and appends after the video tokens, so they stay clean at every sampling step and
the model output covers the video frames only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import MVS2VError
from .layout import ReferenceLayout, check_empty_slot_mode
from .positions import PositionScheme

REF_TIMESTEP_MODES = ("same", "zero")


@dataclass
class ReferenceConditioning:
    """Reference input of one DiT forward.

    Attributes:
        latents: ``[B, C, S, H, W]``, one clean latent frame per slot (``S = layout.num_slots``,
            token order). Empty slots' frames are ignored under ``proxy`` / ``drop``; under ``gray``
            the caller puts the latent of a mid-gray image there.
        layout: which slots are filled.
        scheme: position scheme for the reference tokens.
        empty_slot_mode: ``proxy`` | ``gray`` | ``drop``.
        proxy_tokens: ``[K, dim]`` learnable vectors (K = slots per subject), needed under ``proxy``
            when a slot is empty; broadcast over the slot's token grid after patch embedding.
        ref_timestep: ``same`` (reference tokens share the video timestep, as Phantom-Wan was
            trained) or ``zero`` (reference tokens at timestep 0, for models trained that way).
    """

    latents: torch.Tensor
    layout: ReferenceLayout
    scheme: PositionScheme
    empty_slot_mode: str = "proxy"
    proxy_tokens: torch.Tensor | None = None
    ref_timestep: str = "same"

    def __post_init__(self) -> None:
        check_empty_slot_mode(self.empty_slot_mode)
        if self.ref_timestep not in REF_TIMESTEP_MODES:
            raise MVS2VError(
                f"reference timestep mode {self.ref_timestep!r} is unknown: use one of {', '.join(REF_TIMESTEP_MODES)}"
            )
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
        needs_proxy = self.empty_slot_mode == "proxy" and not all(self.layout.filled)
        if needs_proxy:
            if self.proxy_tokens is None:
                raise MVS2VError(
                    "the reference layout has empty slots and the empty-slot mode is 'proxy', but no proxy "
                    "tokens were given: load an adapter that has them, or use the 'gray' or 'drop' mode"
                )
            if self.proxy_tokens.ndim != 2 or self.proxy_tokens.shape[0] != self.layout.slots_per_subject:
                raise MVS2VError(
                    f"proxy tokens have shape {tuple(self.proxy_tokens.shape)} but the layout has "
                    f"{self.layout.slots_per_subject} slots per subject: use an adapter trained with "
                    f"{self.layout.slots_per_subject} slots per subject, or change the slots per subject"
                )

    def with_latents(self, latents: torch.Tensor) -> "ReferenceConditioning":
        """The same conditioning with other latents (e.g. zeros for the no-reference guidance pass)."""
        return ReferenceConditioning(
            latents, self.layout, self.scheme, self.empty_slot_mode, self.proxy_tokens, self.ref_timestep
        )
