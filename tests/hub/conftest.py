"""Run directories for the Hub tests, fabricated the way the trainer writes them (tiny preset)."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

RECIPE = {
    "model": {"preset": "mm-clip-tiny"},
    "data": {"train": {"dataset": "mmzoo:shapes", "split": "train"}},
    "training": {"learning_rate": 1e-3, "max_steps": 2, "batch_size": 8, "optimizer": {"name": "adamw"}},
    "evaluation": {"tasks": ["retrieval"]},
    "hub": {"tags": ["tiny"], "license": "mit"},
}
EVAL_RESULTS = {
    "mmzoo_version": "0.1.0",
    "results": [
        {
            "task": "retrieval",
            "dataset": {"name": "mmzoo:shapes", "config": None, "split": "test", "revision": None},
            "metrics": {"t2i_recall@1": 0.25, "i2t_recall@1": 0.5, "t2i_recall@5": 0.75},
            "protocol": {"ties": "pessimistic", "normalize": True},
        }
    ],
}


@pytest.fixture(scope="session")
def _tiny_run_template(tmp_path_factory):
    import mmzoo
    from mmzoo.builder import save_pretrained

    out = tmp_path_factory.mktemp("run") / "mm-clip-tiny"
    save_pretrained(mmzoo.build_model("mm-clip-tiny"), mmzoo.build_processor("mm-clip-tiny"), out)
    (out / "recipe.yaml").write_text(yaml.safe_dump(RECIPE, sort_keys=False))
    (out / "eval_results.json").write_text(json.dumps(EVAL_RESULTS))
    (out / "training_log.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    (out / "checkpoint-1").mkdir()
    (out / "checkpoint-1" / "model.safetensors").write_bytes(b"not pushed")
    return out


@pytest.fixture
def tiny_run(_tiny_run_template, tmp_path):
    """A fresh copy of a saved mm-clip-tiny run (config, weights, processor, recipe, eval results)."""
    return shutil.copytree(_tiny_run_template, tmp_path / "run")
