"""Scaled dot-product attention for mmzoo's own layers, by the model's ``attn_implementation``.

``"sdpa"`` runs ``torch.nn.functional.scaled_dot_product_attention``; ``"eager"`` the same maths written out
(softmax(q k^T / sqrt(d)) v), which is what transformers' eager-vs-SDPA checks compare against.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

IMPLEMENTATIONS = ("sdpa", "eager")


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, causal: bool = False,
           dropout_p: float = 0.0, implementation: str = "sdpa") -> Tensor:
    """(B, H, Lq, D) attention output. ``mask``: bool, broadcastable to (B, H, Lq, Lk), True = attend;
    ``causal``: mask the future (when ``mask`` is None; otherwise fold causality into ``mask``)."""
    if implementation != "eager":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None,
                                              dropout_p=dropout_p)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if causal and mask is None:
        mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool, device=q.device).tril()
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = scores.softmax(dim=-1)
    if dropout_p:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v
