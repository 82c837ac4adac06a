"""Fusion modules, one per spec `type`. Importing this package registers every built-in fusion."""

import importlib

from .base import FUSIONS, DualEncoderFusion, Fusion, FusionOutput, ModelDims

# modules that register further fusions; a module still missing is skipped so the registry stays usable
for _name in ("single_stream", "co_attention", "cross_attention", "gated", "adversarial", "distillation"):
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as _err:
        if _err.name != f"{__name__}.{_name}":
            raise

__all__ = ["FUSIONS", "DualEncoderFusion", "Fusion", "FusionOutput", "ModelDims"]
