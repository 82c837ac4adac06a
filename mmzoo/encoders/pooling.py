"""Pooling of token states into one vector per example. Registered by name; masks exclude padding."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from transformers import initialization as init

from .._registry import Registry
from ..utils.attention import attend

# A pooler: (tokens (B,L,D), mask (B,L) of 0/1, pooler_output (B,D) or None) -> (B,D)
POOLERS: Registry[Callable[..., Tensor]] = Registry("pooling")


@POOLERS.register("cls")
def pool_cls(tokens: Tensor, mask: Tensor, pooler_output: Tensor | None = None) -> Tensor:
    return tokens[:, 0]


@POOLERS.register("mean")
def pool_mean(tokens: Tensor, mask: Tensor, pooler_output: Tensor | None = None) -> Tensor:
    weights = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)


@POOLERS.register("max")
def pool_max(tokens: Tensor, mask: Tensor, pooler_output: Tensor | None = None) -> Tensor:
    return tokens.masked_fill(~mask.bool().unsqueeze(-1), torch.finfo(tokens.dtype).min).amax(1)


@POOLERS.register("eos")
def pool_eos(tokens: Tensor, mask: Tensor, pooler_output: Tensor | None = None) -> Tensor:
    """The last non-padding token (right padding assumed, as HF tokenizers do by default)."""
    last = mask.long().sum(1).clamp(min=1) - 1
    return tokens[torch.arange(tokens.shape[0], device=tokens.device), last]


@POOLERS.register("pooler")
def pool_pooler(tokens: Tensor, mask: Tensor, pooler_output: Tensor | None = None) -> Tensor:
    if pooler_output is None:
        raise ValueError(
            "pooling 'pooler' needs a tower that returns pooler_output (e.g. BERT, ViT with a pooling layer); "
            "this tower returns none — use pooling cls, mean, max or attention"
        )
    return pooler_output


class AttentionPooler(nn.Module):
    """Learned-query attention pooling (as in SigLIP's MAP head / CoCa's attentional pooler); padding (mask 0)
    is never attended to."""

    mmzoo_attention = True
    attn_implementation = "sdpa"  # set by the model from config._attn_implementation

    def __init__(self, width: int, num_heads: int = 1) -> None:
        super().__init__()
        self.num_heads = num_heads if width % num_heads == 0 else 1
        self.query = nn.Parameter(torch.zeros(1, 1, width))
        self.key_value = nn.Linear(width, 2 * width)
        self.norm = nn.LayerNorm(width)

    def _reset_mmzoo_parameters(self) -> None:
        init.normal_(self.query, std=0.02)

    def forward(self, tokens: Tensor, mask: Tensor) -> Tensor:
        b, n, d = tokens.shape
        h = self.num_heads
        k, v = self.key_value(self.norm(tokens)).chunk(2, dim=-1)
        q = self.query.expand(b, 1, d)
        split = lambda x: x.view(b, -1, h, d // h).transpose(1, 2)  # noqa: E731
        attn_mask = mask.bool()[:, None, None, :]
        out = attend(split(q), split(k), split(v), attn_mask, implementation=self.attn_implementation)
        return out.transpose(1, 2).reshape(b, d)


def pool(name: str, tokens: Tensor, mask: Tensor, pooler_output: Tensor | None, attention: AttentionPooler | None):
    if name == "attention":
        return attention(tokens, mask)
    return POOLERS.get(name)(tokens, mask, pooler_output)
