"""Every recipe file validates; real recipes carry their header and a tiny CPU twin."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mmzoo.recipe import RecipeSpec, load_recipe, resolve_model_spec
from mmzoo.specs import ModelSpec

RECIPES = Path(__file__).parents[2] / "recipes"
ALL = sorted(RECIPES.glob("*.yaml")) + sorted((RECIPES / "tiny").glob("*.yaml"))
REAL = [p for p in sorted(RECIPES.glob("*.yaml")) if p.stem != "quickstart"]
EXPECTED_REAL = {"clip-coco", "vilbert-coco", "albef-coco", "visualbert-vqa", "lit-minilm-digits"}


def test_the_expected_recipes_exist():
    assert {p.stem for p in REAL} >= EXPECTED_REAL
    assert (RECIPES / "quickstart.yaml").is_file()


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(RECIPES)))
def test_recipe_validates(path):
    recipe = load_recipe(path)
    assert isinstance(recipe, RecipeSpec) and recipe.name
    assert Path(recipe.base_dir).is_absolute()
    assert isinstance(resolve_model_spec(recipe), ModelSpec)
    # the file itself is strict: re-validating its own dump gives the same recipe
    assert RecipeSpec.model_validate(yaml.safe_load(recipe.to_yaml())) == recipe


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.stem)
def test_real_recipe_has_header_and_tiny_twin(path):
    header = "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))
    for field in ("Hardware:", "Expected:"):
        assert field in header, f"{path.name}: the header comment needs a {field!r} line"
    twin = RECIPES / "tiny" / path.name
    assert twin.is_file(), f"{path.name} has no tiny twin {twin}"
    assert resolve_model_spec(load_recipe(twin)).fusion.type == resolve_model_spec(load_recipe(path)).fusion.type


@pytest.mark.parametrize("path", sorted((RECIPES / "tiny").glob("*.yaml")), ids=lambda p: p.stem)
def test_tiny_twins_are_tiny(path):
    recipe = load_recipe(path)
    assert recipe.training.max_steps is not None and recipe.training.max_steps <= 5
    assert recipe.data.train.source == "builtin"
    spec = resolve_model_spec(recipe)
    assert spec.name.endswith("-tiny")


def test_quickstart_is_a_dual_encoder_on_shapes_with_held_out_eval():
    recipe = load_recipe(RECIPES / "quickstart.yaml")
    assert resolve_model_spec(recipe).fusion.type == "dual_encoder"
    assert (recipe.data.train.name, recipe.data.train.split) == ("shapes", "train")
    held_out = (recipe.data.eval.name, recipe.data.eval.split, recipe.data.eval.params["num_samples"])
    assert held_out == ("shapes", "test", 1000)
    assert [t.task for t in recipe.evaluation] == ["retrieval"]
