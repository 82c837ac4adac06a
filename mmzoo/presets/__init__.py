"""Zoo presets: ModelSpec YAML files shipped in this folder, listed and loaded by name."""

from __future__ import annotations

from pathlib import Path

from .._registry import Registry

PRESET_DIR = Path(__file__).parent
PRESETS: Registry[Path] = Registry("preset")
for _path in sorted(PRESET_DIR.glob("*.yaml")):
    PRESETS.register(_path.stem, _path)


def list_presets(pattern: str = "*") -> list[str]:
    return PRESETS.list(pattern)


def preset_path(name: str) -> Path:
    return PRESETS.get(name)
