"""Fusion module contract: pair tower outputs -> joint representations (registered by spec `type`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from ..encoders.dims import TowersAndTokens
from ..specs.fusion import FUSION_COMPONENTS

# tag -> Fusion subclass, constructed as cls(spec, dims, config) with config the MmzooConfig: the builder side of
# the one fusion registry (its spec side is mmzoo.specs.FUSION_SPECS)
FUSIONS = FUSION_COMPONENTS.builders


@dataclass
class FusionOutput:
    """text_tokens (B, Lt, Dt) image-conditioned text states with text_mask (B, Lt); image_tokens (B, Li, Di);
    pair_embeds (B, H) one joint vector per (image, text) pair; extras: fusion-specific tensors."""

    text_tokens: Tensor | None = None
    text_mask: Tensor | None = None
    image_tokens: Tensor | None = None
    pair_embeds: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class Fusion(nn.Module):
    """Base class. Subclasses set ``pair_dim`` / ``text_token_dim`` when they provide those outputs."""

    pair_dim: int | None = None
    text_token_dim: int | None = None
    image_token_dim: int | None = None  # width of FusionOutput.image_tokens (VQA readout)

    def __init__(self, spec, dims: TowersAndTokens, config=None) -> None:
        super().__init__()
        self.spec = spec
        self.dims = dims

    def forward(self, text, image, inputs: dict[str, Tensor] | None = None) -> FusionOutput:
        raise NotImplementedError

    def apply_trainability(self) -> None:
        """Set ``requires_grad`` of this fusion's parameters from its spec (called by the model's
        ``apply_trainability`` on construction and after loading). Default: everything trains."""


def transformer_width(spec, dims: TowersAndTokens) -> int:
    """Width of a transformer fusion: ``spec.hidden_size``, else the text tower's; must divide into heads."""
    width = spec.hidden_size or dims.text_width
    if width % spec.num_heads:
        raise ValueError(
            f"fusion.hidden_size: the {spec.type} width {width} (the text tower's when unset) is not divisible "
            f"by fusion.num_heads {spec.num_heads}; set fusion.hidden_size or fusion.num_heads"
        )
    return width


@FUSIONS.register("dual_encoder")
class DualEncoderFusion(Fusion):
    """Late fusion: no joint layers; the towers' embeddings are compared directly (CLIP)."""

    def forward(self, text, image, inputs=None) -> FusionOutput:
        return FusionOutput()
