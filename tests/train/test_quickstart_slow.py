"""The headline check, opt-in (`pytest -m slow`): `mmzoo train recipes/quickstart.yaml` trains a model that reaches text->image recall@1 >= 0.8 and recall@5 >= 0.95 on 1,000 held-out pairs.
Its wall time (target: under 3 minutes on 2 cores) is printed, not asserted: tests never assert timings."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from .conftest import REPO


@pytest.mark.slow
def test_quickstart_quality(tmp_path):
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mmzoo.cli", "train", str(REPO / "recipes" / "quickstart.yaml"),
                           f"--set=training.output_dir={tmp_path / 'run'}"], capture_output=True, text=True,
                          timeout=900)
    wall = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    metrics = next(r["metrics"] for r in results["results"] if r["task"] == "retrieval")
    assert metrics["text_to_image_recall_at_1"] >= 0.8, metrics
    assert metrics["text_to_image_recall_at_5"] >= 0.95, metrics
    print(f"quickstart wall time: {wall:.0f} s; metrics: {metrics}")
