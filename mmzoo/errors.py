"""Exceptions raised by mmzoo. Each message states what was wrong, the value seen and how to fix it."""

from __future__ import annotations


class MmzooError(Exception):
    """Base class of every mmzoo error."""


class SpecError(MmzooError, ValueError):
    """A model spec (YAML or Python) is invalid."""


class UnknownComponentError(MmzooError, KeyError):
    """A registry tag (fusion, objective, preset, ...) is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class RecipeError(MmzooError, ValueError):
    """A recipe file is invalid or cannot be run."""


class BuildError(MmzooError, RuntimeError):
    """A valid spec could not be turned into a model (missing weights, shape mismatch...)."""


class HubError(MmzooError, RuntimeError):
    """Publishing to or loading from the Hub failed."""
