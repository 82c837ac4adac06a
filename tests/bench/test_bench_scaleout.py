"""bench/siglip_memory.py and bench/gpu_train.py run end to end with --quick (no timing or memory asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .test_bench_smoke import BENCH, REPO, run_bench


@pytest.mark.slow
def test_siglip_memory_quick():
    stdout, _ = run_bench("siglip_memory.py", "--quick")
    assert "| all_gather |" in stdout and "| ring |" in stdout and "largest gradient difference" in stdout


@pytest.mark.slow
def test_gpu_train_quick_runs_the_training_path(tmp_path):
    out = tmp_path / "train.json"
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                           str(BENCH / "gpu_train.py"), "--quick", "--json", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["samples_per_s"] > 0 and result["train_flops_per_sample"] > 0
