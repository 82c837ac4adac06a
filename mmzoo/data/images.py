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
