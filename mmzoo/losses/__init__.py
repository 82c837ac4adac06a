"""Alignment objectives: pure-torch math (``functional``), cross-rank gathering and gradient caching."""

from mmzoo.losses._distributed import average_gradients, gather_with_grad, world_info
from mmzoo.losses.functional import (
    GradientReversal,
    adversarial_modality_loss,
    contrastive_loss,
    distillation_cosine,
    distillation_kl,
    grad_reverse,
    itm_loss,
    mask_tokens,
    sample_hard_negatives,
    sigmoid_loss,
)
from mmzoo.losses.grad_cache import grad_cache_step

__all__ = [
    "GradientReversal",
    "adversarial_modality_loss",
    "average_gradients",
    "contrastive_loss",
    "distillation_cosine",
    "distillation_kl",
    "gather_with_grad",
    "grad_cache_step",
    "grad_reverse",
    "itm_loss",
    "mask_tokens",
    "sample_hard_negatives",
    "sigmoid_loss",
    "world_info",
]
