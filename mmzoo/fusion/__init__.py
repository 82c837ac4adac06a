"""Fusion modules, one per spec `type`. Importing this package registers every built-in fusion."""

from ..encoders.dims import TowersAndTokens as ModelDims  # the old name of mmzoo.encoders.TowersAndTokens
from .base import FUSIONS, DualEncoderFusion, Fusion, FusionOutput

# every built-in module registers its builders on import; an import error is a packaging error and surfaces
from . import single_stream, co_attention, cross_attention, gated, adversarial, distillation  # noqa: F401,E402

__all__ = ["FUSIONS", "DualEncoderFusion", "Fusion", "FusionOutput"]
