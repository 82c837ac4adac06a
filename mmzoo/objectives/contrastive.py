"""Contrastive (InfoNCE, CLIP) and pairwise sigmoid (SigLIP) objectives with learnable temperature/bias."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..losses.functional import contrastive_loss, sigmoid_loss
from transformers import initialization as init
from .base import OBJECTIVES, Objective, ObjectiveContext, ObjectiveOutput


@OBJECTIVES.register("contrastive")
class ContrastiveObjective(Objective):
    """Symmetric InfoNCE over in-batch (and, distributed, global-batch) negatives.

    L(i,t) = -log( exp(sim(i,t)/tau) / sum_t' exp(sim(i,t')/tau) ), averaged over both directions
    (Radford et al. 2021). ``logit_scale`` stores log(1/tau), initialised from ``init_temperature`` and
    clamped to ``max_logit_scale`` when used.
    """

    def __init__(self, spec, dims, fusion) -> None:
        super().__init__(spec, dims, fusion)
        self.logit_scale = nn.Parameter(torch.tensor(0.0), requires_grad=spec.learnable_temperature)
        self._reset_mmzoo_parameters()

    def _reset_mmzoo_parameters(self) -> None:
        init.constant_(self.logit_scale, math.log(1.0 / self.spec.init_temperature))

    def scale(self) -> Tensor:
        return self.logit_scale.exp().clamp(max=self.spec.max_logit_scale)

    def pair_logits(self, image_embeds: Tensor, text_embeds: Tensor) -> Tensor:
        return self.scale() * image_embeds @ text_embeds.t()

    def forward(self, ctx: ObjectiveContext) -> ObjectiveOutput:
        loss, per_image, per_text = contrastive_loss(
            ctx.image.normalized, ctx.text.normalized, self.scale(), self.spec.label_smoothing, self.spec.gather
        )
        return ObjectiveOutput(loss, per_image, per_text, {"temperature": 1.0 / self.scale().detach()})


@OBJECTIVES.register("sigmoid")
class SigmoidObjective(Objective):
    """SigLIP pairwise sigmoid loss with learnable scale t = exp(logit_scale) and bias b (Zhai et al. 2023)."""

    def __init__(self, spec, dims, fusion) -> None:
        super().__init__(spec, dims, fusion)
        self.logit_scale = nn.Parameter(torch.tensor(0.0))
        self.logit_bias = nn.Parameter(torch.tensor(0.0))
        self._reset_mmzoo_parameters()

    def _reset_mmzoo_parameters(self) -> None:
        init.constant_(self.logit_scale, self.spec.init_logit_scale)
        init.constant_(self.logit_bias, self.spec.init_logit_bias)

    def pair_logits(self, image_embeds: Tensor, text_embeds: Tensor) -> Tensor:
        return self.logit_scale.exp() * image_embeds @ text_embeds.t() + self.logit_bias

    def forward(self, ctx: ObjectiveContext) -> ObjectiveOutput:
        loss, per_image, per_text = sigmoid_loss(
            ctx.image.normalized, ctx.text.normalized, self.logit_scale.exp(), self.logit_bias, self.spec.gather,
            self.spec.exchange,
        )
        return ObjectiveOutput(loss, per_image, per_text)
