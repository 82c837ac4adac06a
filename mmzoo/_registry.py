"""A small generic registry: short snake_case tags mapped to objects (spec classes, builders, presets)."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

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


@dataclass
class Component:
    """One registry entry of a component kind: its ``spec`` class (which declares the capabilities as ClassVars:
    ``provides``, ``requires``, ``scores_pairs``, ...) and the ``builder`` (the torch module class) that the
    implementation module attaches when it is imported."""

    tag: str
    spec: Any = None
    builder: Any = None


class ComponentRegistry:
    """One entry per tag for a component kind (fusion, objective), shared by the torch-free spec side and the
    torch side: ``specs`` and ``builders`` are two views of the same entries, so they cannot drift apart.

    ``specs.register(tag, SpecClass)`` (in ``mmzoo.specs``) creates the entry; ``builders.register(tag)`` (a class
    decorator in the implementation module) fills its builder and refuses a tag without a spec.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.entries: dict[str, Component] = {}
        self.specs = _View(self, "spec", f"{kind} type")
        self.builders = _View(self, "builder", f"{kind} module")

    def entry(self, tag: str) -> Component:
        if tag not in self.entries:
            self.specs.get(tag)  # raises the close-match error
        return self.entries[tag]


class _View(Registry):
    """The ``spec`` or ``builder`` side of a ComponentRegistry, with the Registry interface."""

    def __init__(self, owner: ComponentRegistry, field: str, kind: str) -> None:
        super().__init__(kind)
        self._owner, self._field = owner, field

    @property
    def _entries(self) -> dict:  # type: ignore[override]
        field = self._field
        return {t: getattr(c, field) for t, c in self._owner.entries.items() if getattr(c, field) is not None}

    @_entries.setter
    def _entries(self, value) -> None:  # Registry.__init__ assigns it; the entries live in the owner
        pass

    def register(self, tag: str, entry=None, *, override: bool = False):
        def add(obj):
            current = self._owner.entries.get(tag)
            if self._field == "builder" and current is None:
                raise ValueError(
                    f"{self.kind} {tag!r} has no spec class; register its spec first "
                    f"(mmzoo.specs: {self._owner.kind} spec registry) so the tag is known to ModelSpec"
                )
            old = getattr(current, self._field, None) if current is not None else None
            if old is not None and old is not obj and not override:
                raise ValueError(
                    f"{self.kind} {tag!r} is already registered ({old!r}); pick another tag or pass override=True"
                )
            if current is None:
                current = self._owner.entries[tag] = Component(tag)
            setattr(current, self._field, obj)
            return obj

        return add(entry) if entry is not None else add
