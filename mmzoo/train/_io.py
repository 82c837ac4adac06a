"""Run-folder writes: the atomic writers of :mod:`mmzoo.utils.files` (one implementation for the package)."""

from __future__ import annotations

from ..utils.files import atomic_write_json, atomic_write_text, jsonl

__all__ = ["atomic_write_json", "atomic_write_text", "jsonl"]
