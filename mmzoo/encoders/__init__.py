"""Tower adapters: any HF text/vision model -> tokens, mask, pooled features, projected embeddings."""

from .dims import TowersAndTokens
from .pooling import POOLERS, AttentionPooler, pool
from .projection import build_projection
from .tower import Tower, TowerOutput

__all__ = ["POOLERS", "AttentionPooler", "Tower", "TowerOutput", "TowersAndTokens", "build_projection", "pool"]
