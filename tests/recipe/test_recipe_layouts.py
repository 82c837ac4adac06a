"""The full-size recipes read the original dataset layouts: their data sections validate against tiny fixtures
in those layouts (what ``mmzoo train --dry-run`` checks), and their headers state the expected structure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mmzoo.data import DataError
from mmzoo.recipe import load_recipe
from mmzoo.testing.layouts import write_all
from mmzoo.train.dry_run import check_data

RECIPES = Path(__file__).parents[2] / "recipes"
LAYOUT_RECIPES = {"clip-coco": "karpathy", "albef-coco": "karpathy", "vilbert-coco": "coco_captions",
                  "visualbert-vqa": "vqa_v2"}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe_layouts")
    write_all(root)
    return root


@pytest.mark.parametrize("name", sorted(LAYOUT_RECIPES))
def test_recipe_reads_the_original_layout_and_documents_it(name, fixtures):
    path = RECIPES / f"{name}.yaml"
    recipe = load_recipe(path, [f"base_dir={fixtures}"])
    assert recipe.data.train.source == recipe.data.eval.source == LAYOUT_RECIPES[name]
    lines = check_data(recipe)
    assert [line.split(":")[0] for line in lines] == ["data.train", "data.eval"]
    assert all("readable, first 2 row(s) decoded" in line for line in lines)
    header = "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))
    for location in _locations(recipe):  # every path the recipe reads is spelled out in its header
        assert location in header, f"{path.name}: the header does not state where {location!r} lives"


def _locations(recipe) -> set[str]:
    out = set()
    for source in (recipe.data.train, recipe.data.eval):
        out |= {getattr(source, f) for f in ("file", "path", "images") if getattr(source, f, None)}
    return out


def test_retrieval_recipes_evaluate_five_captions_per_image():
    for name in ("clip-coco", "albef-coco", "vilbert-coco"):
        recipe = load_recipe(RECIPES / f"{name}.yaml")
        assert recipe.data.eval.captions_per_image == 5
        assert recipe.data.eval.split in ("test", "validation")


def test_missing_layout_files_fail_the_check(tmp_path):
    recipe = load_recipe(RECIPES / "visualbert-vqa.yaml", [f"base_dir={tmp_path}"])
    with pytest.raises(DataError, match=r"v2_OpenEnded_mscoco_train2014_questions.json not found; expected the VQA "
                                        r"v2 layout"):
        check_data(recipe)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LAYOUT_RECIPES))
def test_dry_run_cli_on_the_fixtures(name, fixtures):
    """The full ``mmzoo train --dry-run`` (builds the full-size model: ~30 s each on a CPU)."""
    out = subprocess.run([sys.executable, "-m", "mmzoo.cli", "train", str(RECIPES / f"{name}.yaml"), "--dry-run",
                          "--set", f"base_dir={fixtures}"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "data.train: source" in out.stdout and "data.eval: source" in out.stdout
