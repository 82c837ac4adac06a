"""Slow quality checks of the fused models on held-out built-in `shapes` scenes (`pytest -m slow`).

ITM with in-batch hard negatives on the full scenes (1-3 objects, as the quickstart uses them), one run per seed of
the real-size recipe (`mmzoo train recipes/<name>.yaml --set training.seed=S`), evaluated by the recipe's own
evaluation on 500 held-out test scenes:

* `itm` task: accuracy against random negatives and against minimal-pair negatives (the same scene's caption with one
  attribute of one object changed), at P(match) >= 0.5 on balanced pairs;
* `retrieval` task with `rerank_k: 8`: re-ranking the contrastive top 8 by ITM must not lower text->image R@1.

The recipes train ITM with in-batch hard negatives plus one hard negative caption per image from the data
(``objectives.itm.caption_negatives``). Thresholds are the issue's targets (0.90 / 0.80, re-ranking not lower); every
seed measured above them (see the recipe headers).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
RECIPES = Path(__file__).parents[2] / "recipes"
RECIPE = {"co_attention": "vilbert-shapes", "single_stream": "visualbert-itm-shapes",
          "cross_attention": "albef-shapes"}
# (random-negative accuracy, minimal-pair accuracy) every seed must reach: the targets. Measured (2 cores,
# two runs at a time, 2026-12-01, seeds 0 / 1 / 2, 1500 steps with caption negatives; the recipe headers have every
# figure):
#   co_attention (vilbert-shapes): random 0.997 / 0.991 / 0.996, minimal pairs 0.938 / 0.940 / 0.943
#   single_stream (visualbert-itm-shapes): random 0.980 / 0.999 / 0.997, minimal pairs 0.891 / 0.946 / 0.939
#   cross_attention (albef-shapes): random 0.998 / 0.998 / 0.999, minimal pairs 0.940 / 0.944 / 0.946
ITM_TARGETS = {"co_attention": (0.90, 0.80), "single_stream": (0.90, 0.80), "cross_attention": (0.90, 0.80)}
# re-ranked text->image R@1 minus contrastive-only R@1, measured: co_attention +0.016 / +0.007 / +0.016,
# single_stream +0.014 / +0.012 / +0.013, cross_attention +0.054 / +0.045 / +0.048; the issue: not lower
RERANK_TOLERANCE = 0.0


def train_and_evaluate(recipe: str, seed: int, out: Path) -> dict[str, dict[str, float]]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mmzoo.cli", "train", str(RECIPES / f"{recipe}.yaml"),
                           f"--set=training.seed={seed}", f"--set=training.output_dir={out}"],
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "eval_results.json").read_text())
    metrics = {r["task"]: r["metrics"] for r in results["results"]}
    print(f"{recipe} seed {seed}: {time.perf_counter() - started:.0f} s (training + evaluation);",
          json.dumps({task: {k: round(v, 4) for k, v in m.items() if isinstance(v, float)}
                      for task, m in metrics.items()}))
    return metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fusion", list(RECIPE))
def test_itm_hard_negatives_full_scenes(fusion, seed, tmp_path):
    metrics = train_and_evaluate(RECIPE[fusion], seed, tmp_path / "run")
    itm, retrieval = metrics["itm"], metrics["retrieval"]
    random_target, minimal_target = ITM_TARGETS[fusion]
    assert itm["accuracy"] >= random_target, itm
    assert itm["minimal_pair_accuracy"] >= minimal_target, itm
    # ITM re-ranking (ITM log-odds + contrastive logit on the top 8) does not rank worse than contrastive alone
    reranked, contrastive = retrieval["itm_rerank_text_to_image_recall_at_1"], retrieval["text_to_image_recall_at_1"]
    assert reranked >= contrastive - RERANK_TOLERANCE, retrieval
