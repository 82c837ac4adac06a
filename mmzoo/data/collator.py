"""Batch image-caption rows into model inputs with a processor (``transformers.Trainer`` ``data_collator``)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any, Literal

from .images import prepare_image, target_size

CaptionSampling = Literal["random", "first", "all"]
_KEEP = ("input_ids", "attention_mask", "pixel_values")
NEGATIVE_CAPTIONS = "negative_captions"  # optional column: captions that almost describe the image


class ImageTextCollator:
    """Pick captions, then run ``processor(text=..., images=...)`` on the batch.

    Args:
        processor: callable like a ``transformers`` ``ProcessorMixin`` (e.g. ``MmzooProcessor``): takes
            ``text=list[str], images=list[PIL.Image]`` plus tokenizer kwargs and returns ``input_ids``,
            ``attention_mask`` and ``pixel_values``.
        max_length: tokenizer max length; ``None`` uses the tokenizer's own limit.
        caption_sampling: ``"random"`` one caption per image, drawn anew each call (training);
            ``"first"`` the first caption (deterministic eval); ``"all"`` every caption, with ``image_ids``
            (shape ``(num_texts,)``) giving each text's image index in the batch (retrieval eval).
        seed: seed of the ``"random"`` draw (each DataLoader worker holds a copy, so reseed per worker if
            workers must differ).
        padding: ``"max_length"`` (default when ``max_length`` is set: fixed shapes) or ``"longest"``
            (default otherwise).

    Rows are dicts with ``image`` (PIL image of any mode; converted to RGB) and ``captions`` (list of str, or
    one str; ``caption`` is accepted too). Returns a dict of tensors: ``input_ids`` and ``attention_mask``
    ``(num_texts, seq_len)``, ``pixel_values`` ``(batch, 3, H, W)``, and ``image_ids`` for ``"all"``. When the
    rows also have ``negative_captions`` (and sampling is not ``"all"``), one of them per row is picked the same
    way and tokenized as ``negative_input_ids`` / ``negative_attention_mask`` ``(batch, seq_len)``: the hard
    negative captions of ``objectives.itm.caption_negatives``.

    >>> collate = ImageTextCollator(processor, max_length=32, caption_sampling="first")  # doctest: +SKIP
    >>> batch = collate([{"image": img, "captions": ["a red circle"]}])  # doctest: +SKIP
    """

    def __init__(
        self,
        processor: Callable[..., Any],
        max_length: int | None = None,
        caption_sampling: CaptionSampling = "random",
        seed: int = 0,
        padding: Literal["max_length", "longest"] | None = None,
    ) -> None:
        if caption_sampling not in ("random", "first", "all"):
            raise ValueError(
                f"caption_sampling must be 'random', 'first' or 'all', got {caption_sampling!r}"
            )
        if padding == "max_length" and max_length is None:
            raise ValueError("padding='max_length' needs max_length; set max_length or use padding='longest'")
        self.processor = processor
        self.max_length = max_length
        self.caption_sampling = caption_sampling
        self.padding = padding or ("max_length" if max_length is not None else "longest")
        self._rng = random.Random(seed)

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        if not rows:
            raise ValueError("ImageTextCollator got an empty batch")
        images, texts, image_ids = [], [], []
        size = target_size(self.processor)
        for i, row in enumerate(rows):
            images.append(_rgb(row, i, size))
            picked = self._pick(_captions(row, i))
            texts += picked
            image_ids += [i] * len(picked)
        kwargs = {"truncation": True, "padding": self.padding, "return_tensors": "pt"}
        if self.max_length is not None:
            kwargs["max_length"] = self.max_length
        encoded = self.processor(text=texts, images=images, **kwargs)
        batch = {key: encoded[key] for key in _KEEP if key in encoded}
        missing = [key for key in _KEEP if key not in batch]
        if missing:
            raise ValueError(f"the processor output lacks {missing} (it has {list(encoded.keys())})")
        if self.caption_sampling == "all":
            batch["image_ids"] = torch.tensor(image_ids, dtype=torch.long)
        elif all(row.get(NEGATIVE_CAPTIONS) for row in rows):
            negatives = [self._pick(_texts(row[NEGATIVE_CAPTIONS]))[0] for row in rows]
            tokens = self.processor.tokenizer(negatives, **kwargs)  # the processor's own tokenizer, same settings
            batch["negative_input_ids"] = tokens["input_ids"]
            batch["negative_attention_mask"] = tokens["attention_mask"]
        return batch

    def _pick(self, captions: list[str]) -> list[str]:
        if self.caption_sampling == "all":
            return list(captions)
        if self.caption_sampling == "first":
            return [captions[0]]
        return [captions[self._rng.randrange(len(captions))]]


def _rgb(row: dict[str, Any], i: int, size: tuple[int, int] | None = None):
    image = row.get("image")
    if image is None or not hasattr(image, "convert"):
        raise ValueError(
            f"batch row {i}: 'image' must be a PIL image, got {type(image).__name__} (row keys: {sorted(row)}). "
            "Load data with mmzoo.data.load_source; with transformers.Trainer set remove_unused_columns=False"
        )
    return prepare_image(image, size)  # draft-decodes lazy JPEGs at >= size; any mode to RGB without clipping


def _texts(texts: str | list[str]) -> list[str]:
    return [texts] if isinstance(texts, str) else list(texts)


def _captions(row: dict[str, Any], i: int) -> list[str]:
    captions = row.get("captions", row.get("caption"))
    if isinstance(captions, str):
        captions = [captions]
    if not captions or not all(isinstance(c, str) for c in captions):
        raise ValueError(
            f"batch row {i}: needs 'captions' (non-empty list of str) or 'caption', got {captions!r} "
            f"(row keys: {sorted(row)}). With transformers.Trainer set remove_unused_columns=False"
        )
    return list(captions)
