"""Specs of a recipe's ``data:`` section: where the train / eval image-text data come from.

Each source is tagged by ``source:`` (builtin, imagefolder, json, csv, parquet, hf, webdataset, and the original
layouts of published datasets: coco_captions, karpathy, vqa_v2 — see :mod:`mmzoo.data.coco` and
:mod:`mmzoo.data.vqa_v2`). Every source spec class is registered in ``SOURCE_SPEC_TYPES``
(:mod:`mmzoo.data.source_base`); the ``data:`` union below is built from that registry.

```yaml
data:
  train: {source: builtin, name: shapes, params: {num_samples: 10000}, split: train}
  eval:  {source: json, files: data/val.jsonl, columns: {image: file, captions: texts}}
```
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, field_validator, model_validator

from ..specs.base import SpecBase
from .source_base import (
    ROLES,
    SOURCE_SPEC_TYPES,
    ColumnsSpec,
    SourceSpecBase,
    register_source_spec,
)

@register_source_spec
class BuiltinSourceSpec(SourceSpecBase):
    """A generated dataset from :func:`mmzoo.data.load_builtin` (offline). ``params`` go to the generator."""

    source: Literal["builtin"] = "builtin"
    name: str
    params: dict[str, Any] = {}

    @model_validator(mode="after")
    def _check(self) -> BuiltinSourceSpec:
        from .builtin import BUILTIN_DATASETS, builtin_params

        if self.name not in BUILTIN_DATASETS:
            try:
                BUILTIN_DATASETS.get(self.name)
            except KeyError as err:  # its message lists the known names and the closest one
                raise ValueError(f"{err}; set name: to one of them") from None
        if self.columns.explicit():
            raise ValueError(
                f"builtin datasets already have normalised columns; got columns={self.columns.explicit()}; "
                "remove columns:"
            )
        if "split" in self.params:
            raise ValueError(
                f"builtin {self.name!r}: the split goes in split:, not params.split "
                f"(got params.split={self.params['split']!r}); move it to split:"
            )
        size = self.params.get("image_size")
        if size is not None and self.image_size is not None and size != self.image_size:
            raise ValueError(
                f"image_size is set twice with different values (image_size: {self.image_size}, "
                f"params.image_size: {size}); set it once, at image_size:"
            )
        builtin_params(self.name, self.generator_params())  # unknown / invalid params fail here
        return self

    def generator_params(self) -> dict[str, Any]:
        """``params`` plus ``split`` and ``image_size`` (when set) from the common fields."""
        params = {**self.params, "split": self.split}
        if self.image_size is not None:
            params.setdefault("image_size", self.image_size)
        return params

    location_field = "name"

    def load_generated(self):
        """Generated (or read from the cache) by :func:`mmzoo.data.load_builtin`; ``max_samples`` keeps the
        first rows."""
        from .builtin import load_builtin

        ds = load_builtin(self.name, **self.generator_params())
        if self.max_samples is not None:
            ds = ds.select(range(min(self.max_samples, len(ds))))
        return ds.to_iterable_dataset() if self.streaming else ds

    def check_without_reading(self) -> str | None:
        return f"built-in {self.name!r} (generated on first use; params valid)"

    def identity(self) -> dict[str, Any]:
        # name and split only: two seeds of one builtin split draw from the same pool
        return {"source": self.source, "name": self.name, "split": self.split}

    def dataset_info(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Named ``mmzoo:<name>``, its generator version as the revision, its params in the protocol."""
        from .builtin import BUILTIN_DATASETS

        extra = {**self._sample_limit(), "dataset_params": self.generator_params()}
        return ({"name": f"mmzoo:{self.name}", "config": None, "split": self.split,
                 "revision": f"v{BUILTIN_DATASETS.get(self.name).version}"}, extra)


@register_source_spec
class ImageFolderSourceSpec(SourceSpecBase):
    """A folder of images with ``metadata.jsonl`` / ``metadata.csv`` / ``metadata.parquet`` (``file_name``
    column + caption columns), the ``datasets`` ImageFolder convention. Without metadata, sub-folder names
    become the ``label``. ``path`` is relative to the recipe's folder."""

    source: Literal["imagefolder"] = "imagefolder"
    path: str

    location_field = "path"


class _FilesSourceSpec(SourceSpecBase):
    """Table files whose image column holds paths relative to ``root`` (or image bytes, for parquet).

    Args:
        files: one path / glob or a list, relative to the recipe's folder.
        root: folder image paths are relative to; default the folder of the first file. Paths may not leave it.
    """

    files: list[str]
    root: str | None = None

    location_field = "files"

    @field_validator("files", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("files")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("files is empty; give at least one file path or glob")
        return value


@register_source_spec
class JsonSourceSpec(_FilesSourceSpec):
    source: Literal["json"] = "json"


@register_source_spec
class CsvSourceSpec(_FilesSourceSpec):
    source: Literal["csv"] = "csv"


@register_source_spec
class ParquetSourceSpec(_FilesSourceSpec):
    source: Literal["parquet"] = "parquet"


@register_source_spec
class HFSourceSpec(SourceSpecBase):
    """A dataset from the Hugging Face Hub (``datasets.load_dataset``); needs network access unless cached."""

    source: Literal["hf"] = "hf"
    dataset: str = Field(min_length=1)
    config: str | None = None
    revision: str | None = None

    location_field = "dataset"

    def dataset_info(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return ({"name": self.dataset, "config": self.config, "split": self.split, "revision": self.revision},
                self._sample_limit())

    def hub_dataset(self) -> str | None:
        return self.dataset


@register_source_spec
class WebDatasetSourceSpec(SourceSpecBase):
    """WebDataset ``.tar`` shards (paths or globs relative to the recipe's folder); images under keys such as
    ``jpg`` / ``png``, captions under ``txt`` by default."""

    source: Literal["webdataset"] = "webdataset"
    shards: list[str]

    location_field = "shards"

    @field_validator("shards", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("shards")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("shards is empty; give at least one .tar path or glob")
        return value


from . import coco, vqa_v2  # noqa: E402,F401  (register the original-layout sources)

SOURCE_SPECS: tuple[type[SourceSpecBase], ...] = tuple(cls for _, cls in SOURCE_SPEC_TYPES.items())
SourceSpec = Annotated[Union[SOURCE_SPECS], Field(discriminator="source")]  # noqa: UP007 (runtime tuple)


class DataSpec(SpecBase):
    """The ``data:`` section: a ``train`` source and an optional ``eval`` source."""

    train: SourceSpec
    eval: SourceSpec | None = None

    @model_validator(mode="after")
    def _check(self) -> DataSpec:
        if self.eval is not None and self.eval.identity() == self.train.identity():
            raise ValueError(
                f"eval reads the same data as train ({self.train.describe()}); evaluate on held-out data, "
                "e.g. set eval.split: test"
            )
        return self

    def sources(self) -> list[SourceSpecBase]:
        return [s for s in (self.train, self.eval) if s is not None]
