"""Pure-pydantic specs (no torch, no transformers): the schema of every mmzoo model."""

from __future__ import annotations

import os

from .base import SPEC_VERSION, SpecBase, format_validation_error
from .encoders import BUILTIN_TOKENIZER, EncoderSpec, ProjectionSpec
from .fusion import FUSION_SPECS, FusionSpecBase, TeacherSpec
from .objectives import OBJECTIVE_SPECS, ObjectiveSpecBase
from .peft import LoraSpec


def _load_plugins() -> None:
    """Import entry points of group ``mmzoo.components`` (they register spec classes) before unions are built."""
    if os.environ.get("MMZOO_DISABLE_PLUGINS", "").lower() in {"1", "true", "yes"}:
        return
    import warnings
    from importlib.metadata import entry_points

    for ep in entry_points(group="mmzoo.components"):
        try:
            ep.load()
        except Exception as err:  # a broken plugin must not break mmzoo
            warnings.warn(f"mmzoo plugin {ep.name!r} failed to load: {err}", stacklevel=2)


_load_plugins()

from .model import FusionSpec, ModelSpec, ObjectiveSpec  # noqa: E402  (after plugins registered)

__all__ = [
    "BUILTIN_TOKENIZER",
    "EncoderSpec",
    "FUSION_SPECS",
    "FusionSpec",
    "FusionSpecBase",
    "LoraSpec",
    "ModelSpec",
    "OBJECTIVE_SPECS",
    "ObjectiveSpec",
    "ObjectiveSpecBase",
    "ProjectionSpec",
    "SPEC_VERSION",
    "SpecBase",
    "TeacherSpec",
    "format_validation_error",
]
