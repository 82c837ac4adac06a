"""Image decoding for the data path: every PIL mode to RGB without clipping, and JPEG draft-mode downscaling.

Two pieces, used by the sources (``load_source``), the collators and evaluation's ``embed_images``:

* :func:`to_rgb` converts any PIL mode to 8-bit RGB. PIL's own ``convert("RGB")`` clips 16-bit and 32-bit
  grayscale (``I;16``, ``I``) at 255, so a 16-bit scan becomes all white; here 16-bit data is scaled
  (``v / 257``), float data in [0, 1] is scaled by 255 and other ranges of ``I`` / ``F`` are stretched linearly
  from their min..max. Images with transparency are composited onto white (the transparent pixels' colour is
  undefined, often black).
* ``RGBImage`` (``mmzoo.data._rgb_feature``), the ``datasets`` image feature of loaded sources, decodes a baseline RGB JPEG *lazily*
  (PIL has read the header only) so that :func:`prepare_image` can still call ``Image.draft``: the JPEG decoder
  then downscales by 1/2, 1/4 or 1/8 in the DCT domain to the smallest size that is still at least the model's
  input size, and the processor's exact resize does the rest. Anything else is decoded at once and converted by
  :func:`to_rgb`. Rows therefore always hold RGB images, as before.
* :func:`image_features` (what ``MmzooProcessor`` calls) is the PIL image processor's own computation without
  its per-image detours: the processor converts each PIL image to a numpy array and back to PIL to resize it, then
  rescales in float64 and normalises, one image at a time. Here each image is drafted (lazy JPEGs), resized by the
  same PIL call (same filter, no reducing gap) and mapped through a 256-entry table per channel that the
  processor's own ``rescale`` and ``normalize`` computed, so ``pixel_values`` are bitwise the processor's for the
  same resized pixels. Any setting it does not cover (center crop, padding, shortest-edge sizes, non-PIL or
  non-RGB inputs, a processor class that changes the steps) goes through the processor itself.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image, ImageOps

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_SIXTEEN_BIT = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_WHITE = (255, 255, 255)


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB copy of ``image`` (``image`` itself when it is RGB already).

    Mode by mode: ``1``, ``L``, ``P``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, ``RGBX``: PIL's conversion;
    ``RGBA``/``LA``/``PA``/``P`` with transparency (and premultiplied ``RGBa``/``La``): composited onto white;
    ``I;16*``: scaled by 1/257 (0..65535 -> 0..255); ``I``: scaled by 1/257 when it holds 0..65535 (how PIL opens
    16-bit PNGs), else stretched from min..max; ``F``: times 255 when it holds 0..1, else stretched from min..max.
    """
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT or mode in ("I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(image), mode)).convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = (image.convert("LA") if mode == "La" else image).convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    values = values.astype(np.float64)
    finite = np.isfinite(values)
    values = np.where(finite, values, 0.0)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if mode in _SIXTEEN_BIT or (mode == "I" and low >= 0 and high <= 65535):
        scaled = values / 257.0
    elif mode == "F" and low >= 0 and high <= 1:
        scaled = values * 255.0
    else:  # an unknown range: stretch it (a constant image maps to black)
        scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def is_lazy_jpeg(image: Any) -> bool:
    """True for a JPEG that PIL has opened but not decoded yet (``draft`` can still shrink it)."""
    return isinstance(image, Image.Image) and getattr(image, "format", None) == "JPEG" and bool(
        getattr(image, "tile", None)
    )


def prepare_image(image: Image.Image, size: tuple[int, int] | None = None) -> Image.Image:
    """``image`` as a decoded RGB PIL image; a lazy JPEG is decoded at the smallest DCT scale that keeps it at
    least ``size`` = ``(width, height)`` (no downscaling when ``size`` is ``None``)."""
    if is_lazy_jpeg(image):
        if size is not None:
            image.draft("RGB", size)
        image.load()
    return to_rgb(image)


def prepare_pil_images(images, size: tuple[int, int] | None = None) -> list:
    """:func:`prepare_image` on the PIL images of ``images``; other inputs (arrays, tensors) pass unchanged."""
    return [prepare_image(image, size) if isinstance(image, Image.Image) else image for image in images]


def target_size(processor: Any) -> tuple[int, int] | None:
    """``(width, height)`` the processor resizes images to, or ``None`` when it does not say.

    Reads ``processor.image_processor.size`` (or ``processor.size``): ``{"height", "width"}``, or
    ``{"shortest_edge"}`` (then both sides must reach it, the draft keeps the aspect ratio).
    """
    size = getattr(getattr(processor, "image_processor", processor), "size", None)
    if size is None:
        return None
    get = size.get if hasattr(size, "get") else (lambda key, default=None: getattr(size, key, default))
    if get("height") and get("width"):
        return int(get("width")), int(get("height"))
    if get("shortest_edge"):
        edge = int(get("shortest_edge"))
        return edge, edge
    return None


def open_image(value: dict[str, Any] | str) -> Image.Image:
    """Open ``{"bytes", "path"}`` (or a path): a baseline RGB JPEG without an EXIF rotation is returned
    undecoded (see :func:`prepare_image`), anything else decoded, EXIF-rotated and converted by :func:`to_rgb`."""
    if isinstance(value, str):
        value = {"path": value, "bytes": None}
    data, path = value.get("bytes"), value.get("path")
    if data is None and path is None:
        raise ValueError(f"an image needs 'path' or 'bytes', both are None in {value}")
    image = Image.open(io.BytesIO(data) if data is not None else path)
    rotated = image.getexif().get(Image.ExifTags.Base.Orientation) not in (None, 1)
    if image.format == "JPEG" and image.mode in ("RGB", "YCbCr") and not rotated:
        if data is None:  # keep no file handle open until the draft: read the bytes now, decode later
            image.close()
            with open(path, "rb") as f:
                image = Image.open(io.BytesIO(f.read()))
        if image.mode == "RGB":
            return image
    image.load()
    if rotated:
        image = ImageOps.exif_transpose(image)
    return to_rgb(image)


def image_features(image_processor: Any, images, return_tensors: str | None = "pt") -> dict[str, Any]:
    """``{"pixel_values": ...}`` for ``images``: :func:`fast_pixel_values` when it covers the processor's
    settings, else ``image_processor(images=images, return_tensors=return_tensors)``."""
    fast = fast_pixel_values(image_processor, images, return_tensors)
    if fast is not None:
        return {"pixel_values": fast}
    return image_processor(images=images, return_tensors=return_tensors)


def fast_pixel_values(image_processor: Any, images, return_tensors: str | None = "pt"):
    """The (N, 3, H, W) ``pixel_values`` a PIL-backed HF image processor with a fixed ``height`` / ``width``,
    rescale and normalise gives (a torch tensor for ``"pt"``, else numpy), or ``None`` when the processor or
    the inputs need its general path."""
    if return_tensors not in ("pt", "np") or not _plain_pil_processor(image_processor):
        return None
    images = images if isinstance(images, (list, tuple)) else [images]
    if not images or not all(isinstance(image, Image.Image) for image in images):
        return None
    size = image_processor.size
    width, height = int(size["width"]), int(size["height"])
    prepared = [prepare_image(image, (width, height)) if is_lazy_jpeg(image) else image for image in images]
    if any(image.mode != "RGB" for image in prepared):
        return None  # the processor's own conversion rules apply
    table = _pixel_table(image_processor)
    resample = image_processor.resample if image_processor.resample is not None else Image.Resampling.BILINEAR
    out = np.empty((len(prepared), 3, height, width), dtype=table.dtype)
    for i, image in enumerate(prepared):
        if image.size != (width, height):
            image = image.resize((width, height), resample=resample, reducing_gap=None)  # as the processor
        pixels = np.asarray(image)
        for channel in range(3):
            np.take(table[channel], pixels[..., channel], out=out[i, channel])
    if return_tensors == "pt":
        import torch

        return torch.from_numpy(out)
    return out


_STEPS = ("_preprocess", "process_image", "resize", "rescale", "normalize", "preprocess")


def _plain_pil_processor(image_processor: Any) -> bool:
    """True for transformers' PIL backend with its stock steps and the settings this module reproduces."""
    try:
        from transformers.image_processing_backends import PilBackend
    except ImportError:
        return False
    if not isinstance(image_processor, PilBackend):
        return False
    cls = type(image_processor)
    stock = all(getattr(cls, name) is getattr(PilBackend, name) for name in _STEPS)
    size = getattr(image_processor, "size", None) or {}
    get = size.get if hasattr(size, "get") else (lambda key, default=None: getattr(size, key, default))
    return (stock and bool(image_processor.do_resize) and bool(get("height")) and bool(get("width"))
            and not get("shortest_edge") and not get("longest_edge")
            and not getattr(image_processor, "do_center_crop", False) and not getattr(image_processor, "do_pad", False))


_TABLES: dict[tuple, np.ndarray] = {}


def _pixel_table(image_processor: Any) -> np.ndarray:
    """(3, 256): the processor's own ``rescale`` then ``normalize`` of every uint8 value, per channel."""
    mean, std = image_processor.image_mean, image_processor.image_std
    key = (type(image_processor), bool(image_processor.do_rescale), float(image_processor.rescale_factor),
           bool(image_processor.do_normalize), tuple(np.broadcast_to(np.asarray(mean, dtype=np.float64), 3)),
           tuple(np.broadcast_to(np.asarray(std, dtype=np.float64), 3)))
    table = _TABLES.get(key)
    if table is None:
        values = np.tile(np.arange(256, dtype=np.uint8), (3, 1))[:, None, :]  # (3, 1, 256): a channels-first image
        if image_processor.do_rescale:
            values = image_processor.rescale(values, image_processor.rescale_factor)
        if image_processor.do_normalize:
            values = image_processor.normalize(values, mean, std)
        table = _TABLES[key] = np.ascontiguousarray(np.asarray(values)[:, 0, :])
    return table
