"""Fixtures for the training tests: a private dataset cache, tiny recipes written to a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.common import private_mmzoo_cache

REPO = Path(__file__).parents[2]
TINY = REPO / "recipes" / "tiny"


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Builtin datasets are generated into a temporary MMZOO_CACHE (inherited by subprocesses)."""
    with private_mmzoo_cache(tmp_path_factory.mktemp("mmzoo_cache")):
        yield


@pytest.fixture
def tiny_recipe(tmp_path):
    """tiny_recipe(*overrides, name="clip-coco"): a tiny twin loaded with --set overrides, its run folder in
    tmp_path/run."""
    from mmzoo.recipe import load_recipe

    def load(*overrides: str, name: str = "clip-coco"):
        return load_recipe(TINY / f"{name}.yaml", [f"training.output_dir={tmp_path / 'run'}", *overrides])

    return load


def read_log(run_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "training_log.jsonl").read_text().splitlines()]


def step_losses(run_dir) -> dict[int, float]:
    """step -> training loss, from the run's training_log.jsonl."""
    return {e["step"]: e["loss"] for e in read_log(run_dir) if "loss" in e}
