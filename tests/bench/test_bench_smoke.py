"""Every benchmark in bench/ runs end to end with its documented --quick command (tiny sizes; no timing asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"


def run_bench(script: str, *args: str, json_out: Path | None = None) -> tuple[str, dict]:
    cmd = [sys.executable, str(BENCH / script), *args]
    if json_out is not None:
        cmd += ["--json", str(json_out)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}"
    return done.stdout, json.loads(json_out.read_text()) if json_out is not None else {}


def positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_train_step_quick(tmp_path):
    stdout, out = run_bench("train_step.py", "--quick", "--threads", "1", json_out=tmp_path / "t.json")
    assert "| mmzoo / system |" in stdout and "## peak RSS" in stdout
    (result,) = out["results"]
    assert {"mmzoo", "hf_dual", "floor"} <= set(result["wall"])
    assert all(len(v) == 2 and all(positive(t) for t in v) for v in result["wall"].values())
    # same architecture: mmzoo builds its towers without the poolers it does not use, VisionTextDualEncoderModel
    # keeps (and uses) the BERT and ViT poolers (a width x width Linear each): otherwise equal; the floor nearly
    width = out["arch"]["width"]
    assert out["params"]["hf_dual"] - out["params"]["mmzoo"] == 2 * (width * width + width)
    assert abs(out["params"]["floor"] - out["params"]["mmzoo"]) / out["params"]["mmzoo"] < 0.1
    ratios = out["ratios"]["8"]
    assert {"hf_dual", "floor"} <= set(ratios) and all(positive(r["wall"]["of_medians"]) for r in ratios.values())
    assert all(math.isfinite(loss) for loss in result["first_loss"].values())
    assert len(out["rss"]) == len(result["wall"]) and all(positive(m["peak_rss_mib"]) for m in out["rss"])
    if "open_clip" not in result["wall"]:
        assert "open_clip unavailable" in stdout  # skipped with a note, not silently


def test_max_batch_quick(tmp_path):
    stdout, out = run_bench("max_batch.py", "--quick", "--threads", "1", json_out=tmp_path / "m.json")
    assert "ratio grad cache / plain" in stdout
    assert out["plain_max"] >= 1 and out["grad_cache_max"] > out["plain_max"]
    fitting = [t for t in out["trials"] if t["batch_mib"] <= out["budget_mib"]]
    assert {t["batch"] for t in fitting} >= {out["plain_max"], out["grad_cache_max"]}
    check = out["gradient_check"]
    assert check["same_parameters"] and check["relative_l2_error"] < 1e-4 and check["loss_diff"] < 1e-5


def test_data_quick(tmp_path):
    stdout, out = run_bench("data.py", "--quick", "--threads", "1", json_out=tmp_path / "d.json")
    assert "supply / step demand" in stdout
    assert [p["workers"] for p in out["pipelines"]] == [0, 1]
    assert all(positive(p["samples_per_s"]) for p in out["pipelines"])
    assert all(positive(v) for v in out["stages"].values())
    assert positive(out["step_samples_per_s"])
    assert set(out["end_to_end"]) == {"0", "1"}
    assert all(positive(r["samples_per_s"]) and 0 <= r["data_wait_share"] < 1 for r in out["end_to_end"].values())


def test_gpu_bench_quick_on_cpu(tmp_path):
    stdout, out = run_bench("gpu_bench.py", "--quick", "--device", "cpu", json_out=tmp_path / "g.json")
    assert "model FLOPs per step" in stdout and positive(out["flops_per_step"])
    ok = {r["variant"]: r for r in out["results"] if "error" not in r}
    assert {"mmzoo", "floor", "mmzoo+ckpt", "mmzoo+gradcache"} <= set(ok), out["results"]
    assert all(positive(r["samples_per_s"]) and positive(r["mfu_measured"]) for r in ok.values())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU path")
def test_gpu_sh_without_gpu_says_so():
    done = subprocess.run(["bash", str(BENCH / "gpu.sh")], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable}, check=False)
    assert done.returncode == 0, done.stderr
    assert "no CUDA GPU" in done.stdout


def test_decode_quick(tmp_path):
    stdout, out = run_bench("decode.py", "--quick", json_out=tmp_path / "d.json")
    assert "the whole per-sample path to pixel_values" in stdout
    assert set(out["samples_per_s"]) == {"old decode", "new decode", "old", "new (processor)", "new"}
    assert all(positive(v) for v in [*out["samples_per_s"].values(), *out["cpu_samples_per_s"].values()])
    assert out["image_features_equal_processor"] is True  # the fast path is the processor's computation
    assert 0 < out["pixel_abs_diff_mean"] < 5  # the draft changes pixels a little, never the contract


def test_step_modes_quick(tmp_path):
    stdout, out = run_bench("step_modes.py", "--quick", "--no-compile", json_out=tmp_path / "s.json")
    assert "auto / fp32 speedup (medians / paired)" in stdout
    (result,) = out["results"].values()
    assert result["auto_choice"] in ("fp32", "bf16")
    assert all(positive(v) for v in [*result["speedup_vs_fp32"].values(), *result["paired_speedup_vs_fp32"].values()])
    assert result["paired_speedup_vs_fp32"]["auto"] == result["paired_speedup_vs_fp32"][result["auto_choice"]]
