"""COCO captions and Karpathy-split caption datasets (COCO, Flickr30k, Flickr8k), read in their original layouts.

``coco_captions`` — the official COCO caption annotations::

    <path>/
      annotations/captions_train2017.json    {"images": [{"id", "file_name", ...}],
      annotations/captions_val2017.json       "annotations": [{"image_id", "caption", ...}]}
      train2017/000000000009.jpg ...
      val2017/000000000139.jpg ...

  (``year: 2014``: ``captions_train2014.json`` and ``train2014/COCO_train2014_*.jpg``.) Splits: ``train``,
  ``validation``. One row per image with all its captions, in annotation order.

``karpathy`` — the split file of Karpathy & Fei-Fei (2015) used for the COCO 5k / Flickr30k 1k retrieval numbers::

    dataset_coco.json        {"dataset": "coco", "images": [{"filepath": "val2014",
                               "filename": "COCO_val2014_000000391895.jpg", "split": "test",
                               "sentences": [{"raw": "A man with a red helmet ...", ...}, ...]}, ...]}
    <images>/train2014/..., <images>/val2014/...       (COCO: ``filepath`` / ``filename``)
    dataset_flickr30k.json   same, without "filepath"; <images>/1000092795.jpg ...

  Splits: ``train`` (with ``restval`` unless ``include_restval: false``: Karpathy's 113k COCO train images),
  ``validation``, ``test`` (COCO 5k, Flickr30k 1k), ``restval``. Captions are the ``raw`` sentences; the
  retrieval protocol uses the first 5 per image (``captions_per_image: 5``).

>>> from mmzoo.data import KarpathySourceSpec
>>> KarpathySourceSpec(file="data/coco/dataset_coco.json", images="data/coco/images", split="test").split
'test'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from ._layout import build_dataset, entries, field, layout_split, read_json, resolve, trim_captions
from .errors import DataError
from .source_base import LayoutSourceSpec, register_source_spec

COCO_LAYOUT = ("expected the COCO captions layout: <path>/annotations/captions_{train,val}<year>.json and the "
               "images in <path>/{train,val}<year>/ (or set images: to their folder)")
KARPATHY_LAYOUT = ('expected a Karpathy split file (dataset_coco.json / dataset_flickr30k.json): {"images": '
                   '[{"filename", "filepath" (COCO only), "split", "sentences": [{"raw": ...}]}]}')
KARPATHY_SPLITS = ("train", "val", "test", "restval")


@register_source_spec
class CocoCaptionsSourceSpec(LayoutSourceSpec):
    """The official COCO caption annotations (see the module docs for the layout).

    Args:
        path: the COCO folder (holds ``annotations/``), relative to the recipe's folder.
        year: 2017 (``captions_train2017.json``, ``train2017/``) or 2014.
        images: folder of this split's images; default ``<path>/<train|val><year>``.
        captions_per_image: keep the first N captions of each image (an error when an image has fewer).
    """

    source: Literal["coco_captions"] = "coco_captions"
    path: str
    year: Literal[2014, 2017] = 2017
    images: str | None = None
    captions_per_image: int | None = Field(None, ge=1)

    location_field = "path"
    layout_name = "COCO captions"
    row_content_fields = frozenset({"captions_per_image"})

    @field_validator("split")
    @classmethod
    def _split(cls, value: str) -> str:
        layout_split(value, ("train", "val"), "coco_captions")
        return value

    def dataset_info(self) -> tuple[dict[str, Any], dict[str, Any]]:
        name = f"coco-captions:{self.year}"  # not a Hub id (the card lists Hub ids only)
        return ({"name": name, "config": None, "split": self.split, "revision": None},
                {"source": self.source, "path": self.path, **self._captions_protocol(), **self._sample_limit()})

    def _captions_protocol(self) -> dict[str, Any]:
        return {"captions_per_image": self.captions_per_image} if self.captions_per_image else {}

    def load_raw(self, base: Path, cache_dir: str | None):
        from .sources import RawSource

        split = layout_split(self.split, ("train", "val"), "coco_captions")
        root = resolve(base, self.path)
        annotation = root / "annotations" / f"captions_{split}{self.year}.json"
        images = resolve(base, self.images) if self.images else root / f"{split}{self.year}"
        where = f"coco_captions {annotation}"
        data = read_json(annotation, "coco_captions", COCO_LAYOUT)
        files: dict[int, str] = {}
        for i, image in enumerate(entries(data, "images", annotation, COCO_LAYOUT)):
            files[field(image, "id", int, annotation, f"images[{i}]")] = field(
                image, "file_name", str, annotation, f"images[{i}]")
        captions: dict[int, list[str]] = {image_id: [] for image_id in files}
        for i, entry in enumerate(entries(data, "annotations", annotation, COCO_LAYOUT)):
            image_id = field(entry, "image_id", int, annotation, f"annotations[{i}]")
            if image_id not in captions:
                raise DataError(f"{annotation}: annotations[{i}].image_id {image_id} is not the id of an entry of "
                                f"images[]; {COCO_LAYOUT}")
            captions[image_id].append(field(entry, "caption", str, annotation, f"annotations[{i}]").strip())
        rows = [(files[i], caps) for i, caps in captions.items() if caps]  # images without captions: skipped
        if not images.is_dir():
            raise DataError(f"{where}: image folder {images} not found; {COCO_LAYOUT}")
        dataset = build_dataset(
            {"image": [f for f, _ in rows],
             "captions": [trim_captions(c, self.captions_per_image, annotation, f"image {f}") for f, c in rows]},
            self.streaming, f"COCO captions {self.year} {split}")
        return RawSource(dataset, where, images)


@register_source_spec
class KarpathySourceSpec(LayoutSourceSpec):
    """A Karpathy split file (``dataset_coco.json``, ``dataset_flickr30k.json``, ``dataset_flickr8k.json``).

    Args:
        file: the split JSON, relative to the recipe's folder.
        images: folder the image paths are relative to (COCO: holds ``train2014/`` and ``val2014/``; Flickr:
            holds the ``.jpg`` files); default the JSON file's folder.
        split: ``train``, ``validation``, ``test`` or ``restval``.
        include_restval: ``train`` also takes the ``restval`` images (Karpathy's 113k COCO training images).
        captions_per_image: keep the first N captions of each image (the retrieval protocol uses 5; an error
            when an image has fewer).
    """

    source: Literal["karpathy"] = "karpathy"
    file: str
    images: str | None = None
    include_restval: bool = True
    captions_per_image: int | None = Field(None, ge=1)

    location_field = "file"
    layout_name = "Karpathy split"
    row_content_fields = frozenset({"captions_per_image"})

    @field_validator("split")
    @classmethod
    def _split(cls, value: str) -> str:
        layout_split(value, KARPATHY_SPLITS, "karpathy")
        return value

    def dataset_info(self) -> tuple[dict[str, Any], dict[str, Any]]:
        name = f"karpathy:{Path(self.file).stem.removeprefix('dataset_')}"
        protocol = {"source": self.source, "file": self.file, "karpathy_split": self.selected_splits()}
        if self.captions_per_image:
            protocol["captions_per_image"] = self.captions_per_image
        return ({"name": name, "config": None, "split": self.split, "revision": None},
                {**protocol, **self._sample_limit()})

    def selected_splits(self) -> list[str]:
        split = layout_split(self.split, KARPATHY_SPLITS, "karpathy")
        return ["train", "restval"] if split == "train" and self.include_restval else [split]

    def load_raw(self, base: Path, cache_dir: str | None):
        from .sources import RawSource

        path = resolve(base, self.file)
        images = resolve(base, self.images) if self.images else path.parent
        where = f"karpathy {path}"
        if not images.is_dir():
            raise DataError(f"{where}: image folder {images} not found; set images: to the folder holding the "
                            "images (COCO: the one with train2014/ and val2014/)")
        wanted = set(self.selected_splits())
        files, captions = [], []
        for i, image in enumerate(entries(read_json(path, "karpathy", KARPATHY_LAYOUT), "images", path,
                                          KARPATHY_LAYOUT)):
            here = f"images[{i}]"
            if field(image, "split", str, path, here) not in wanted:
                continue
            name = field(image, "filename", str, path, here)
            folder = image.get("filepath")
            sentences = field(image, "sentences", list, path, here)
            texts = [field(s if isinstance(s, dict) else {}, "raw", str, path, f"{here}.sentences[{j}]").strip()
                     for j, s in enumerate(sentences)]
            files.append(f"{folder}/{name}" if folder else name)
            captions.append(trim_captions(texts, self.captions_per_image, path, f"{here} ({name})"))
        if not files:
            raise DataError(f"{where}: no image has split {' or '.join(sorted(wanted))}; {KARPATHY_LAYOUT}")
        dataset = build_dataset({"image": files, "captions": captions}, self.streaming,
                                f"Karpathy split {path.name} {'+'.join(sorted(wanted))}")
        return RawSource(dataset, where, images)

