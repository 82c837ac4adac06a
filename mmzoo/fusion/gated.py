"""Gated (attention-weighted) fusion of the pooled modality embeddings."""

from __future__ import annotations

import torch
from torch import nn

from .base import FUSIONS, Fusion, FusionOutput
from .layers import Linear

MODALITIES = ("image", "text")  # column order of extras["modality_weights"]


@FUSIONS.register("gated")
class GatedFusion(Fusion):
    """Per example, scores ``s_m = w^T tanh(W e_m + b)`` for each modality's projected, L2-normalised embedding
    ``e_m``, weights ``alpha = softmax_m(s)`` and ``pair_embeds = sum_m alpha_m e_m`` (B, embed_dim).

    Attention-based adaptive fusion as in Hori et al. 2017 ("Attention-based multimodal fusion for video
    description"). extras["modality_weights"]: (B, 2), columns (image, text), rows sum to 1.
    """

    def __init__(self, spec, dims, config=None) -> None:
        super().__init__(spec, dims, config)
        self.score_hidden = Linear(dims.embed_dim, spec.hidden_size)
        self.drop = nn.Dropout(spec.dropout)
        self.score = Linear(spec.hidden_size, 1, bias=False)
        self.pair_dim = dims.embed_dim

    def forward(self, text, image, inputs=None) -> FusionOutput:
        embeds = torch.stack([image.normalized, text.normalized], dim=1)  # (B, 2, P), MODALITIES order
        scores = self.score(self.drop(self.score_hidden(embeds).tanh())).squeeze(-1)  # (B, 2)
        weights = scores.softmax(dim=-1)
        fused = (weights.unsqueeze(-1) * embeds).sum(dim=1)
        return FusionOutput(pair_embeds=fused, extras={"modality_weights": weights})
