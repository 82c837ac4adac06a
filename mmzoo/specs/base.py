"""Spec base class: strict, frozen pydantic models that round-trip through YAML and JSON (no torch here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import SpecError
from ..utils.redact import bound_message, show_value
from ..utils.safe_yaml import YamlInputError, load_yaml, read_text_file

SPEC_VERSION = 1
S = TypeVar("S", bound="SpecBase")


class SpecBase(BaseModel):
    """Base of every spec: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    @classmethod
    def from_dict(cls: type[S], data: Any, *, source: str | None = None) -> S:
        try:
            return cls.model_validate(data)
        except ValidationError as err:
            raise SpecError(format_validation_error(err, source=source, data=data)) from None

    @classmethod
    def from_yaml(cls: type[S], text: str, *, source: str | None = None) -> S:
        try:
            data = load_yaml(text, source or "<yaml>")
        except YamlInputError as err:
            raise SpecError(str(err)) from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_file(cls: type[S], path: str | Path) -> S:
        path = Path(path)
        if not path.is_file():
            raise SpecError(f"{path}: no such file; pass the path of a YAML or JSON spec")
        try:
            text = read_text_file(path, "spec")
        except YamlInputError as err:
            raise SpecError(str(err)) from None
        return cls.from_yaml(text, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """The full spec with every default filled in, JSON-compatible."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def dotted(loc: tuple[Any, ...], data: Any = None) -> str:
    """('encoders', 0, 'pooling') -> 'encoders.0.pooling' (tagged-union hops are dropped)."""
    parts = []
    for item in loc:
        is_tag_hop = isinstance(data, dict) and item not in data and item in (data.get("type"), data.get("source"))
        if is_tag_hop or (isinstance(item, str) and ("[" in item or "function-" in item)):
            continue
        parts.append(str(item))
        try:
            data = data[item]
        except (KeyError, IndexError, TypeError):
            data = None
    return ".".join(parts)


def _value_at(data: Any, loc: tuple[Any, ...]) -> Any:
    for item in loc:
        try:
            data = data[item]
        except (KeyError, IndexError, TypeError):
            if not (isinstance(data, dict) and item in (data.get("type"), data.get("source"))):
                return None
    return data


def _last_key(loc: tuple[Any, ...]) -> Any:
    return next((item for item in reversed(loc) if isinstance(item, str)), None)


def format_validation_error(err: ValidationError, *, source: str | None = None, data: Any = None) -> str:
    """One line per problem: ``file → dotted.key: message (got value)``."""
    where = f"{source} → " if source else ""
    lines = [f"invalid {err.title} spec ({err.error_count()} problem{'s' if err.error_count() > 1 else ''}):"]
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input", _value_at(data, loc))
        got_text = "" if e["type"] in {"missing"} or isinstance(got, dict) else f" (got {show_value(got, _last_key(loc))})"
        if e["type"] == "union_tag_invalid":
            import difflib

            tags = [t.strip(" '") for t in str(e["ctx"]["expected_tags"]).split(",")]
            close = difflib.get_close_matches(str(e["ctx"]["tag"]), tags, n=1)
            msg = f"unknown type {e['ctx']['tag']!r}; use one of: {', '.join(tags)}"
            msg += f" (did you mean {close[0]!r}?)" if close else ""
            got_text = ""
        if e["type"] == "extra_forbidden":
            msg = "unknown key; remove it or check its spelling against `mmzoo schema`"
        key = dotted(loc, data)
        if not key:  # a cross-field rule: its message starts with the dotted key(s) it concerns
            got_text = ""
        lines.append(f"  {where}{key + ': ' if key else ''}{msg}{got_text}")
    return bound_message("\n".join(lines))
