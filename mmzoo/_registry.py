"""A small generic registry: short snake_case tags mapped to objects (spec classes, builders, presets)."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import UnknownComponentError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps tags to entries of one component kind.

    Re-registering a tag is an error unless ``override=True``; an unknown tag lists the known ones and the
    closest match.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, tag: str, entry: T | None = None, *, override: bool = False):
        """Register ``entry`` under ``tag``; without ``entry`` returns a decorator."""

        def add(obj: T) -> T:
            if tag in self._entries and not override and self._entries[tag] is not obj:
                raise ValueError(
                    f"{self.kind} {tag!r} is already registered ({self._entries[tag]!r}); "
                    "pick another tag or pass override=True"
                )
            self._entries[tag] = obj
            return obj

        return add(entry) if entry is not None else add

    def get(self, tag: str) -> T:
        try:
            return self._entries[tag]
        except KeyError:
            close = difflib.get_close_matches(tag, self._entries, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownComponentError(
                f"unknown {self.kind} {tag!r}{hint} Known: {', '.join(sorted(self._entries)) or '(none)'}"
            ) from None

    def list(self, pattern: str = "*") -> list[str]:
        return sorted(t for t in self._entries if fnmatch.fnmatch(t, pattern))

    def items(self) -> Iterator[tuple[str, T]]:
        return iter(sorted(self._entries.items()))

    def __contains__(self, tag: object) -> bool:
        return tag in self._entries

    def __len__(self) -> int:
        return len(self._entries)


def lazy_builder(import_path: str) -> Callable:
    """A builder that imports ``module:attr`` on first call (keeps spec modules free of torch)."""

    def build(*args, **kwargs):
        import importlib

        module, attr = import_path.split(":")
        return getattr(importlib.import_module(module), attr)(*args, **kwargs)

    build.__qualname__ = f"lazy({import_path})"
    return build
