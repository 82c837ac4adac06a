"""Pooling of token states into one vector per example. Registered by name; masks exclude padding.

One registry, ``POOLERS``, holds every pooling (``encoders.<i>.pooling``). Each entry is a :class:`Pooler`:
- parameter-free poolings (cls, mean, max, eos, pooler) register a function ``(tokens, mask, pooler_output) ->
  (B, D)``; the entry is called the same way (``POOLERS.get("mean")(tokens, mask)``);
- learned poolings (attention) register an ``nn.Module`` class built from the token width; the tower owns the
  instance (``POOLERS.get(name).build(width)``) and passes it back when pooling (``module=``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from transformers import initialization as init

from .._registry import Registry
from ..utils.attention import attend


class Pooler:
    """One ``POOLERS`` entry: a parameter-free function, or a learned module class (``learned``)."""

    def __init__(self, name: str, function: Callable[..., Tensor] | None = None,
                 module: type[nn.Module] | None = None) -> None:
        self.name, self.function, self.module = name, function, module

    @property
    def learned(self) -> bool:
        return self.module is not None

    def build(self, width: int) -> nn.Module | None:
        """The learned pooler's module for tokens of ``width`` (None for a parameter-free pooling)."""
        return self.module(width) if self.module is not None else None

    def __call__(self, tokens: Tensor, mask: Tensor, pooler_output: Tensor | None = None, *,
                 module: nn.Module | None = None) -> Tensor:
        """(tokens (B, L, D), mask (B, L) of 0/1, pooler_output (B, D) or None) -> (B, D); a learned pooling
        needs the module that :meth:`build` made (``module=``)."""
        if self.module is None:
            return self.function(tokens, mask, pooler_output)
        if module is None:
            raise ValueError(
                f"pooling {self.name!r} is learned: build its module with POOLERS.get({self.name!r}).build(width) "
                f"and pass it as module= (a Tower does this for `pooling: {self.name}`)"
            )
        return module(tokens, mask)

    def __repr__(self) -> str:
        return f"Pooler({self.name!r}, {(self.module or self.function).__name__})"


class PoolerRegistry(Registry[Pooler]):
    """``register(tag)`` takes a pooling function or a learned ``nn.Module`` class (or a :class:`Pooler`) and
    stores it as a :class:`Pooler`; as a decorator it returns the function or class unchanged."""

    def register(self, tag: str, entry=None, *, override: bool = False):
        def add(obj):
            if isinstance(obj, Pooler):
                pooler = obj
            elif isinstance(obj, type) and issubclass(obj, nn.Module):
                pooler = Pooler(tag, module=obj)
            else:
                pooler = Pooler(tag, function=obj)
            Registry.register(self, tag, pooler, override=override)
            return obj

        return add(entry) if entry is not None else add


POOLERS = PoolerRegistry("pooling")


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


@POOLERS.register("attention")
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


def pool(name: str, tokens: Tensor, mask: Tensor, pooler_output: Tensor | None, module: nn.Module | None = None):
    """Pool by the registered pooling ``name``; ``module``: a learned pooling's module (its ``build``)."""
    return POOLERS.get(name)(tokens, mask, pooler_output, module=module)
