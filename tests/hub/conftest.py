"""Run folders for the Hub tests: REAL tiny training runs (a few steps of the recipes/tiny twins), one per head,
trained once per session on first use and copied for each test that changes them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.common import private_mmzoo_cache

TINY = Path(__file__).parents[2] / "recipes" / "tiny"
COMMON = ["training.max_steps=2", "training.save_steps=null", "training.logging_steps=1", "hub.license=mit",
          "hub.tags=[tiny]"]
# head -> (tiny recipe, --set overrides)
RUNS: dict[str, tuple[str, list[str]]] = {
    "clip": ("clip-coco", ["training.save_steps=2"]),
    "siglip": ("clip-coco", ["model.preset=mm-siglip-tiny"]),
    "albef": ("albef-coco", []),
    "vqa": ("visualbert-vqa", []),
    "captioning": ("clip-coco", ["model.overrides.objectives=[{type: contrastive}, {type: captioning, num_layers: 1, "
                                 "max_length: 32}]", "evaluation=[{task: captioning}]"]),
    "clap": ("clap-tones", []),  # audio-text (mm-clap-tiny on the built-in tones)
}


@pytest.fixture(scope="session")
def hub_cache(tmp_path_factory):
    """Builtin datasets are generated into a temporary MMZOO_CACHE (inherited by subprocesses)."""
    with private_mmzoo_cache(tmp_path_factory.mktemp("mmzoo_cache")) as folder:
        yield folder


@pytest.fixture(scope="session")
def trained_run(hub_cache, tmp_path_factory):
    """trained_run(head) -> the folder of a finished tiny run of that head (trained once per session)."""
    from mmzoo.recipe import load_recipe
    from mmzoo.train import train

    done: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("tiny-runs")

    def get(head: str) -> Path:
        if head not in done:
            name, overrides = RUNS[head]
            recipe = load_recipe(TINY / f"{name}.yaml",
                                 [f"training.output_dir={root / head}", f"name=tiny-{head}", *COMMON, *overrides])
            done[head] = train(recipe, progress=False).run_dir
        return done[head]

    return get


@pytest.fixture
def tiny_run(trained_run, tmp_path):
    """A fresh copy of a finished mm-clip-tiny run (config, weights, processor, recipe, eval results, log,
    run_info.json, pictures when matplotlib is installed)."""
    return Path(shutil.copytree(trained_run("clip"), tmp_path / "run"))
