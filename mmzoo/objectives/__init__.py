"""Objective modules, one per spec `type`. Importing this package registers every built-in objective."""

import importlib

from .base import OBJECTIVES, Objective, ObjectiveContext, ObjectiveOutput

for _name in ("contrastive", "itm", "mlm", "captioning", "distillation", "adversarial"):
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as _err:
        if _err.name != f"{__name__}.{_name}":
            raise

__all__ = ["OBJECTIVES", "Objective", "ObjectiveContext", "ObjectiveOutput"]
