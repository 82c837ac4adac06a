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
TARGET_EXACT_SCENE = 0.70
MARGIN = 0.03
# seed -> measured (exact_scene, bleu_4) after 2000 steps (2 CPU cores, 2026-12-01; 418-480 s of training): all
# three seeds reach the target (at 700 steps shape names were near chance and exact_scene 0.10-0.13)
MEASURED = {0: (0.845, 0.979), 1: (0.940, 0.991), 2: (0.920, 0.989)}


@pytest.mark.parametrize("seed", sorted(MEASURED))
def test_captioning_recipe_describes_the_scene(seed, tmp_path):
    recipe = load_recipe(RECIPE, [f"training.seed={seed}"])
    result = train(recipe, output_dir=tmp_path / "run", progress=False)
    (entry,) = [r for r in result.eval_results["results"] if r["task"] == "captioning"]
    metrics = entry["metrics"]
    print("captioning", seed, {k: round(v, 3) for k, v in metrics.items() if isinstance(v, float)})
    exact, bleu_4 = MEASURED[seed]
    assert metrics["exact_scene"] >= min(TARGET_EXACT_SCENE, exact - MARGIN)
    assert metrics["bleu_4"] >= bleu_4 - MARGIN
    generation = json.loads((result.run_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] is not None and generation["bos_token_id"] is not None
