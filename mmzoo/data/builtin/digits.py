"""digits: scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download), upscaled to RGB.

The split is fixed (a constant permutation: 80% train, 10% validation, 10% test), so splits never share an
image; ``seed`` only orders the rows and picks the subset when ``num_samples`` is set.

Columns: image (PIL RGB, white digit on black, ``image_size`` squared), captions (list[str], the first is
"a handwritten digit seven"), label (ClassLabel, names zero..nine).
"""

from __future__ import annotations

import io
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..errors import DataError

VERSION = 1
LABEL_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SPLIT_FRACTIONS = {"train": (0.0, 0.8), "validation": (0.8, 0.9), "test": (0.9, 1.0)}
_PARTITION_SEED = 1797  # fixed: the split membership never depends on the user's seed


class DigitsParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    image_size: int = Field(32, ge=8, le=1024)
    split: Literal["train", "validation", "test"] = "train"
    seed: int = 0
    num_samples: int | None = Field(None, ge=1)


def captions(label: int) -> list[str]:
    word = LABEL_NAMES[label]
    return [
        f"a handwritten digit {word}",
        f"the handwritten number {label}",
        f"a photo of the digit {word}",
        f"a handwritten {label}",
    ]


def _load_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise DataError(
            f"the builtin dataset 'digits' needs scikit-learn ({err}); install it with `pip install mmzoo[digits]`"
        ) from None
    bunch = load_digits()
    return bunch.images, bunch.target


def split_indices(n: int, split: str) -> np.ndarray:
    order = np.random.default_rng(_PARTITION_SEED).permutation(n)
    lo, hi = SPLIT_FRACTIONS[split]
    return np.sort(order[round(lo * n) : round(hi * n)])


def build(p: DigitsParams):
    import datasets
    from PIL import Image

    images, targets = _load_sklearn_digits()
    idx = split_indices(len(images), p.split)
    idx = idx[np.random.default_rng(p.seed).permutation(len(idx))]
    if p.num_samples is not None:
        if p.num_samples > len(idx):
            raise DataError(
                f"digits: split {p.split!r} has {len(idx)} images but num_samples={p.num_samples}; "
                f"lower num_samples (or leave it unset for the whole split)"
            )
        idx = idx[: p.num_samples]
    rows: dict[str, list] = {"image": [], "captions": [], "label": []}
    for i in idx:
        gray = Image.fromarray((images[i] * (255 / 16)).round().astype(np.uint8), mode="L")
        img = gray.resize((p.image_size, p.image_size), Image.Resampling.BILINEAR).convert("RGB")
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        rows["image"].append({"bytes": buf.getvalue(), "path": None})
        rows["captions"].append(captions(int(targets[i])))
        rows["label"].append(int(targets[i]))
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "captions": datasets.List(datasets.Value("string")),
            "label": datasets.ClassLabel(names=LABEL_NAMES),
        }
    )
    info = datasets.DatasetInfo(description=__doc__.splitlines()[0], features=features)
    return datasets.Dataset.from_dict(rows, info=info, split=p.split)
