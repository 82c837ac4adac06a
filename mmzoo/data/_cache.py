"""On-disk cache of generated datasets: one folder per (name, generator version, params), written atomically."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datasets


def cache_root() -> Path:
    """``$MMZOO_CACHE`` if set, else ``~/.cache/mmzoo``."""
    return Path(os.environ.get("MMZOO_CACHE") or Path.home() / ".cache" / "mmzoo").expanduser()


def cache_key(name: str, version: int, params: dict[str, Any]) -> str:
    blob = json.dumps({"name": name, "version": version, "params": params}, sort_keys=True)
    return f"{name}-v{version}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def cached_dataset(
    name: str,
    version: int,
    params: dict[str, Any],
    build: Callable[[], datasets.Dataset],
    cache_dir: str | Path | None = None,
) -> datasets.Dataset:
    """Load the dataset cached for ``params`` or ``build()`` it and cache it.

    The dataset is saved into a temporary folder next to its final place, then renamed, so a crash or a
    concurrent writer never leaves a half-written cache entry behind.
    """
    import datasets

    parent = Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "datasets"
    final = parent / cache_key(name, version, params)
    if not (final / "dataset_info.json").is_file():
        parent.mkdir(parents=True, exist_ok=True)
        ds = build()
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=parent))
        try:
            ds.save_to_disk(str(tmp))
            (tmp / "mmzoo_params.json").write_text(json.dumps({"name": name, "version": version, "params": params}))
            os.rename(tmp, final)
        except OSError:
            if not (final / "dataset_info.json").is_file():  # not a lost race with another writer: a real error
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(str(final))
