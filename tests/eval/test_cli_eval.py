"""`mmzoo eval`: the quickstart model evaluated from the CLI with its recipe, --task/--data, --set, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import mmzoo
from mmzoo.builder import save_pretrained
from mmzoo.cli import main
from mmzoo.cli.evaluate import parse_data, split_overrides
from mmzoo.eval import EvaluationError
from mmzoo.recipe import load_recipe, resolve_model_spec

QUICKSTART = Path(__file__).resolve().parents[2] / "recipes" / "quickstart.yaml"
TASKS = ("retrieval", "zero_shot_classification", "vqa", "captioning", "itm")


@pytest.fixture(autouse=True, scope="module")
def _one_thread_private_cache(tmp_path_factory):
    threads, old = torch.get_num_threads(), os.environ.get("MMZOO_CACHE")
    torch.set_num_threads(1)
    os.environ["MMZOO_CACHE"] = str(tmp_path_factory.mktemp("mmzoo_cache"))
    yield
    torch.set_num_threads(threads)
    os.environ.pop("MMZOO_CACHE") if old is None else os.environ.__setitem__("MMZOO_CACHE", old)


@pytest.fixture(scope="module")
def quickstart_model(tmp_path_factory):
    """The quickstart recipe's model (untrained), saved as `mmzoo train` saves it."""
    spec = resolve_model_spec(load_recipe(QUICKSTART))
    torch.manual_seed(0)
    return save_pretrained(mmzoo.build_model(spec), mmzoo.build_processor(spec), tmp_path_factory.mktemp("qs"))


def test_quickstart_model_evaluates_from_the_cli_with_its_recipe(quickstart_model, capsys):
    rc = main(["eval", str(quickstart_model), "--recipe", str(QUICKSTART), "--device", "cpu",
               "--set", "max_samples=24", "--set", "data.eval.params.num_samples=32"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "retrieval on mmzoo:shapes [test]" in out and f"wrote {quickstart_model / 'eval_results.json'}" in out
    results = json.loads((quickstart_model / "eval_results.json").read_text())
    assert results["mmzoo_version"] == mmzoo.__version__
    [result] = results["results"]
    assert result["task"] == "retrieval"
    assert result["dataset"] == {"name": "mmzoo:shapes", "config": None, "split": "test", "revision": "v1"}
    assert set(result["metrics"]) >= {"text_to_image_recall_at_1", "image_to_text_recall_at_10", "mean_recall"}
    assert all(isinstance(v, (int, float)) for v in result["metrics"].values())
    protocol = result["protocol"]
    assert protocol["max_samples"] == 24 and protocol["num_images"] == 24 and protocol["num_texts"] == 120
    assert protocol["recall_at"] == [1, 5, 10] and protocol["ties"] == "pessimistic"
    assert protocol["dataset_params"] == {"num_samples": 32, "split": "test", "image_size": 48}


def test_task_and_inline_data_with_scoped_params(quickstart_model, tmp_path):
    data = "{source: builtin, name: shapes, split: validation, image_size: 48, params: {num_samples: 12}}"
    rc = main(["eval", str(quickstart_model), "--task", "retrieval", "--data", data, "--out", str(tmp_path),
               "--device", "cpu", "--set", "retrieval.recall_at=[1,2]"])
    assert rc == 0
    [result] = json.loads((tmp_path / "eval_results.json").read_text())["results"]
    assert result["dataset"]["split"] == "validation" and result["protocol"]["recall_at"] == [1, 2]
    assert "text_to_image_recall_at_2" in result["metrics"] and result["protocol"]["num_images"] == 12


@pytest.mark.parametrize(("argv", "message"), [
    ([], "pass --recipe RECIPE, or --task TASK with --data"),
    (["--task", "retrieval"], "--task needs --data"),
    (["--task", "retrieval", "--data", "builtin:nope"], "unknown builtin dataset 'nope'"),
    (["--task", "retrieval", "--data", "builtin:shapes", "--set", "data.eval.split=x"], "recipe keys need --recipe"),
    (["--task", "retrieval", "--data", "builtin:shapes", "--set", "vqa.max_new_tokens=2"],
     "that task is not run here"),
])
def test_cli_errors_are_reported(quickstart_model, capsys, argv, message):
    assert main(["eval", str(quickstart_model), *argv]) == 2
    assert message in capsys.readouterr().err


def test_data_syntax():
    spec = parse_data("builtin:shapes")
    assert (spec.source, spec.name, spec.split) == ("builtin", "shapes", "test")
    assert parse_data("builtin:digits:validation").split == "validation"
    spec = parse_data("{source: json, files: val.jsonl, split: validation}")
    assert spec.source == "json" and spec.files == ["val.jsonl"]
    with pytest.raises(EvaluationError, match="expected builtin:NAME"):
        parse_data("shapes")


def test_set_keys_are_routed():
    shared, scoped, recipe = split_overrides(
        ["max_samples=100", "retrieval.chunk_size=64", "data.eval.split=validation"], TASKS, with_recipe=True)
    assert shared == {"max_samples": 100} and scoped == {"retrieval": {"chunk_size": 64}}
    assert recipe == ["data.eval.split=validation"]
