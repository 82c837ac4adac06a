"""The audio quickstart, opt-in (`pytest -m slow`): `mmzoo train recipes/clap-tones.yaml` reaches held-out
text->audio recall@1 >= 0.8 (every clip having the query caption counts as correct; chance about 0.09) for each
of three seeds. Wall times are printed, not asserted: tests never assert timings."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

RECIPE = Path(__file__).parents[2] / "recipes" / "clap-tones.yaml"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_audio_quickstart_quality(tmp_path, seed):
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mmzoo.cli", "train", str(RECIPE),
                           f"--set=training.output_dir={tmp_path / 'run'}", f"--set=training.seed={seed}"],
                          capture_output=True, text=True, timeout=1500)
    wall = time.perf_counter() - started
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    result = next(r for r in results["results"] if r["task"] == "retrieval")
    assert result["protocol"]["num_audio"] == 1100 and result["dataset"]["split"] == "test"
    assert result["metrics"]["text_to_audio_recall_at_1"] >= 0.8, result["metrics"]
    print(f"clap-tones seed {seed}: wall time {wall:.0f} s; metrics: {result['metrics']}")
