"""Contrastive (InfoNCE, CLIP) and pairwise sigmoid (SigLIP) objectives with learnable temperature/bias."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..losses.functional import contrastive_loss, sigmoid_loss
from transformers import initialization as init
from .base import OBJECTIVES, Objective, ObjectiveContext, ObjectiveOutput

# Learnable scalars are stored with shape (1,), not (): FSDP1, ``fully_shard`` and DeepSpeed ZeRO refuse 0-d
# parameters. Checkpoints written before (0-d tensors) still load: ``_load_from_state_dict`` below for torch's
# ``load_state_dict`` (Trainer resume), and a transformers weight conversion for ``from_pretrained``
# (``mmzoo.modeling.modeling_mmzoo.LEGACY_SCALAR_KEYS``).
SCALAR_SHAPE = (1,)


def scalar_parameter(value: float = 0.0, requires_grad: bool = True) -> nn.Parameter:
    return nn.Parameter(torch.full(SCALAR_SHAPE, float(value)), requires_grad=requires_grad)


class ScalarParameters(Objective):
    """An objective whose learnable scalars (``scalar_names``) are (1,) parameters, read as 0-d tensors."""

    scalar_names: tuple[str, ...] = ()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in self.scalar_names:
            value = state_dict.get(prefix + name)
            if value is not None and value.dim() == 0:  # checkpoint of the old 0-d shape
                state_dict[prefix + name] = value.reshape(SCALAR_SHAPE)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


@OBJECTIVES.register("contrastive")
class ContrastiveObjective(ScalarParameters):
    """Symmetric InfoNCE over in-batch (and, distributed, global-batch) negatives.

    L(i,t) = -log( exp(sim(i,t)/tau) / sum_t' exp(sim(i,t')/tau) ), averaged over both directions
    (Radford et al. 2021). ``logit_scale`` stores log(1/tau), initialised from ``init_temperature``; tau is
    bounded below by ``min_temperature`` when used.
    """

    scalar_names = ("logit_scale",)

    def __init__(self, spec, dims, fusion) -> None:
        super().__init__(spec, dims, fusion)
        self.logit_scale = scalar_parameter()
        self._reset_mmzoo_parameters()

    def _reset_mmzoo_parameters(self) -> None:
        init.constant_(self.logit_scale, math.log(1.0 / self.spec.init_temperature))

    def apply_trainability(self) -> None:
        self.logit_scale.requires_grad_(self.spec.learnable_temperature)

    def scale(self) -> Tensor:
        """1 / tau = exp(logit_scale), tau no lower than ``min_temperature``, a 0-d tensor."""
        return self.logit_scale.exp().clamp(max=1.0 / self.spec.min_temperature).squeeze(0)

    def pair_logits(self, image_embeds: Tensor, text_embeds: Tensor) -> Tensor:
        return self.scale() * image_embeds @ text_embeds.t()

    def forward(self, ctx: ObjectiveContext) -> ObjectiveOutput:
        loss, per_image, per_text = contrastive_loss(
            ctx.image.normalized, ctx.text.normalized, self.scale(), self.spec.label_smoothing, self.spec.gather
        )
        return ObjectiveOutput(loss, per_image, per_text, {"temperature": 1.0 / self.scale().detach()})


@OBJECTIVES.register("sigmoid")
class SigmoidObjective(ScalarParameters):
    """SigLIP pairwise sigmoid loss with learnable scale t = 1 / tau = exp(logit_scale) and bias b (Zhai et al.
    2023)."""

    scalar_names = ("logit_scale", "logit_bias")

    def __init__(self, spec, dims, fusion) -> None:
        super().__init__(spec, dims, fusion)
        self.logit_scale = scalar_parameter()
        self.logit_bias = scalar_parameter()
        self._reset_mmzoo_parameters()

    def _reset_mmzoo_parameters(self) -> None:
        init.constant_(self.logit_scale, math.log(1.0 / self.spec.init_temperature))
        init.constant_(self.logit_bias, self.spec.init_logit_bias)

    def scale(self) -> Tensor:
        """t = exp(logit_scale), a 0-d tensor."""
        return self.logit_scale.exp().squeeze(0)

    def bias(self) -> Tensor:
        return self.logit_bias.squeeze(0)

    def pair_logits(self, image_embeds: Tensor, text_embeds: Tensor) -> Tensor:
        return self.scale() * image_embeds @ text_embeds.t() + self.bias()

    def forward(self, ctx: ObjectiveContext) -> ObjectiveOutput:
        loss, per_image, per_text = sigmoid_loss(
            ctx.image.normalized, ctx.text.normalized, self.scale(), self.bias(), self.spec.gather,
            self.spec.exchange,
        )
        return ObjectiveOutput(loss, per_image, per_text, {"temperature": 1.0 / self.scale().detach()})
