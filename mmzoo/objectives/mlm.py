"""Masked language modelling conditioned on the image (VisualBERT, UNITER, ALBEF)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import SpecError
from ..losses.functional import mask_tokens
from ._utils import generator_from_global_rng
from .base import OBJECTIVES, Objective, ObjectiveContext, ObjectiveOutput


class MlmHead(nn.Module):
    """BERT's prediction head: dense -> GELU -> LayerNorm -> decoder to the vocabulary."""

    def __init__(self, width: int, vocab_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)
        self.decoder = nn.Linear(width, vocab_size)

    def forward(self, states: Tensor) -> Tensor:
        return self.decoder(self.norm(F.gelu(self.dense(states))))


@OBJECTIVES.register("mlm")
class MlmObjective(Objective):
    """Mask ``mask_probability`` of the text tokens (BERT 80/10/10; never special or pad tokens), re-encode the
    corrupted text, fuse it with the image and predict the original ids from the fused text states.

    Masking draws from a generator seeded by torch's global RNG, so ``torch.manual_seed`` makes it reproducible;
    in eval mode from a fixed seed, so an evaluation loss is deterministic.
    """

    def __init__(self, spec, dims, fusion) -> None:
        super().__init__(spec, dims, fusion)
        if dims.mask_token_id is None:
            raise SpecError(
                "objectives(mlm): the text tokenizer has no mask token (config.tokens.mask_token_id is None); use a "
                "tokenizer with one (BERT-style [MASK]) or remove the mlm objective"
            )
        if not getattr(fusion, "text_token_dim", None):
            raise SpecError(
                f"objectives(mlm): fusion {type(fusion).__name__} sets no text_token_dim (no image-conditioned text "
                "states); use a fusion that provides text_tokens (single_stream, co_attention, cross_attention)"
            )
        self.head = MlmHead(fusion.text_token_dim, dims.vocab_size)
        self.special_ids = tuple(sorted(dims.special_token_ids))

    def mask(self, input_ids: Tensor, attention_mask: Tensor, special_tokens_mask: Tensor | None = None):
        """``(masked_ids, labels)`` of :func:`mask_tokens`; special ids come from the tokenizer, pads from the mask."""
        special = torch.isin(input_ids, torch.tensor(self.special_ids, dtype=input_ids.dtype, device=input_ids.device))
        if special_tokens_mask is not None:
            special |= special_tokens_mask.bool()
        return mask_tokens(
            input_ids, attention_mask, special, self.dims.mask_token_id, self.dims.vocab_size,
            self.spec.mask_probability, generator_from_global_rng(input_ids.device, deterministic=not self.training),
        )

    def forward(self, ctx: ObjectiveContext) -> ObjectiveOutput:
        inputs = ctx.inputs
        masked_ids, labels = self.mask(inputs["input_ids"], ctx.text.mask, inputs.get("special_tokens_mask"))
        masked_text = ctx.model.encode_text(masked_ids, ctx.text.mask, inputs.get("token_type_ids"))
        fused = ctx.model.fusion(masked_text, ctx.image, {**inputs, "input_ids": masked_ids})
        states = fused.text_tokens
        if states.shape[:2] != labels.shape:
            raise ValueError(
                f"mlm: fusion {type(ctx.model.fusion).__name__} returned text_tokens {tuple(states.shape)} that do not "
                f"line up with input_ids {tuple(labels.shape)}; text_tokens must keep one state per input token"
            )
        selected = labels != -100
        if not selected.any():  # no maskable token in the whole batch (e.g. only special tokens)
            return ObjectiveOutput(states.sum() * 0.0, extras={"mlm_accuracy": states.new_zeros(())})
        logits = self.head(states[selected])
        targets = labels[selected]
        loss = F.cross_entropy(logits.float(), targets)
        accuracy = (logits.detach().argmax(-1) == targets).float().mean()
        return ObjectiveOutput(loss, extras={"mlm_accuracy": accuracy})
