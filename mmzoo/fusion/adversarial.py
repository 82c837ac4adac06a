"""Adversarial fusion: a modality discriminator behind gradient reversal (modality-invariant embeddings)."""

from __future__ import annotations

import torch
from torch import nn

from ..losses.functional import grad_reverse
from .base import FUSIONS, Fusion, FusionOutput

IMAGE_LABEL, TEXT_LABEL = 0, 1


@FUSIONS.register("adversarial")
class AdversarialFusion(Fusion):
    """An MLP of ``num_layers`` Linear layers (hidden width ``hidden_size``, GELU between) guesses the modality of
    each projected, L2-normalised embedding. Its input passes ``grad_reverse(x, grl_lambda)``, so a loss that trains
    the discriminator pushes the towers to fool it (Ganin & Lempitsky 2015; ACMR, Wang et al. 2017).

    extras: "modality_logits" (2B, 2) for [image embeds; text embeds] and "modality_labels" (2B,), 0 = image,
    1 = text. The discriminator gets the reversed gradient only through these extras; pair_dim stays None.
    """

    def __init__(self, spec, dims, config=None) -> None:
        super().__init__(spec, dims, config)
        widths = [dims.embed_dim] + [spec.hidden_size] * (spec.num_layers - 1) + [2]
        layers: list[nn.Module] = []
        for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:])):
            layers += [nn.Linear(w_in, w_out)] + ([nn.GELU()] if i < spec.num_layers - 1 else [])
        self.discriminator = nn.Sequential(*layers)

    def forward(self, text, image, inputs=None) -> FusionOutput:
        embeds = torch.cat([image.normalized, text.normalized], dim=0)
        logits = self.discriminator(grad_reverse(embeds, self.spec.grl_lambda))
        labels = torch.cat([
            torch.full((image.normalized.shape[0],), IMAGE_LABEL, dtype=torch.long, device=logits.device),
            torch.full((text.normalized.shape[0],), TEXT_LABEL, dtype=torch.long, device=logits.device),
        ])
        return FusionOutput(extras={"modality_logits": logits, "modality_labels": labels})
