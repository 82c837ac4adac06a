"""Objective modules, one per spec `type`. Importing this package registers every built-in objective."""

from .base import OBJECTIVES, Objective, ObjectiveContext, ObjectiveOutput

# every built-in module registers its builders on import; an import error is a packaging error and surfaces
from . import contrastive, itm, mlm, captioning, distillation, adversarial  # noqa: F401,E402

__all__ = ["OBJECTIVES", "Objective", "ObjectiveContext", "ObjectiveOutput"]
