"""Image captioning: a causal text decoder cross-attending to the image tokens (BLIP / CoCa captioner)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..fusion.layers import TransformerLayer
from .base import OBJECTIVES, Objective, ObjectiveContext, ObjectiveOutput


class CaptionDecoder(nn.Module):
    """Token + position embeddings, ``num_layers`` causal TransformerLayers with cross-attention to the image
    tokens, a final LayerNorm and a linear head over the vocabulary. No KV cache: every call sees the full prefix.

    ``forward(input_ids (B, L), attention_mask (B, L) | None, image_tokens (B, Li, Di), image_mask (B, Li) | None)
    -> logits (B, L, vocab)``; position ``t`` predicts token ``t + 1``. Positions count real tokens only, so
    left-padded prompts work.
    """

    def __init__(self, vocab_size: int, width: int, image_width: int, num_layers: int, num_heads: int,
                 intermediate_size: int | None, max_length: int, dropout: float) -> None:
        super().__init__()
        self.max_length = max_length
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.position_embedding = nn.Embedding(max_length, width)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            TransformerLayer(width, num_heads, intermediate_size, dropout, cross_width=image_width, causal=True)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocab_size)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None, image_tokens: Tensor,
                image_mask: Tensor | None = None) -> Tensor:
        return self.decode(input_ids, attention_mask, image_tokens, image_mask)[0]

    def decode(self, input_ids: Tensor, attention_mask: Tensor | None, image_tokens: Tensor,
               image_mask: Tensor | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
        """``(logits, hidden_states)``: hidden_states are the embeddings and each layer's output (B, L, width)."""
        length = input_ids.shape[1]
        if length > self.max_length:
            raise ValueError(
                f"caption decoder: sequence of {length} tokens exceeds objectives(captioning).max_length "
                f"{self.max_length}; truncate the captions / max_new_tokens or raise max_length in the spec"
            )
        if attention_mask is None:
            positions = torch.arange(length, device=input_ids.device).expand_as(input_ids)
        else:
            positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        x = self.drop(self.token_embedding(input_ids) + self.position_embedding(positions))
        states = [x]
        for layer in self.layers:  # positional: reentrant gradient checkpointing tracks positional inputs only
            x = layer(x, attention_mask, image_tokens, image_mask)
            states.append(x)
        return self.lm_head(self.norm(x)), tuple(states)


def caption_loss(logits: Tensor, labels: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Next-token cross-entropy: ``logits[:, t]`` predicts ``labels[:, t + 1]``; label -100 is ignored."""
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100,
        label_smoothing=label_smoothing,
    )


@OBJECTIVES.register("captioning")
class CaptioningObjective(Objective):
    """Teacher-forced next-token prediction of the batch texts given the image tokens; pads are ignored.

    The tokenizer's CLS (or BOS) id opens a caption and SEP (or EOS) closes it, so generation starts from CLS
    and stops at SEP (see ``MmzooForConditionalGeneration``).
    """

    def __init__(self, spec, dims, fusion) -> None:
        super().__init__(spec, dims, fusion)
        self.decoder = CaptionDecoder(
            vocab_size=dims.vocab_size, width=spec.hidden_size or dims.text_width, image_width=dims.image_width,
            num_layers=spec.num_layers, num_heads=spec.num_heads, intermediate_size=spec.intermediate_size,
            max_length=spec.max_length, dropout=spec.dropout,
        )

    def forward(self, ctx: ObjectiveContext) -> ObjectiveOutput:
        input_ids, mask = ctx.inputs["input_ids"], ctx.text.mask
        logits = self.decoder(input_ids, mask, ctx.image.tokens, ctx.image.mask)
        labels = input_ids.masked_fill(mask == 0, -100)
        return ObjectiveOutput(caption_loss(logits, labels, self.spec.label_smoothing))
