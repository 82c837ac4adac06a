"""Data layer: built-in offline datasets, data-source specs and loaders, and the image-text collator.

``datasets`` (extra ``mmzoo[train]``) is imported only when data is loaded.
"""

from __future__ import annotations

from .builtin import BUILTIN_DATASETS, BuiltinDataset, list_builtin, load_builtin
from .coco import CocoCaptionsSourceSpec, KarpathySourceSpec
from .audio import PAIR_COLLATORS, AudioTextCollator
from .collator import ImageTextCollator
from .errors import DataError
from .sources import DEFAULT_COLUMNS, SOURCE_LOADERS, BadSampleReport, bad_sample_report, load_source
from .source_base import SOURCE_SPEC_TYPES, LayoutSourceSpec, register_source_spec
from .specs import (
    BuiltinSourceSpec,
    ColumnsSpec,
    CsvSourceSpec,
    DataSpec,
    HFSourceSpec,
    ImageFolderSourceSpec,
    JsonSourceSpec,
    ParquetSourceSpec,
    SourceSpec,
    SourceSpecBase,
    WebDatasetSourceSpec,
)
from .vqa_v2 import VqaV2SourceSpec

__all__ = [
    "AudioTextCollator",
    "BUILTIN_DATASETS",
    "BadSampleReport",
    "BuiltinDataset",
    "BuiltinSourceSpec",
    "ColumnsSpec",
    "CocoCaptionsSourceSpec",
    "CsvSourceSpec",
    "DEFAULT_COLUMNS",
    "DataError",
    "DataSpec",
    "HFSourceSpec",
    "ImageFolderSourceSpec",
    "ImageTextCollator",
    "JsonSourceSpec",
    "KarpathySourceSpec",
    "LayoutSourceSpec",
    "PAIR_COLLATORS",
    "ParquetSourceSpec",
    "SOURCE_LOADERS",
    "SOURCE_SPEC_TYPES",
    "SourceSpec",
    "SourceSpecBase",
    "VqaV2SourceSpec",
    "WebDatasetSourceSpec",
    "bad_sample_report",
    "list_builtin",
    "load_builtin",
    "load_source",
    "register_source_spec",
]
