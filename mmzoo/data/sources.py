"""Load a data source spec into a ``datasets.Dataset`` (or ``IterableDataset``) with normalised columns.

Output columns: ``image`` (PIL RGB, see ``mmzoo.data.images``), ``captions`` (list[str]), and ``question`` (str) / ``answers`` (list[str]) /
``label`` when the source has them. Builtin datasets come as generated (they already use these names, plus
their own extra columns). File sources keep only the normalised columns.

Every row is checked once (map-style: at load time; streaming: as it is read): image paths must stay inside
the dataset root (always an error), the image must decode and mapped values must be present. With
``on_bad_sample: error`` the first bad row raises a :class:`DataError` naming the row, column and file; with
``skip`` bad rows are dropped, counted in a :class:`BadSampleReport` (see :func:`bad_sample_report`) and
logged as warnings.

>>> from mmzoo.data import BuiltinSourceSpec, load_source
>>> ds = load_source(BuiltinSourceSpec(name="shapes", params={"num_samples": 4}))  # doctest: +SKIP
"""

from __future__ import annotations

import glob
import re
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._registry import Registry
from ..utils.logging import get_logger
from .errors import DataError
from .specs import (
    CsvSourceSpec,
    HFSourceSpec,
    ImageFolderSourceSpec,
    JsonSourceSpec,
    ParquetSourceSpec,
    SourceSpecBase,
    WebDatasetSourceSpec,
)

if TYPE_CHECKING:
    import datasets

logger = get_logger(__name__)

# Source columns tried, in order, for each normalised column when ``columns.<role>`` is not set.
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "image": ("image", "img", "jpg", "jpeg", "png", "webp", "image_path", "file_name", "path"),
    "captions": ("captions", "caption", "sentences", "texts", "text", "txt"),
    "question": ("question",),
    "answers": ("answers", "answer"),
    "label": ("label", "labels", "cls"),
}
_BAD = "_mmzoo_bad_sample"  # temporary column: "" for a good row, else why it is bad
_REPORT_ATTR = "_mmzoo_bad_samples"
_MAX_LOGGED = 5


@dataclass
class BadSampleReport:
    """Rows dropped by ``on_bad_sample: skip``. For streaming sources it grows as the data is read (in the
    process that iterates; DataLoader workers keep their own copy)."""

    source: str
    skipped: int = 0
    examples: list[str] = field(default_factory=list)  # the first few reasons

    def __deepcopy__(self, memo) -> BadSampleReport:
        # one accumulator per source: `datasets` deep-copies a streamed pipeline (shuffle, set_epoch,
        # split_dataset_by_node), and the copies must count into the report the run reads
        return self

    def add(self, reason: str) -> None:
        self.skipped += 1
        if len(self.examples) < _MAX_LOGGED:
            self.examples.append(reason)
            logger.warning("%s: skipping bad sample (on_bad_sample: skip): %s", self.source, reason)
        elif self.skipped == _MAX_LOGGED + 1:
            logger.warning("%s: more bad samples skipped; see bad_sample_report(dataset)", self.source)


def bad_sample_report(dataset: Any) -> BadSampleReport | None:
    """The report attached by :func:`load_source` (``None`` for builtins and objects it did not return).

    Transformations (``shuffle``, ``map``...) return new objects without it: read it from the loaded dataset.
    """
    return getattr(dataset, _REPORT_ATTR, None)


@dataclass
class RawSource:
    """A loader's result before normalisation."""

    dataset: Any  # datasets.Dataset | datasets.IterableDataset
    where: str  # names the source in messages, e.g. "json files /data/train.jsonl"
    root: Path | None  # image paths must resolve inside it; None: images must be embedded bytes


SOURCE_LOADERS: Registry[Callable[[Any, Path], RawSource]] = Registry("data source")


def load_source(
    spec: SourceSpecBase, base_dir: str | Path = ".", *, cache_dir: str | None = None
) -> datasets.Dataset | datasets.IterableDataset:
    """Load ``spec`` with the ``datasets`` loaders and normalise its columns.

    Args:
        spec: one of the ``*SourceSpec`` classes (``DataSpec.train`` / ``.eval``).
        base_dir: folder relative paths in the spec are resolved against (the recipe's folder).
        cache_dir: ``datasets`` cache folder for file / hub sources (default: the ``datasets`` default).

    Returns:
        A ``Dataset``, or an ``IterableDataset`` when ``spec.streaming``. Read skipped-row counts with
        :func:`bad_sample_report`.
    """
    base = Path(base_dir).expanduser().resolve()
    generated = spec.load_generated()
    if generated is not None:
        return generated
    raw = spec.load_raw(base, cache_dir)
    report = BadSampleReport(raw.where)
    dataset = _normalise(raw, spec, report)
    setattr(dataset, _REPORT_ATTR, report)
    return dataset


# ---------------------------------------------------------------------------------------------- loaders
_SLICE = re.compile(r"^(?P<split>[\w.-]+)\[(?P<start>-?\d+%?)?:(?P<stop>-?\d+%?)?\]$")


def stream_slice(dataset, split: str):
    """Rows of a streamed ``dataset`` selected by the slice in ``split`` (``train[:160]``, ``train[160:]``,
    ``train[10:20]``, ``train[:10%]``, ``train[90%:]``); ``datasets`` slices map-style splits only.

    A percentage keeps the rows whose identity (webdataset key, else the row's paths, strings and a hash of its
    bytes) hashes into ``[start, stop)`` of 100 buckets: the stream's length is unknown, so the fraction is
    drawn across the whole stream rather than from its head, and a row lands on the same side whichever rank
    or DataLoader worker reads it; complementary slices (``[:10%]`` / ``[10%:]``) never share a row. A count
    takes / skips rows in stream order: exact when one process reads the stream (evaluation), but ``datasets``
    divides it between the readers of a stream split over ranks or workers, so use a percentage for a
    held-out split of streamed training data.
    """
    match = _SLICE.match(split.replace(" ", ""))
    if match is None:
        raise DataError(f"split {split!r}: not a slice mmzoo can take from a stream; use e.g. train[:160], "
                        "train[160:] or train[:10%] (a single slice, counts or percentages, no negatives)")
    start, stop = match.group("start"), match.group("stop")
    if any(v is not None and v.startswith("-") for v in (start, stop)) or (
        start and stop and start.endswith("%") != stop.endswith("%")
    ):
        raise DataError(f"split {split!r}: a streamed slice needs non-negative bounds of one kind (counts or "
                        "percentages); use e.g. train[:160] or train[:10%]")
    if (start or stop or "").endswith("%"):
        low, high = int((start or "0%")[:-1]), int((stop or "100%")[:-1])
        if not 0 <= low <= high <= 100:
            raise DataError(f"split {split!r}: percentages must satisfy 0 <= start <= stop <= 100")
        return dataset.filter(lambda row: low <= _row_bucket(row) < high)
    low = int(start or 0)
    if low:
        dataset = dataset.skip(low)
    if stop is not None:
        dataset = dataset.take(max(int(stop) - low, 0))
    return dataset


def _row_bucket(row: dict[str, Any]) -> int:
    """0..99 from a stable identity of a raw row (independent of the reading order)."""
    import hashlib

    if "__key__" in row:
        parts = [str(row.get("__url__", "")), str(row["__key__"])]
    else:
        parts = []
        for key in sorted(row):
            value = row[key]
            if isinstance(value, dict):  # an image / audio cell: its path, else its bytes
                value = value.get("path") or value.get("bytes")
            if isinstance(value, bytes):
                value = hashlib.blake2b(value, digest_size=8).hexdigest()
            if value is None or isinstance(value, (str, int, float, bool, list, tuple)):
                parts.append(f"{key}={value!r}")
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 100


def _call_datasets(where: str, fix: str, **kwargs) -> Any:
    import datasets

    split = kwargs.get("split")
    if kwargs.get("streaming") and isinstance(split, str) and "[" in split:  # sliced after loading (below)
        base = split.split("[")[0]
        try:
            return stream_slice(_call_datasets(where, fix, **{**kwargs, "split": base}), split)
        except DataError as err:
            raise DataError(f"{where}: {err}") from None
    try:
        return datasets.load_dataset(**kwargs)
    except DataError:
        raise
    except Exception as err:
        causes = [err]
        while (nxt := causes[-1].__cause__ or causes[-1].__context__) is not None and len(causes) < 5:
            causes.append(nxt)
        why = " <- ".join(f"{type(e).__name__}: {e}" for e in causes)
        raise DataError(f"{where}: datasets.load_dataset failed: {why.rstrip('.')}. {fix}") from err


def _expand(patterns: list[str], base: Path, what: str, key: str) -> list[str]:
    """Absolute paths of the files matching ``patterns`` (relative to ``base``); error when one matches none."""
    files: list[str] = []
    for pattern in patterns:
        full = str(base / Path(pattern).expanduser())
        matched = sorted(glob.glob(full, recursive=True))
        if not matched:
            raise DataError(f"{what}: {key} entry {pattern!r} matches no file (looked for {full}); fix the path")
        files += matched
    return files


@SOURCE_LOADERS.register("imagefolder")
def _load_imagefolder(spec: ImageFolderSourceSpec, base: Path, cache_dir: str | None) -> RawSource:
    root = (base / Path(spec.path).expanduser()).resolve()
    where = f"imagefolder {root}"
    if not root.is_dir():
        raise DataError(f"{where}: not a folder; set path: to a folder of images (with metadata.jsonl or .csv)")
    ds = _call_datasets(
        where,
        "Check the folder layout (images + metadata.jsonl / metadata.csv with a file_name column) and split.",
        path="imagefolder",
        data_dir=str(root),
        split=spec.split,
        streaming=spec.streaming,
        cache_dir=cache_dir,
    )
    return RawSource(ds, where, root)


def _load_table(
    spec: JsonSourceSpec | CsvSourceSpec | ParquetSourceSpec, base: Path, cache_dir: str | None
) -> RawSource:
    files = _expand(spec.files, base, f"{spec.source} source", "files")
    where = f"{spec.source} files {', '.join(files)}"
    root = (base / Path(spec.root).expanduser()).resolve() if spec.root else Path(files[0]).parent.resolve()
    split = spec.split.split("[")[0]
    ds = _call_datasets(
        where,
        f"Check that the files are valid {spec.source}.",
        path=spec.source,
        data_files={split: files},
        split=spec.split,
        streaming=spec.streaming,
        cache_dir=cache_dir,
    )
    return RawSource(ds, where, root)


for _tag in ("json", "csv", "parquet"):
    SOURCE_LOADERS.register(_tag, _load_table)


@SOURCE_LOADERS.register("hf")
def _load_hf(spec: HFSourceSpec, base: Path, cache_dir: str | None) -> RawSource:
    local = (base / spec.dataset).resolve()
    where = f"hf dataset {spec.dataset!r}" + (f" (config {spec.config!r})" if spec.config else "")
    ds = _call_datasets(
        where,
        "hf sources download from the Hugging Face Hub and need network access (or a copy in the datasets "
        "cache); check the id, config and split, or use a local source (parquet, imagefolder) offline.",
        path=str(local) if local.is_dir() else spec.dataset,
        name=spec.config,
        split=spec.split,
        revision=spec.revision,
        streaming=spec.streaming,
        cache_dir=cache_dir,
    )
    return RawSource(ds, where, local if local.is_dir() else None)


@SOURCE_LOADERS.register("webdataset")
def _load_webdataset(spec: WebDatasetSourceSpec, base: Path, cache_dir: str | None) -> RawSource:
    shards = _expand(spec.shards, base, "webdataset source", "shards")
    where = f"webdataset shards {', '.join(shards)}"
    ds = _call_datasets(
        where,
        "Check that the shards are WebDataset .tar files (samples as <key>.<ext> files).",
        path="webdataset",
        data_files={spec.split.split("[")[0]: shards},
        split=spec.split,
        streaming=spec.streaming,
        cache_dir=cache_dir,
    )
    return RawSource(ds, where, None)


# ------------------------------------------------------------------------------------------ normalising
def _resolve_columns(available: list[str], spec: SourceSpecBase, where: str) -> dict[str, str]:
    """Normalised column -> source column."""
    explicit = spec.columns.explicit()
    if "caption" in explicit:
        explicit["captions"] = explicit.pop("caption")
    chosen: dict[str, str] = {}
    for role, candidates in DEFAULT_COLUMNS.items():
        if role in explicit:
            if explicit[role] not in available:
                key = "caption" if role == "captions" and spec.columns.caption else role
                raise DataError(
                    f"{where}: column {explicit[role]!r} (columns.{key}) not found; available columns: "
                    f"{available}; set columns.{key} to one of them"
                )
            chosen[role] = explicit[role]
        elif found := next((c for c in candidates if c in available and c not in chosen.values()), None):
            chosen[role] = found
    if "image" not in chosen:
        raise DataError(
            f"{where}: no image column (tried {list(DEFAULT_COLUMNS['image'])}); available columns: {available}; "
            "set columns.image"
        )
    if not {"captions", "label", "question"} & chosen.keys():
        raise DataError(
            f"{where}: no caption column (tried {list(DEFAULT_COLUMNS['captions'])}); available columns: "
            f"{available}; set columns.caption (one string per row) or columns.captions (a list per row)"
        )
    return chosen


def _output_features(chosen: dict[str, str], source_features) -> datasets.Features:
    import datasets

    strings = datasets.List(datasets.Value("string"))
    out = {
        "image": datasets.Image(decode=False),
        "captions": strings,
        "question": datasets.Value("string"),
        "answers": strings,
    }
    features = {role: out.get(role) or source_features[col] for role, col in chosen.items()}
    return datasets.Features({**features, _BAD: datasets.Value("string")})


def _normalise(raw: RawSource, spec: SourceSpecBase, report: BadSampleReport):
    import datasets

    ds = raw.dataset
    if spec.streaming and ds.features is None:
        ds = ds._resolve_features()  # peeks at the first rows
    chosen = _resolve_columns(list(ds.features), spec, raw.where)
    if spec.max_samples is not None:
        ds = ds.take(spec.max_samples) if spec.streaming else ds.select(range(min(spec.max_samples, len(ds))))
    ds = ds.select_columns(list(dict.fromkeys(chosen.values())))
    ds = ds.cast_column(chosen["image"], datasets.Image(decode=False))
    check = _RowChecker(raw, chosen, skip=spec.on_bad_sample == "skip")
    features = _output_features(chosen, ds.features)
    kwargs = {} if spec.streaming else {"load_from_cache_file": False, "desc": "Checking samples"}
    ds = ds.map(check, with_indices=True, remove_columns=ds.column_names, features=features, **kwargs)
    if spec.on_bad_sample == "skip":
        if spec.streaming:
            def keep(reason: str) -> bool:  # counts each dropped row as it is read
                if reason:
                    report.add(reason)
                return not reason

            ds = ds.filter(keep, input_columns=_BAD)
        else:
            for reason in (r for r in ds[_BAD] if r):
                report.add(reason)
            ds = ds.filter(lambda bad: not bad, input_columns=_BAD) if report.skipped else ds
            if report.skipped:
                logger.warning("%s: skipped %d bad sample(s) (on_bad_sample: skip)", raw.where, report.skipped)
    ds = ds.remove_columns(_BAD)
    from ._rgb_feature import RGBImage

    return ds.cast_column("image", RGBImage())  # RGB without clipping; JPEGs stay lazy for draft decoding


class _RowChecker:
    """``map`` function: resolves and checks one row, returns it with normalised columns (picklable)."""

    def __init__(self, raw: RawSource, chosen: dict[str, str], skip: bool):
        self.where, self.root, self.chosen, self.skip = raw.where, raw.root, chosen, skip

    def __call__(self, row: dict[str, Any], idx: int) -> dict[str, Any]:
        out: dict[str, Any] = {role: None for role in self.chosen}
        try:
            out["image"] = self._image(row[self.chosen["image"]], idx)
            for role in ("captions", "question", "answers", "label"):
                if role in self.chosen:
                    out[role] = self._value(role, row[self.chosen[role]], idx)
        except _BadSample as bad:
            if not self.skip:
                raise DataError(f"{self.where}: {bad}. Fix or remove the row, or set on_bad_sample: skip") from None
            out[_BAD] = str(bad)
            out["image"] = None
            return out
        out[_BAD] = ""
        return out

    def _image(self, value: dict | None, idx: int) -> dict:
        from PIL import Image

        col = self.chosen["image"]
        if value is None or (value.get("bytes") is None and not value.get("path")):
            raise _BadSample(f"row {idx}: column {col!r} is empty")
        data, path = value.get("bytes"), value.get("path")
        if data is None:
            path = str(self._inside_root(path, idx))
            if not Path(path).is_file():
                raise _BadSample(f"row {idx}: column {col!r}: image file {path} not found")
        try:
            with Image.open(io.BytesIO(data) if data is not None else path) as img:
                img.load()
        except Exception as err:
            what = f"image file {path}" if data is None else "image bytes"
            raise _BadSample(f"row {idx}: column {col!r}: cannot decode {what}: {type(err).__name__}: {err}") from None
        return {"bytes": data, "path": path}

    def _inside_root(self, path: str, idx: int) -> Path:
        col = self.chosen["image"]
        if "://" in path:
            raise DataError(f"{self.where}: row {idx}: column {col!r}: image path {path!r} is a URL; "
                            "give a path relative to the dataset root, or image bytes")
        if self.root is None:
            raise DataError(
                f"{self.where}: row {idx}: column {col!r} holds the path {path!r} but this source has no root "
                "folder to resolve it in; store the image bytes in the dataset"
            )
        resolved = (self.root / path).resolve()
        if not resolved.is_relative_to(self.root):
            raise DataError(
                f"{self.where}: row {idx}: column {col!r}: image path {path!r} resolves to {resolved}, outside "
                f"the dataset root {self.root}; keep images under the root (or set root: to a folder above them)"
            )
        return resolved

    def _value(self, role: str, value: Any, idx: int) -> Any:
        col = self.chosen[role]
        if role in ("captions", "answers"):
            if isinstance(value, str):
                value = [value]
            if isinstance(value, list):  # VQA-style answers: [{"answer": ...}, ...]
                value = [v.get("answer") if isinstance(v, dict) else v for v in value]
            if not value or not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise _BadSample(
                    f"row {idx}: column {col!r} needs a non-empty string or list of strings, got {value!r}"
                )
        elif value is None or value == "":
            raise _BadSample(f"row {idx}: column {col!r} is empty")
        return value


class _BadSample(Exception):
    pass
