"""bench/retrieval_eval.py at tiny sizes: table, skip rule and rank agreement (workers run in-process here)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "retrieval_eval.py"


@pytest.fixture
def bench(monkeypatch):
    spec = importlib.util.spec_from_file_location("retrieval_eval_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # one process per measurement is the point of the real bench; here the worker runs in this process
    monkeypatch.setattr(
        module, "measure", lambda size, method, args: module.run_case(size, method, args.dim, args.chunk_size, 0)
    )
    return module


def test_bench_table(bench, monkeypatch, capsys):
    # 300^2 * 4.2 B = 0.4 MB < cap 1.07 MB: both paths run; 700^2 * 4.2 B = 2.1 MB > cap: full path skipped
    argv = ["--sizes", "300", "700", "--dim", "16", "--chunk-size", "64", "--full-mem-cap-gib", "0.001"]
    monkeypatch.setattr(sys, "argv", ["retrieval_eval.py", *argv])
    bench.main()
    rows = {line.split("|")[1].strip(): line for line in capsys.readouterr().out.splitlines() if "|" in line}
    assert rows["300"].rstrip().endswith("yes |")
    assert "skipped: full matrix est. 0.0 GiB > cap 0.001 GiB" in rows["700"]


def test_bench_worker_reports_measurements(bench):
    chunked = bench.run_case(200, "chunked", dim=8, chunk_size=32, seed=1)
    full = bench.run_case(200, "full", dim=8, chunk_size=32, seed=1)
    assert chunked["ranks_sha"] == full["ranks_sha"]
    assert chunked["seconds"] > 0 and chunked["cpu_seconds"] >= 0
    assert isinstance(chunked["peak_growth_mib"], float)  # only meaningful in a fresh process, as the bench runs it
    assert 0 <= chunked["i2t_recall_at_10"] <= 1
