"""Slow quality checks of the VQA recipes (`pytest -m slow`): each recipe as a user runs it (`mmzoo train
recipes/<name>.yaml --set training.seed=<seed>`), evaluated by the `vqa` task on held-out `shapes` scenes.

Thresholds are the figures measured on 2 shared CPU cores (the recipe headers and the session note give them per
seed) minus a margin; where a target of issue 10 is out of reach (shape questions on 48 px images), the test keeps
the figure reached and says so.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mmzoo.recipe import load_recipe
from mmzoo.train import train

pytestmark = pytest.mark.slow
RECIPES = Path(__file__).parents[2] / "recipes"
# recipe -> (overall accuracy, every question type, accuracy minus image-ablation accuracy), measured minus margin
TARGETS = {
    "visualbert-vqa-shapes": (0.80, 0.60, 0.30),
    "vilbert-vqa-shapes": (0.80, 0.60, 0.30),
}
TYPE_FLOOR = {}  # question type -> lower floor where the target is out of reach (measured figure - margin)


def vqa_metrics(result) -> dict:
    (entry,) = [r for r in result.eval_results["results"] if r["task"] == "vqa"]
    return entry


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_vqa_recipe_looks_at_the_image(name, seed, tmp_path):
    recipe = load_recipe(RECIPES / f"{name}.yaml", [f"training.seed={seed}"])
    entry = vqa_metrics(train(recipe, output_dir=tmp_path / "run", progress=False))
    metrics = entry["metrics"]
    print(name, seed, {k: round(v, 3) for k, v in metrics.items() if isinstance(v, float)})
    overall, per_type, margin = TARGETS[name]
    assert metrics["vqa_accuracy"] >= overall
    assert metrics["vqa_accuracy"] - metrics["image_ablation_accuracy"] >= margin
    assert metrics["blind"] == 0.0 and entry["protocol"]["verdict"].startswith("looks at the image")
    types = {k.removeprefix("vqa_accuracy_"): v for k, v in metrics.items() if k.startswith("vqa_accuracy_")}
    assert set(types) == {"color", "count", "exists", "position", "shape", "size"}
    for kind, value in types.items():
        assert value >= TYPE_FLOOR.get(kind, per_type), f"{name} seed {seed}: {kind} accuracy {value:.3f}"
