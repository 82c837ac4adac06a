"""Helpers shared by the original-layout loaders (COCO, Karpathy, VQA v2): JSON reading with errors that name
the file and the entry, split names, and building the normalised ``datasets.Dataset``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import DataError

# Recipe split -> the split names the layouts use.
SPLIT_ALIASES = {"train": "train", "validation": "val", "val": "val", "test": "test"}


def resolve(base: Path, path: str) -> Path:
    return (base / Path(path).expanduser()).resolve()


def layout_split(split: str, allowed: tuple[str, ...], where: str) -> str:
    """The layout's split name for the recipe's ``split:`` (``validation`` -> ``val``)."""
    name = SPLIT_ALIASES.get(split, split)
    if name not in allowed:
        shown = sorted({s for s, v in SPLIT_ALIASES.items() if v in allowed} | set(allowed) - {"val"})
        raise DataError(f"{where}: split {split!r} is not one of this layout's splits ({', '.join(shown)}); "
                        "set split: to one of them (slices such as train[:10%] are not supported; use max_samples)")
    return name


def read_json(path: Path, what: str, layout: str) -> Any:
    """The parsed JSON file ``path``; an error naming the expected layout when it is missing or invalid."""
    if not path.is_file():
        raise DataError(f"{what}: file {path} not found; {layout}")
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{what}: cannot read {path} as JSON: {type(err).__name__}: {err}; {layout}") from None


def entries(data: Any, key: str, path: Path, layout: str) -> list[dict[str, Any]]:
    """``data[key]``, which must be a list of objects."""
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        got = type(value).__name__ if value is not None else "nothing"
        raise DataError(f"{path}: key {key!r} must be a list of objects, found {got}; {layout}")
    return value


def field(entry: dict[str, Any], key: str, kind: type | tuple[type, ...], path: Path, where: str) -> Any:
    """``entry[key]`` checked against ``kind``; an error naming ``path`` and ``where`` (e.g. ``images[3]``)."""
    value = entry.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) or value == "":
        raise DataError(f"{path}: {where}.{key} must be a non-empty {_kind(kind)}, got {value!r}; fix the entry "
                        "or use the original file")
    return value


def _kind(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({str: "string", int: "integer", list: "list", dict: "object"}.get(k, k.__name__) for k in kinds)


def trim_captions(captions: list[str], keep: int | None, path: Path, where: str) -> list[str]:
    """The first ``keep`` captions (all when ``None``); an error when there are fewer."""
    if keep is None:
        return captions
    if len(captions) < keep:
        raise DataError(f"{path}: {where} has {len(captions)} caption(s), fewer than captions_per_image: {keep}; "
                        "lower captions_per_image (or remove it to keep every caption)")
    return captions[:keep]


def build_dataset(columns: dict[str, list[Any]], streaming: bool, description: str):
    """A ``datasets.Dataset`` (``IterableDataset`` when streaming) of the normalised columns."""
    import datasets

    features = {"image": datasets.Value("string")}
    strings = datasets.List(datasets.Value("string"))
    for name in columns:
        if name in ("captions", "answers"):
            features[name] = strings
        elif name == "question":
            features[name] = datasets.Value("string")
    features = datasets.Features(features)
    info = datasets.DatasetInfo(description=description, features=features)
    ds = datasets.Dataset.from_dict(columns, features=features, info=info)
    return ds.to_iterable_dataset() if streaming else ds
