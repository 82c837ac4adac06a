"""The ``datasets`` image feature of loaded sources (imports ``datasets``: loaded only with data)."""

from __future__ import annotations

from dataclasses import dataclass

import datasets
from PIL import Image

from .images import open_image


@dataclass
class RGBImage(datasets.Image):
    """``datasets.Image`` that decodes with :func:`open_image` (RGB rows, lazy JPEGs, no clipping).

    Serialised as a plain ``Image`` feature (``_type`` is inherited), so a saved dataset reloads with the stock
    decoder; the collators convert with :func:`to_rgb` either way.
    """

    def decode_example(self, value: dict | str, token_per_repo_id=None) -> Image.Image:
        if not isinstance(value, (dict, str)):
            return value
        if isinstance(value, dict) and value.get("bytes") is None and "::" in str(value.get("path")):
            return super().decode_example(value, token_per_repo_id)  # remote (hf://) files: the stock reader
        return open_image(value)
