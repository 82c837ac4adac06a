"""Turn what a user passes (ModelSpec, dict, YAML/JSON path or preset name) into a ModelSpec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import SpecError
from .presets import PRESETS, preset_path
from .specs import ModelSpec


def load_spec(source: ModelSpec | dict[str, Any] | str | Path) -> ModelSpec:
    """A ModelSpec from a spec object, a dict, a spec file path or a preset name (see `mmzoo zoo list`)."""
    if isinstance(source, ModelSpec):
        return source
    if isinstance(source, dict):
        return ModelSpec.from_dict(source)
    path = Path(source)
    if path.suffix in {".yaml", ".yml", ".json"} or path.is_file():
        return ModelSpec.from_file(path)
    if str(source) in PRESETS:
        return ModelSpec.from_file(preset_path(str(source)))
    if "/" in str(source) or (path / "config.json").is_file():
        raise SpecError(f"{source}: not a spec file or preset; to load a saved model use AutoModel.from_pretrained")
    PRESETS.get(str(source))  # raises with the list of presets and the closest match
    raise AssertionError("unreachable")
