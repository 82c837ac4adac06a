"""Transformer building blocks owned by mmzoo (fusion layers, caption decoder).

Attention runs through ``torch.nn.functional.scaled_dot_product_attention`` (or its eager twin when the model's
``attn_implementation`` is "eager", see ``mmzoo.utils.attention``). Layers subclass transformers'
``GradientCheckpointingLayer`` so ``model.gradient_checkpointing_enable()`` reaches them too.
"""

from __future__ import annotations

from torch import Tensor, nn
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer

from ..encoders.pooling import POOLERS
from ..utils.attention import attend

# tower pooling -> how a fusion summarises that modality's fused token states into its pair embedding
_PAIR_POOLING = {"mean": "max", "max": "max"}  # every other tower pooling reads the first token (CLS)


class Linear(nn.Linear):
    """``nn.Linear`` with LeCun-normal initialisation (std ``1 / sqrt(fan_in)``, zero bias) for mmzoo-owned layers.

    transformers initialises Linears with ``N(0, 0.02)``, a scale chosen for widths near 768 (gain
    ``0.02 * sqrt(768) ~ 0.55`` per layer). At the widths of tiny towers (32-64) the gain is ~0.15 per layer, so a
    pooler -> product -> head stack starts with pair embeddings that barely vary across a batch and a gradient into
    the fusion ~1e-4 of the towers': ITM then sits at its class prior. Fan-in scaling keeps each layer's output at
    unit scale whatever the width. The model's ``_init_weights`` calls ``_reset_mmzoo_parameters`` after its own
    init; ``transformers.initialization`` skips parameters loaded from a checkpoint. (The hook lives on the Linear
    itself: transformers skips the hooks of modules without parameters of their own.)
    """

    def _reset_mmzoo_parameters(self) -> None:
        init.normal_(self.weight, mean=0.0, std=self.in_features ** -0.5)
        if self.bias is not None:
            init.zeros_(self.bias)


class Attention(nn.Module):
    """Multi-head attention (self or cross). ``key_mask`` (B, Lk) is 1 for real tokens.

    ``width`` is the attention's inner width; ``query_width`` / ``kv_width`` / ``out_width`` are the widths of
    the queries, the keys/values and the output (all default to ``width``), so one stream can attend to another
    of a different width in a third width (ViLBERT's co-attention).

    ``attn_implementation`` ("sdpa" or "eager") is set by the model from ``config._attn_implementation``.
    """

    mmzoo_attention = True
    attn_implementation = "sdpa"

    def __init__(self, width: int, num_heads: int, kv_width: int | None = None, dropout: float = 0.0,
                 query_width: int | None = None, out_width: int | None = None) -> None:
        super().__init__()
        if width % num_heads:
            raise ValueError(f"attention width {width} is not divisible by num_heads {num_heads}")
        self.num_heads, self.dropout = num_heads, dropout
        self.query = Linear(query_width or width, width)
        self.key = Linear(kv_width or width, width)
        self.value = Linear(kv_width or width, width)
        self.out = Linear(width, out_width or query_width or width)

    def forward(self, x: Tensor, context: Tensor | None = None, key_mask: Tensor | None = None,
                causal: bool = False) -> Tensor:
        context = x if context is None else context
        b, lq = x.shape[:2]
        d = self.query.out_features
        split = lambda t: t.view(b, t.shape[1], self.num_heads, d // self.num_heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.query(x)), split(self.key(context)), split(self.value(context))
        mask = None
        if key_mask is not None:
            mask = key_mask.bool()[:, None, None, :]
            if causal:
                mask = mask & _causal(lq, k.shape[2], x.device)
        out = attend(q, k, v, mask, causal, self.dropout if self.training else 0.0, self.attn_implementation)
        return self.out(out.transpose(1, 2).reshape(b, lq, d))


def _causal(lq: int, lk: int, device) -> Tensor:
    import torch

    return torch.ones(lq, lk, dtype=torch.bool, device=device).tril()


def project(in_width: int, out_width: int) -> nn.Module:
    """A Linear map between widths, or Identity when they already match."""
    return nn.Identity() if in_width == out_width else Linear(in_width, out_width)


def pair_pooling(config, modality: str) -> str:
    """How a fusion pools ``modality``'s fused tokens into its pair embedding: ``max`` over the tokens when that
    modality's tower pools by ``mean`` or ``max``, else the first token (CLS), as pretrained towers are trained to.

    Why not the first token for mean-pooling towers: a freshly initialised tower trained through mean pooling never
    trains its first token to summarise, so a fusion reading it sees a near-constant vector. Why not the mean: most
    tokens carry what every example shares (background patches, template words), so a mean varies across a batch
    by ~1/length of a token's variation and the ITM / VQA heads sit at their class prior for hundreds of steps.
    A max keeps the one token that differs at full scale. ``config`` None (a bare fusion) reads the first token."""
    if config is None:
        return "cls"
    return _PAIR_POOLING.get(config.model_spec().encoder(modality).pooling, "cls")


def pool_states(mode: str, states: Tensor, mask: Tensor) -> Tensor:
    """(B, L, D) token states -> (B, D) by ``mode`` (``cls``, ``mean`` or ``max``), padding excluded."""
    return POOLERS.get(mode)(states, mask)


class MlpHead(nn.Sequential):
    """Linear -> GELU [-> LayerNorm] -> Linear classifier head (fan-in initialised :class:`Linear`)."""

    def __init__(self, in_width: int, hidden: int, out_width: int, norm: bool = False) -> None:
        layers = [Linear(in_width, hidden), nn.GELU()] + ([nn.LayerNorm(hidden)] if norm else [])
        super().__init__(*layers, Linear(hidden, out_width))


class Pooler(nn.Module):
    """BERT-style pooler: Linear + tanh on one token state (B, D_in) -> (B, D_out)."""

    def __init__(self, in_width: int, out_width: int | None = None) -> None:
        super().__init__()
        self.dense = Linear(in_width, out_width or in_width)

    def forward(self, x: Tensor) -> Tensor:
        return self.dense(x).tanh()


class FeedForward(nn.Module):
    def __init__(self, width: int, intermediate: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(Linear(width, intermediate), nn.GELU(), Linear(intermediate, width),
                                 nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class TransformerLayer(GradientCheckpointingLayer):
    """Pre-norm layer: self-attention (optionally causal), optional cross-attention, feed-forward.

    Args:
        width: model width; num_heads: heads; intermediate: feed-forward width (default 4 x width);
        cross_width: width of the cross-attended context (None = no cross-attention); causal: mask the future.
    """

    def __init__(self, width: int, num_heads: int, intermediate: int | None = None, dropout: float = 0.0,
                 cross_width: int | None = None, causal: bool = False, self_attention: bool = True) -> None:
        super().__init__()
        self.causal = causal
        self.self_attn = Attention(width, num_heads, dropout=dropout) if self_attention else None
        self.norm_self = nn.LayerNorm(width) if self_attention else None
        self.cross_attn = Attention(width, num_heads, kv_width=cross_width, dropout=dropout) if cross_width else None
        self.norm_cross = nn.LayerNorm(width) if cross_width else None
        self.ffn = FeedForward(width, intermediate or 4 * width, dropout)
        self.norm_ffn = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None, context: Tensor | None = None,
                context_mask: Tensor | None = None) -> Tensor:
        if self.self_attn is not None:
            x = x + self.drop(self.self_attn(self.norm_self(x), key_mask=mask, causal=self.causal))
        if self.cross_attn is not None:
            x = x + self.drop(self.cross_attn(self.norm_cross(x), context=context, key_mask=context_mask))
        return x + self.ffn(self.norm_ffn(x))
