"""Alignment objectives: pure-torch math (``functional``), cross-rank gathering and gradient caching."""

from mmzoo.losses._distributed import equal_batch_sizes, gather_with_grad, neighbour_exchange, world_info
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
    "contrastive_loss",
    "distillation_cosine",
    "distillation_kl",
    "equal_batch_sizes",
    "gather_with_grad",
    "grad_cache_step",
    "grad_reverse",
    "itm_loss",
    "mask_tokens",
    "neighbour_exchange",
    "sample_hard_negatives",
    "sigmoid_loss",
    "world_info",
]
