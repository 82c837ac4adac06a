"""Built-in offline datasets (generated or bundled, never downloaded), cached on disk.

>>> from mmzoo.data import load_builtin
>>> ds = load_builtin("shapes", num_samples=8, image_size=32)  # doctest: +SKIP
>>> ds.column_names  # doctest: +SKIP
['image', 'captions', 'questions', 'answers', 'question_types', 'objects']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from ..._registry import Registry
from ...specs.base import validation_problems
from ..errors import DataError

if TYPE_CHECKING:
    import datasets


@dataclass(frozen=True)
class BuiltinDataset:
    """A registry entry: a params model (pydantic, extra="forbid") and a function building the dataset."""

    params: type[BaseModel]
    build: Callable[[Any], datasets.Dataset]  # called with a validated params instance
    version: int  # bump when the output for the same params changes (invalidates the cache)
    description: str


BUILTIN_DATASETS: Registry[BuiltinDataset] = Registry("builtin dataset")


def list_builtin() -> list[str]:
    """Names of the built-in datasets."""
    return BUILTIN_DATASETS.list()


def builtin_params(name: str, params: dict[str, Any]) -> BaseModel:
    """Validate ``params`` for builtin ``name``; the error lists the accepted params."""
    entry = BUILTIN_DATASETS.get(name)
    try:
        return entry.params.model_validate(params)
    except ValidationError as err:
        problems = "; ".join(validation_problems(err, params, whole="(params)", schema_hint=False))
        accepted = ", ".join(entry.params.model_fields)
        raise DataError(
            f"builtin dataset {name!r}: invalid params {params!r}: {problems}. Accepted params: {accepted}"
        ) from None


def load_builtin(
    name: str, *, cache_dir: str | Path | None = None, use_cache: bool = True, **params: Any
) -> datasets.Dataset:
    """Generate (or load from the cache) the built-in dataset ``name``.

    Args:
        name: one of :func:`list_builtin` (``"shapes"``, ``"digits"``).
        cache_dir: folder for cached datasets; default ``$MMZOO_CACHE/datasets`` or ``~/.cache/mmzoo/datasets``.
        use_cache: ``False`` builds in memory and writes nothing.
        **params: the dataset's params (e.g. ``num_samples``, ``seed``, ``image_size``, ``split``).

    Returns:
        A ``datasets.Dataset`` with at least ``image`` (PIL) and ``captions`` (list of str).
    """
    from .._cache import cached_dataset

    entry = BUILTIN_DATASETS.get(name)
    validated = builtin_params(name, params)
    if not use_cache:
        return entry.build(validated)
    return cached_dataset(
        name, entry.version, validated.model_dump(mode="json"), lambda: entry.build(validated), cache_dir
    )


def _register_defaults() -> None:
    from . import digits, shapes, tones

    BUILTIN_DATASETS.register("shapes", BuiltinDataset(shapes.ShapesParams, shapes.build, shapes.VERSION,
                                                       shapes.__doc__.splitlines()[0]))
    BUILTIN_DATASETS.register("digits", BuiltinDataset(digits.DigitsParams, digits.build, digits.VERSION,
                                                       digits.__doc__.splitlines()[0]))
    BUILTIN_DATASETS.register("tones", BuiltinDataset(tones.TonesParams, tones.build, tones.VERSION,
                                                      tones.__doc__.splitlines()[0]))


_register_defaults()

__all__ = ["BUILTIN_DATASETS", "BuiltinDataset", "builtin_params", "list_builtin", "load_builtin"]
