"""The headline check, opt-in (`pytest -m slow`): `mmzoo train recipes/quickstart.yaml` finishes within
3 minutes and its model reaches text->image recall@1 >= 0.8 and recall@5 >= 0.95 on 1,000 held-out pairs."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from .conftest import REPO


@pytest.mark.slow
def test_quickstart_quality_and_time(request, tmp_path):
    if "slow" not in (request.config.option.markexpr or ""):
        pytest.skip("opt-in: run with -m slow (about 2-3 minutes on 2 CPU cores)")
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
    assert wall < 180, f"{wall:.0f} s"
