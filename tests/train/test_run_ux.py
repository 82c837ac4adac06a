"""What a person running `mmzoo train` sees: numbers printed as numbers, one evaluation at the last step, a
"resuming from" line, output_dir relative to the recipe file, pictures (and a clean run without matplotlib),
tracker extras, and `--dry-run` reading the data."""

from __future__ import annotations

import json
import sys

import pytest

from mmzoo.errors import RecipeError
from mmzoo.recipe import load_recipe
from mmzoo.train import dry_run, train
from mmzoo.train.args import check_trackers, run_dir

from .conftest import TINY, read_log


def _hide_matplotlib(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # `import matplotlib` now raises ImportError


def test_log_lines_one_final_evaluation_and_resume(tiny_recipe, capsys, monkeypatch, caplog):
    recipe = tiny_recipe("training.max_steps=2", "training.save_steps=2", "training.eval_steps=2",
                         "training.logging_steps=1")
    result = train(recipe, progress=False)
    out = capsys.readouterr().out
    assert "{'loss': 2." in out and "'loss': '" not in out  # numbers, not strings
    assert "'eval_retrieval/mean_recall': 0." in out
    log = read_log(result.run_dir)
    assert sum(1 for e in log if "eval_loss" in e) == 1  # eval_steps hit the last step: no second final pass
    assert sum(1 for e in log if "eval_retrieval/mean_recall" in e) == 1
    assert (result.run_dir / "loss_curve.png").is_file() and (result.run_dir / "examples.png").is_file()

    _hide_matplotlib(monkeypatch)
    import logging

    logging.getLogger("mmzoo").addHandler(caplog.handler)  # mmzoo's logger does not propagate to the root
    for picture in ("loss_curve.png", "examples.png"):
        (result.run_dir / picture).unlink()
    resumed = train(tiny_recipe("training.max_steps=3", "training.save_steps=2", "training.logging_steps=1"),
                    resume=True, progress=False)
    out = capsys.readouterr().out
    assert f"resuming from checkpoint-2 (step 2) in {result.run_dir}" in out
    assert resumed.global_step == 3 and (resumed.run_dir / "model.safetensors").is_file()
    assert not (resumed.run_dir / "loss_curve.png").exists()  # skipped without matplotlib, the run still ends
    logging.getLogger("mmzoo").removeHandler(caplog.handler)
    assert "pip install 'mmzoo[plots]'" in caplog.text
    info = json.loads((resumed.run_dir / "run_info.json").read_text())
    assert info["resumed_from"].endswith("checkpoint-2") and info["global_step"] == 3


def test_relative_output_dir_is_relative_to_the_recipe(tmp_path, monkeypatch):
    folder = tmp_path / "project" / "recipes"
    folder.mkdir(parents=True)
    (folder / "r.yaml").write_text((TINY / "clip-coco.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    assert run_dir(load_recipe(folder / "r.yaml", ["training.output_dir=../runs/x"])) == folder / "../runs/x"
    assert run_dir(load_recipe(folder / "r.yaml", [f"training.output_dir={tmp_path}/abs"])) == tmp_path / "abs"
    assert str(run_dir(load_recipe(folder / "r.yaml"))) == "runs/clip-coco-tiny"  # unset: the working directory


def test_tracker_without_its_package_says_what_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a))
    with pytest.raises(RecipeError, match=r"report_to: 'tensorboard' needs the tensorboard package.*"
                                          r"pip install 'mmzoo\[tensorboard\]'"):
        check_trackers(["tensorboard"])
    check_trackers(["none"])


def test_dry_run_reads_the_data(tmp_path):
    from PIL import Image

    Image.new("RGB", (20, 10), "red").save(tmp_path / "a.png")
    (tmp_path / "train.jsonl").write_text(json.dumps({"image": "a.png", "caption": "a red box"}) + "\n")
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text((TINY / "clip-coco.yaml").read_text())
    source = "data.train={source: json, files: train.jsonl, split: train, image_size: 32, max_length: 32}"
    report = dry_run(load_recipe(recipe_file, [source]))
    text = report.render()
    assert "data.train: json source readable, first 1 row(s) decoded: image 20x10 RGB" in text
    assert "data.eval: built-in 'shapes' (generated on first use; params valid)" in text
    from mmzoo.data import DataError

    with pytest.raises((DataError, RecipeError), match="missing.jsonl"):
        dry_run(load_recipe(recipe_file, [source.replace("train.jsonl", "missing.jsonl")]))
    (tmp_path / "a.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="a.png"):
        dry_run(load_recipe(recipe_file, [source]))
