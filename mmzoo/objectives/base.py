"""Objective module contract: a context of tower/fusion outputs -> one scalar loss (registered by `type`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from ..specs.objectives import OBJECTIVE_COMPONENTS
from ..encoders.dims import TowersAndTokens
from ..fusion.base import FusionOutput

if TYPE_CHECKING:
    from ..encoders.tower import TowerOutput

# tag -> Objective subclass, constructed as cls(spec, dims, fusion)
# the builder side of the one objective registry (its spec side is mmzoo.specs.OBJECTIVE_SPECS)
OBJECTIVES = OBJECTIVE_COMPONENTS.builders


@dataclass
class ObjectiveOutput:
    """loss: scalar (unweighted); logits_per_image (B_img, B_txt) and logits_per_text when the objective scores
    pairs; extras: tensors worth reporting (accuracies...)."""

    loss: Tensor
    logits_per_image: Tensor | None = None
    logits_per_text: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class ObjectiveContext:
    """Everything an objective may read. ``fused`` is computed once, on demand, for the positive pairs."""

    model: Any  # MmzooModel: encode_text, fusion, dims
    text: TowerOutput
    image: TowerOutput
    inputs: dict[str, Tensor]
    _fused: FusionOutput | None = None

    @property
    def fused(self) -> FusionOutput:
        if self._fused is None:
            self._fused = self.model.fusion(self.text, self.image, self.inputs)
        return self._fused


class Objective(nn.Module):
    """Base class: ``forward(ctx) -> ObjectiveOutput``. Scoring objectives also implement ``pair_logits``."""

    def __init__(self, spec, dims: TowersAndTokens, fusion) -> None:
        super().__init__()
        self.spec = spec
        self.dims = dims

    def forward(self, ctx: ObjectiveContext) -> ObjectiveOutput:
        raise NotImplementedError

    def pair_logits(self, image_embeds: Tensor, text_embeds: Tensor) -> Tensor | None:
        """(B_img, B_txt) logits from L2-normalised embeddings, or None if this objective does not score pairs."""
        return None

    def apply_trainability(self) -> None:
        """Set ``requires_grad`` of this objective's parameters from its spec (called by the model's
        ``apply_trainability`` on construction and after loading). Default: everything trains."""

    def _reset_mmzoo_parameters(self) -> None:
        """Re-initialise parameters that are not Linear/Embedding/LayerNorm (called by the model's init)."""
