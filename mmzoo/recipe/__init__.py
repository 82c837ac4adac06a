"""Recipes: one YAML file describing a whole run (model, data, training, evaluation, hub)."""

from .loader import load_recipe, parse_assignment, resolve_model_spec, set_dotted
from .schema import (
    EvaluationTaskSpec,
    HubSpec,
    ModelSourceSpec,
    RecipeSpec,
    TrainingSpec,
)

__all__ = [
    "EvaluationTaskSpec",
    "HubSpec",
    "ModelSourceSpec",
    "RecipeSpec",
    "TrainingSpec",
    "load_recipe",
    "parse_assignment",
    "resolve_model_spec",
    "set_dotted",
]
