"""Slow quality check of the captioning recipe (`pytest -m slow`): `mmzoo train recipes/captioning-shapes.yaml
--set training.seed=<seed>` as a user runs it, evaluated by the `captioning` task on held-out `shapes` scenes.

issue 10's target is exact_scene >= 0.70 (the caption names exactly the scene's objects). Thresholds below are the
figures measured on 2 shared CPU cores minus a margin (the recipe header and the session note give them per seed);
where the target is out of reach in the CPU budget the test keeps the figure reached.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmzoo.recipe import load_recipe
from mmzoo.train import train

pytestmark = pytest.mark.slow
RECIPE = Path(__file__).parents[2] / "recipes" / "captioning-shapes.yaml"
EXACT_SCENE = 0.70  # measured minus margin (see the module docstring)
BLEU_4 = 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_captioning_recipe_describes_the_scene(seed, tmp_path):
    recipe = load_recipe(RECIPE, [f"training.seed={seed}"])
    result = train(recipe, output_dir=tmp_path / "run", progress=False)
    (entry,) = [r for r in result.eval_results["results"] if r["task"] == "captioning"]
    metrics = entry["metrics"]
    print("captioning", seed, {k: round(v, 3) for k, v in metrics.items() if isinstance(v, float)})
    assert metrics["exact_scene"] >= EXACT_SCENE
    assert metrics["bleu_4"] >= BLEU_4
    generation = json.loads((result.run_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] is not None and generation["bos_token_id"] is not None
