"""Small helpers shared by the objectives: row selection of tower outputs / inputs, reproducible generators."""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from ..encoders.tower import TowerOutput

# batch inputs that belong to the image side of a pair; every other (B, ...) tensor belongs to the text side
IMAGE_INPUT_PREFIX = "pixel"


def select_rows(out: TowerOutput, index: Tensor) -> TowerOutput:
    """The tower output of the examples ``index`` (a (N,) LongTensor, repeats allowed). ``raw`` is dropped."""
    pick = lambda t: t.index_select(0, index) if t is not None else None  # noqa: E731
    return dataclasses.replace(
        out, tokens=pick(out.tokens), mask=pick(out.mask), pooled=pick(out.pooled), embeds=pick(out.embeds), raw=None
    )


def select_inputs(inputs: dict, text_index: Tensor, image_index: Tensor, batch_size: int) -> dict:
    """Re-index the batch inputs for new (image, text) pairs: ``pixel*`` keys by ``image_index``, every other
    (batch_size, ...) tensor by ``text_index``; everything else passes through unchanged."""
    out = {}
    for key, value in inputs.items():
        if isinstance(value, Tensor) and value.ndim and value.shape[0] == batch_size:
            index = image_index if key.startswith(IMAGE_INPUT_PREFIX) else text_index
            value = value.index_select(0, index.to(value.device))
        out[key] = value
    return out


EVAL_SEED = 0  # seed of the objectives' random draws in eval mode


def generator_from_global_rng(device: torch.device, deterministic: bool = False) -> torch.Generator:
    """A generator on ``device`` seeded by one draw from torch's global (CPU) RNG, so results follow
    ``torch.manual_seed`` on every device while the draws themselves stay on ``device``.

    ``deterministic=True`` (objectives pass ``not self.training``): seeded by ``EVAL_SEED`` without touching the
    global RNG, so an eval-mode forward with ``return_loss=True`` gives the same loss every time."""
    seed = EVAL_SEED if deterministic else int(torch.randint(0, 2**62, (1,)).item())
    return torch.Generator(device=device).manual_seed(seed)
