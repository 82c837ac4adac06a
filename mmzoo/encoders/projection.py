"""Projection heads into the shared embedding space."""

from __future__ import annotations

from torch import nn

from ..specs.encoders import ProjectionSpec


def build_projection(spec: ProjectionSpec, in_dim: int, out_dim: int) -> nn.Module:
    if spec.type == "linear":
        return nn.Linear(in_dim, out_dim, bias=spec.bias)
    hidden = spec.hidden_dim or out_dim
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim, bias=spec.bias))
