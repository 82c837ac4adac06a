"""Adversarial modality alignment: the discriminator's loss (gradient reversal sits in the fusion)."""

from __future__ import annotations

from ..losses.functional import adversarial_modality_loss
from .base import OBJECTIVES, Objective, ObjectiveContext, ObjectiveOutput


@OBJECTIVES.register("adversarial")
class AdversarialObjective(Objective):
    """Cross-entropy of the fusion's modality discriminator (``extras["modality_logits"]``) against
    ``extras["modality_labels"]`` (Ganin & Lempitsky 2015). Minimising it trains the discriminator; the fusion's
    gradient reversal turns the same gradient into "fool the discriminator" for the towers."""

    def forward(self, ctx: ObjectiveContext) -> ObjectiveOutput:
        extras = ctx.fused.extras
        if "modality_logits" not in extras or "modality_labels" not in extras:
            raise ValueError(
                f"adversarial: fusion {type(ctx.model.fusion).__name__} returned no extras['modality_logits'] / "
                "extras['modality_labels']; the adversarial objective needs fusion.type adversarial"
            )
        logits, labels = extras["modality_logits"], extras["modality_labels"]
        loss = adversarial_modality_loss(logits, labels)
        binary = logits.ndim == 1 or logits.shape[-1] == 1
        predicted = (logits.detach().reshape(-1) > 0).long() if binary else logits.detach().argmax(-1)
        accuracy = (predicted == labels.reshape(-1)).float().mean()
        return ObjectiveOutput(loss, extras={"discriminator_accuracy": accuracy})
