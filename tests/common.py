"""Shared test helpers: tiny presets, seeded inputs."""

from __future__ import annotations

import contextlib
import os
import socket

import torch
from PIL import Image

# source of a child script's first lines: mmzoo is installed here (editable); this makes it unimportable, as on a
# machine without it (remote-code tests)
BLOCK_MMZOO = """
import sys

class BlockMmzoo:
    def find_spec(self, name, path=None, target=None):
        if name == "mmzoo" or name.startswith("mmzoo."):
            raise ImportError(f"No module named {name!r} (blocked by the test)")

sys.meta_path.insert(0, BlockMmzoo())
"""

TINY_PRESETS = [
    "mm-clip-tiny", "mm-siglip-tiny", "mm-lit-tiny", "mm-vilbert-tiny", "mm-visualbert-tiny", "mm-albef-tiny",
]
CAPTIONS = ["a large red circle at the top left", "a small blue square in the center",
            "a green triangle at the bottom right", "two yellow circles"]
COLORS = ["red", "blue", "green", "yellow"]
# towers (width 32, one layer each) for tests that train on 48 px `shapes` scenes: one 16 px patch per shape position
SHAPES_TOWERS = {
    "projection_dim": 32,
    "encoders": [
        {"modality": "text", "tokenizer": "mmzoo:wordpiece-basic", "pooling": "mean",
         "config": {"model_type": "bert", "vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 1,
                    "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 64,
                    "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}},
        {"modality": "image", "pooling": "mean",
         "config": {"model_type": "vit", "image_size": 48, "patch_size": 16, "hidden_size": 32,
                    "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 64}},
    ],
}


def images(n: int = 4, size: int = 40) -> list[Image.Image]:
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        arr = (torch.rand(size, size, 3, generator=g) * 255).to(torch.uint8).numpy()
        out.append(Image.fromarray(arr))
    return out


def batch(processor, n: int = 4):
    return processor(text=CAPTIONS[:n], images=images(n))


def free_port() -> int:
    """A free localhost TCP port for a process group's rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def private_mmzoo_cache(folder):
    """MMZOO_CACHE (inherited by subprocesses) set to ``folder`` and progress bars off, restored afterwards:
    builtin datasets are generated there, never in the user's home."""
    old = os.environ.get("MMZOO_CACHE")
    os.environ["MMZOO_CACHE"] = str(folder)
    os.environ.setdefault("MMZOO_DISABLE_PROGRESS_BARS", "1")
    try:
        yield str(folder)
    finally:
        if old is None:
            os.environ.pop("MMZOO_CACHE", None)
        else:
            os.environ["MMZOO_CACHE"] = old
