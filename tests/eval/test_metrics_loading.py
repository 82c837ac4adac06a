"""load_metric / list_metrics: offline loading through evaluate.load, module caching, error messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmzoo.eval.metrics import list_metrics, load_metric, metric_path

REPO_ROOT = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter with HF_HOME in a temp dir, HF_HUB_OFFLINE=1 and every socket connection refused.
_OFFLINE_SCRIPT = r"""
import json, shutil, socket, sys
from pathlib import Path

def refuse(*args, **kwargs):
    raise OSError("network access attempted during an offline metric load")
socket.socket.connect = refuse
socket.create_connection = refuse

import evaluate
from mmzoo.eval.metrics import list_metrics, load_metric, metric_path

inputs = {
    "bleu": dict(predictions=["a dog runs"], references=[["a dog runs"]]),
    "cider": dict(predictions=["a dog", "a cat"], references=[["a dog"], ["a cat"]]),
    "itm_accuracy": dict(predictions=[1, 0], references=[1, 1]),
    "retrieval_recall": dict(ranks=[1, 2], directions=["image_to_text", "text_to_image"]),
    "vqa_accuracy": dict(predictions=["two"], references=[["2"] * 10]),
    "zeroshot_accuracy": dict(predictions=[[0.1, 0.9]], references=[1]),
}
results = {}
for name in list_metrics():
    load_metric(name)  # a second load must reuse the cached module
    results[name] = load_metric(name).compute(**inputs[name])
results["similarity"] = load_metric("retrieval_recall", config_name="similarity").compute(
    similarity=[[0.9, 0.1], [0.2, 0.8]], text_to_image=[0, 1])

# An edited copy of a metric script gets a new content-hash folder.
copy = Path(sys.argv[1]) / "bleu"
shutil.copytree(metric_path("bleu"), copy)
evaluate.load(str(copy))
(copy / "bleu.py").write_text((copy / "bleu.py").read_text() + "\n# edited\n")
evaluate.load(str(copy))
print(json.dumps(results))
"""


def test_load_all_metrics_offline_with_isolated_cache(tmp_path):
    hf_home = tmp_path / "hf_home"
    env = {
        **os.environ,
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    for var in ("HF_MODULES_CACHE", "HF_METRICS_CACHE", "HF_EVALUATE_CACHE", "HF_DATASETS_CACHE"):
        env.pop(var, None)
    proc = subprocess.run(
        [sys.executable, "-c", _OFFLINE_SCRIPT, str(tmp_path)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])

    assert results["bleu"]["bleu_3"] == pytest.approx(1.0)
    assert results["cider"]["cider"] == pytest.approx(5.0)
    assert results["itm_accuracy"]["accuracy"] == 0.5
    assert results["retrieval_recall"]["mean_recall"] == pytest.approx(5 / 6)  # t2i rank 2 misses only R@1
    assert results["similarity"]["text_to_image_recall_at_1"] == 1.0
    assert results["vqa_accuracy"]["vqa_accuracy"] == 1.0
    assert results["zeroshot_accuracy"]["top1_accuracy"] == 1.0

    # evaluate copied each script into the temp modules cache, once per content hash: repeated loads reuse it,
    # and the edited copy of bleu added a second hash folder
    modules = hf_home / "modules" / "evaluate_modules" / "metrics"
    for name in list_metrics():
        copies = [p / f"{name}.py" for p in (modules / name).iterdir() if p.is_dir()]
        assert len(copies) == (2 if name == "bleu" else 1), (name, copies)
        packaged = (metric_path(name) / f"{name}.py").read_text()
        assert [c.read_text() for c in copies].count(packaged) == 1


def test_list_metrics():
    assert list_metrics() == [
        "bleu", "cider", "itm_accuracy", "retrieval_recall", "vqa_accuracy", "zeroshot_accuracy",
    ]  # fmt: skip
    for name in list_metrics():
        assert metric_path(name).joinpath(f"{name}.py").is_file()


def test_unknown_metric_suggests_close_match():
    with pytest.raises(ValueError, match=r"Unknown mmzoo metric 'vqa_acc'\. Did you mean 'vqa_accuracy'\?"):
        load_metric("vqa_acc")
    with pytest.raises(ValueError, match="Known metrics: bleu, cider"):
        metric_path("rouge")
