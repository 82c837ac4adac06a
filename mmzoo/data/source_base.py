"""What every data source spec shares: the common fields, the column mapping, and the per-source methods.

Each source kind is one :class:`SourceSpecBase` subclass registered with :func:`register_source_spec` under its
``source:`` tag; ``data/specs.py`` builds the recipe's tagged union from that registry. A source spec answers the
questions other layers ask about it through methods (no ``if spec.source == ...`` chains elsewhere):

* :meth:`SourceSpecBase.identity` — what selects its rows (two sources with equal identities read the same data);
* :meth:`SourceSpecBase.describe` — a short text for messages;
* :meth:`SourceSpecBase.dataset_info` — the ``dataset`` entry and extra protocol of evaluation results;
* :meth:`SourceSpecBase.hub_dataset` — the Hugging Face dataset id it reads, if any (model cards);
* :meth:`SourceSpecBase.load_raw` — read it (``datasets`` is imported only there).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, model_validator

from .._registry import Registry
from ..specs.base import SpecBase

if TYPE_CHECKING:
    from .sources import RawSource

ROLES = ("image", "caption", "captions", "question", "answers", "label")
# Fields that change how rows are read, not which rows: ignored by identity().
LOADING_OPTIONS = frozenset({"streaming", "shuffle_buffer", "max_samples", "on_bad_sample", "max_length",
                             "image_size"})

SOURCE_SPEC_TYPES: Registry[type[SourceSpecBase]] = Registry("data source")


def register_source_spec(cls: type[SourceSpecBase]) -> type[SourceSpecBase]:
    """Class decorator: register a source spec under the default of its ``source`` field."""
    SOURCE_SPEC_TYPES.register(cls.model_fields["source"].default, cls)
    return cls


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

    source: str
    split: str = "train"
    streaming: bool = False
    shuffle_buffer: int = Field(1000, ge=0, description="streamed training data: rows in the seeded shuffle buffer")
    columns: ColumnsSpec = ColumnsSpec()
    image_size: int | None = Field(None, ge=8)
    max_length: int | None = Field(None, ge=1)
    max_samples: int | None = Field(None, ge=1)
    on_bad_sample: Literal["error", "skip"] = "error"

    # Name of the field that says where the data is (for describe() / dataset_info()).
    location_field: ClassVar[str | None] = None
    # Fields that change what is read from a row but not which rows (e.g. how many captions): not identity.
    row_content_fields: ClassVar[frozenset[str]] = frozenset()

    # -- per-source answers -------------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """What selects the rows: every field but the loading options."""
        return self.model_dump(exclude=set(LOADING_OPTIONS | self.row_content_fields))

    def location(self) -> str:
        """Where the data is, as written in the recipe (a path, a dataset id, or a comma-joined list)."""
        value = getattr(self, self.location_field) if self.location_field else None
        return value if isinstance(value, str) else ",".join(value or [])

    def describe(self) -> str:
        return f"source {self.source} {self.location()!r}, split {self.split!r}"

    def dataset_info(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """``({"name", "config", "split", "revision"}, extra protocol)`` recorded with evaluation results."""
        return ({"name": self.location(), "config": None, "split": self.split, "revision": None},
                {"source": self.source, **self._sample_limit()})

    def hub_dataset(self) -> str | None:
        """The Hugging Face Hub dataset id this source reads (``None``: local files or generated data)."""
        return None

    def load_generated(self):
        """The dataset, already in normalised columns, when mmzoo generates this source instead of reading it
        (built-ins); None for sources that are read (``load_raw``) and then normalised."""
        return None

    def check_without_reading(self) -> str | None:
        """What ``--dry-run`` can state about this source without reading it (generated data, whose params the
        spec already validated); None when its first rows must be read and decoded."""
        return None

    def load_raw(self, base: Path, cache_dir: str | None) -> RawSource:
        """Read the source (relative paths against ``base``) before column normalisation."""
        from .sources import SOURCE_LOADERS

        return SOURCE_LOADERS.get(self.source)(self, base, cache_dir)

    def _sample_limit(self) -> dict[str, Any]:
        return {"source_max_samples": self.max_samples} if self.max_samples is not None else {}


class LayoutSourceSpec(SourceSpecBase):
    """A dataset in its original published layout (annotation files + image folders), read as it is.

    Its loader produces the normalised columns itself, so ``columns:`` does not apply.
    """

    @model_validator(mode="after")
    def _no_columns(self) -> LayoutSourceSpec:
        if self.columns.explicit():
            raise ValueError(
                f"source {self.source} reads the original {self.layout_name} files and produces the normalised "
                f"columns itself; got columns={self.columns.explicit()}; remove columns:"
            )
        return self

    layout_name: ClassVar[str] = "dataset"
