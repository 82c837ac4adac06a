"""Specs of a recipe's ``data:`` section: where the train / eval image-text data come from.

Each source is tagged by ``source:`` (builtin, imagefolder, json, csv, parquet, hf, webdataset).

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

ROLES = ("image", "caption", "captions", "question", "answers", "label")


class ColumnsSpec(SpecBase):
    """Source column name for each normalised column; ``None`` = auto-detect (see ``sources.DEFAULT_COLUMNS``).

    ``caption`` holds one string per row, ``captions`` a list of strings (or one string); set at most one.
    """

    image: str | None = None
    caption: str | None = None
    captions: str | None = None
    question: str | None = None
    answers: str | None = None
    label: str | None = None

    @model_validator(mode="after")
    def _check(self) -> ColumnsSpec:
        if self.caption and self.captions:
            raise ValueError(
                f"columns.caption and columns.captions both set ({self.caption!r}, {self.captions!r}); "
                "set only one: caption for one string per row, captions for a list"
            )
        if self.answers and not self.question:
            raise ValueError(
                f"columns.answers ({self.answers!r}) needs columns.question; set columns.question to the "
                "column holding the questions"
            )
        return self

    def explicit(self) -> dict[str, str]:
        """role -> source column, for the roles set explicitly."""
        return {role: col for role in ROLES if (col := getattr(self, role))}


class SourceSpecBase(SpecBase):
    """Fields shared by every source.

    Args:
        split: split to read (``train``, ``validation``, ``test``), or a slice of it: a count (``train[:160]``,
            ``train[160:]``) or a percentage (``train[:10%]``). Streamed, a count takes / skips rows of the
            stream and a percentage keeps the rows whose index modulo 100 falls in the range (both deterministic;
            complementary slices never share a row).
        streaming: return a ``datasets.IterableDataset`` read lazily instead of a ``Dataset``.
        shuffle_buffer: streamed training data: rows in the seeded shuffle buffer (shard order is shuffled too;
            0 keeps the stream order).
        columns: source column per normalised column (image / caption / captions / question / answers / label).
        image_size: side in pixels the model sees; read by the trainer to build the processor (builtins:
            also the generated size).
        max_length: tokenizer max length, read by the collator.
        max_samples: keep the first ``max_samples`` rows (before bad samples are dropped).
        on_bad_sample: ``error`` stops at the first corrupt image / missing value and names it; ``skip`` drops
            such rows, counts them and logs a warning.
    """

    split: str = "train"
    streaming: bool = False
    shuffle_buffer: int = Field(1000, ge=0, description="streamed training data: rows in the seeded shuffle buffer")
    columns: ColumnsSpec = ColumnsSpec()
    image_size: int | None = Field(None, ge=8)
    max_length: int | None = Field(None, ge=1)
    max_samples: int | None = Field(None, ge=1)
    on_bad_sample: Literal["error", "skip"] = "error"


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


class ImageFolderSourceSpec(SourceSpecBase):
    """A folder of images with ``metadata.jsonl`` / ``metadata.csv`` / ``metadata.parquet`` (``file_name``
    column + caption columns), the ``datasets`` ImageFolder convention. Without metadata, sub-folder names
    become the ``label``. ``path`` is relative to the recipe's folder."""

    source: Literal["imagefolder"] = "imagefolder"
    path: str


class _FilesSourceSpec(SourceSpecBase):
    """Table files whose image column holds paths relative to ``root`` (or image bytes, for parquet).

    Args:
        files: one path / glob or a list, relative to the recipe's folder.
        root: folder image paths are relative to; default the folder of the first file. Paths may not leave it.
    """

    files: list[str]
    root: str | None = None

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


class JsonSourceSpec(_FilesSourceSpec):
    source: Literal["json"] = "json"


class CsvSourceSpec(_FilesSourceSpec):
    source: Literal["csv"] = "csv"


class ParquetSourceSpec(_FilesSourceSpec):
    source: Literal["parquet"] = "parquet"


class HFSourceSpec(SourceSpecBase):
    """A dataset from the Hugging Face Hub (``datasets.load_dataset``); needs network access unless cached."""

    source: Literal["hf"] = "hf"
    dataset: str = Field(min_length=1)
    config: str | None = None
    revision: str | None = None


class WebDatasetSourceSpec(SourceSpecBase):
    """WebDataset ``.tar`` shards (paths or globs relative to the recipe's folder); images under keys such as
    ``jpg`` / ``png``, captions under ``txt`` by default."""

    source: Literal["webdataset"] = "webdataset"
    shards: list[str]

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


SOURCE_SPECS: tuple[type[SourceSpecBase], ...] = (
    BuiltinSourceSpec,
    ImageFolderSourceSpec,
    JsonSourceSpec,
    CsvSourceSpec,
    ParquetSourceSpec,
    HFSourceSpec,
    WebDatasetSourceSpec,
)
SourceSpec = Annotated[Union[SOURCE_SPECS], Field(discriminator="source")]  # noqa: UP007 (runtime tuple)


class DataSpec(SpecBase):
    """The ``data:`` section: a ``train`` source and an optional ``eval`` source."""

    train: SourceSpec
    eval: SourceSpec | None = None

    @model_validator(mode="after")
    def _check(self) -> DataSpec:
        if self.eval is not None and _identity(self.eval) == _identity(self.train):
            raise ValueError(
                f"eval reads the same data as train ({_describe(self.train)}); evaluate on held-out data, "
                "e.g. set eval.split: test"
            )
        return self


def _identity(spec: SourceSpecBase) -> dict[str, Any]:
    """What selects the rows: everything but the loading options (for builtins: name and split only, since
    two seeds of one builtin split draw from the same pool)."""
    if isinstance(spec, BuiltinSourceSpec):
        return {"source": spec.source, "name": spec.name, "split": spec.split}
    return spec.model_dump(exclude={"streaming", "shuffle_buffer", "max_samples", "on_bad_sample", "max_length",
                                    "image_size"})


def _describe(spec: SourceSpecBase) -> str:
    what = {"builtin": "name", "imagefolder": "path", "hf": "dataset"}.get(spec.source)
    target = getattr(spec, what) if what else getattr(spec, "files", getattr(spec, "shards", None))
    return f"source {spec.source} {target!r}, split {spec.split!r}"
