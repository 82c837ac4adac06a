"""Spec base class: strict, frozen pydantic models that round-trip through YAML and JSON (no torch here)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from ..errors import SpecError
from ..utils.redact import bound_message, show_value
from ..utils.safe_yaml import YamlInputError, load_yaml, read_text_file

SPEC_VERSION = 1
S = TypeVar("S", bound="SpecBase")


class Renamed(NamedTuple):
    """A deprecated spec key: read as ``new`` = ``convert(old value)`` (``how`` says the conversion)."""

    new: str
    convert: Callable[[Any], Any]
    how: str


class SpecBase(BaseModel):
    """Base of every spec: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    # deprecated keys this spec still reads (spec files and the config.json of saved models keep loading)
    renamed_keys: ClassVar[dict[str, Renamed]] = {}

    @model_validator(mode="before")
    @classmethod
    def _read_renamed_keys(cls, data: Any) -> Any:
        if not cls.renamed_keys or not isinstance(data, dict) or not any(k in data for k in cls.renamed_keys):
            return data
        data = dict(data)
        for old, rename in cls.renamed_keys.items():
            if old not in data:
                continue
            value = data.pop(old)
            try:
                converted = rename.convert(value)
            except (TypeError, ValueError, ArithmeticError):
                raise ValueError(f"{old} (deprecated, read as {rename.new} = {rename.how}): cannot convert "
                                 f"{value!r}; write {rename.new} instead") from None
            given = data.get(rename.new, cls.model_fields[rename.new].default)
            if rename.new in data and given != cls.model_fields[rename.new].default and given != converted:
                raise ValueError(f"{old} (deprecated) = {value!r} and {rename.new} = {given!r} disagree "
                                 f"({rename.new} = {rename.how}); keep only {rename.new}")
            data[rename.new] = converted
            warnings.warn(f"spec key `{old}: {value!r}` is deprecated and read as `{rename.new}: {converted:.6g}` "
                          f"({rename.how}); write `{rename.new}` instead", FutureWarning, stacklevel=2)
        return data

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


def deprecated_keys() -> set[str]:
    """Every deprecated key some spec class still reads (``renamed_keys``)."""
    found: set[str] = set()
    stack = [SpecBase]
    while stack:
        cls = stack.pop()
        found.update(cls.__dict__.get("renamed_keys", {}))
        stack.extend(cls.__subclasses__())
    return found


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


def validation_problems(err: ValidationError, data: Any = None, *, whole: str = "",
                        schema_hint: bool = True) -> list[str]:
    """One ``dotted.key: message (got value)`` line per problem of ``err``: tagged-union hops dropped, values
    shown redacted and bounded, pydantic's wording replaced for unknown keys and unknown ``type`` tags.
    ``whole`` names a problem of the whole object (a cross-field rule, whose message names its keys itself);
    ``schema_hint`` points unknown keys at ``mmzoo schema`` (for specs; other callers list what is accepted)."""
    problems = []
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
            msg = "unknown key; remove it or check its spelling" + (" against `mmzoo schema`" if schema_hint else "")
        key = dotted(loc, data) or whole
        if not key:  # a cross-field rule: its message starts with the dotted key(s) it concerns
            got_text = ""
        problems.append(f"{key + ': ' if key else ''}{msg}{got_text}")
    return problems


def format_validation_error(err: ValidationError, *, source: str | None = None, data: Any = None) -> str:
    """One line per problem: ``file → dotted.key: message (got value)``."""
    where = f"{source} → " if source else ""
    lines = [f"invalid {err.title} spec ({err.error_count()} problem{'s' if err.error_count() > 1 else ''}):"]
    lines += [f"  {where}{problem}" for problem in validation_problems(err, data)]
    return bound_message("\n".join(lines))
