"""Items 3, 5, 7 and 12 of issue 13, and issue 12's hidden upward dependencies: the output_dir lock (two
concurrent runs, stale locks), on_bad_sample: skip edge cases, overwrite removing only mmzoo's files, published
recipes without absolute paths, train() receiving its evaluation and publish callables."""

from __future__ import annotations

import ast
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image
from transformers import TrainerCallback

from mmzoo.data import DataError
from mmzoo.errors import RecipeError
from mmzoo.recipe import load_recipe
from mmzoo.train import train
from mmzoo.train.checkpoints import LOCK_FILE

from .conftest import REPO, in_child, tiny


# -- item 3: one run per output_dir ---------------------------------------------------------------------------
class _HoldAtStep(TrainerCallback):
    """Signals the parent at step 1, then waits until it may go on."""

    def __init__(self, ready: Path, go: Path):
        self.ready, self.go = ready, go

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 1:
            self.ready.write_text(str(os.getpid()))
            deadline = time.monotonic() + 120
            while not self.go.exists() and time.monotonic() < deadline:
                time.sleep(0.05)


def test_second_concurrent_run_fails_at_once_naming_the_holder(tmp_path):
    out, ready, go = tmp_path / "run", tmp_path / "ready", tmp_path / "go"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child: the first run
        code = 0
        try:
            train(tiny(out), progress=False, callbacks=(_HoldAtStep(ready, go),))
        except BaseException:  # noqa: BLE001
            code = 3
        os._exit(code)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the first run never reached step 1"
        with pytest.raises(RecipeError, match=rf"{out} is in use by another mmzoo run \(PID {pid}"):
            train(tiny(out, "training.overwrite=true"), progress=False)
    finally:
        go.write_text("")
        _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert json.loads((out / "mmzoo_run.json").read_text())["status"] == "complete"  # the first run's, whole
    assert len([e for e in map(json.loads, (out / "training_log.jsonl").read_text().splitlines()) if "loss" in e]) == 4


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path, mmzoo_log):
    out = tmp_path / "run"
    out.mkdir()
    dead = in_child(lambda: None)
    assert dead == 0
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        os._exit(0)
    os.waitpid(pid, 0)  # pid is now a dead process id
    (out / LOCK_FILE).write_text(f"{pid}\n")
    result = train(tiny(out), progress=False)
    assert result.global_step == 4
    assert any(f"taking over the lock left by PID {pid}" in m for m in mmzoo_log), mmzoo_log


# -- item 7: overwrite removes only what mmzoo wrote ----------------------------------------------------------
def test_overwrite_keeps_the_users_files(tmp_path):
    out = tmp_path / "run"
    train(tiny(out), progress=False)
    mine = [out / "checkpoint-mybackup" / "weights.bin", out / "notes.txt", out / "data" / "keep.jsonl"]
    for path in mine:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("user data")
    with pytest.raises(RecipeError, match="already holds a run"):
        train(tiny(out), progress=False)
    train(tiny(out, "training.overwrite=true", "training.save_steps=null"), progress=False)
    assert all(p.read_text() == "user data" for p in mine)
    assert not list(out.glob("checkpoint-[0-9]*"))  # the previous run's checkpoints are gone
    assert (out / "model.safetensors").is_file()


# -- item 5: on_bad_sample: skip ------------------------------------------------------------------------------
RECIPE = """
model: mm-clip-tiny
data:
  train: {source: json, files: data/train.jsonl, root: data, columns: {image: file, caption: text},
          on_bad_sample: skip}
training: {max_steps: 2, per_device_train_batch_size: 2, logging_steps: 1, save_steps: null, cpu_threads: 1}
"""


def _json_data(folder: Path, good: int, bad: int) -> Path:
    images = folder / "data" / "img"
    images.mkdir(parents=True)
    rows = []
    for i in range(bad):  # first: a stream reads them before its first batch
        (images / f"bad{i}.png").write_bytes(b"not a png")
        rows.append({"file": f"img/bad{i}.png", "text": "broken"})
    for i in range(good):
        Image.new("RGB", (20, 20), (40 * i % 255, 80, 120)).save(images / f"{i}.png")
        rows.append({"file": f"img/{i}.png", "text": f"square {i}"})
    (folder / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "recipe.yaml").write_text(RECIPE)
    return folder / "recipe.yaml"


@pytest.mark.parametrize("streaming", [False, True])
def test_all_rows_bad_is_an_error_and_saves_nothing(tmp_path, streaming):
    recipe = load_recipe(_json_data(tmp_path, 0, 4), [f"training.output_dir={tmp_path / 'run'}",
                                                      f"data.train.streaming={str(streaming).lower()}"])
    with pytest.raises(DataError, match=r"data.train: .*(all 4 rows are bad|every row read was bad \(4 skipped)"):
        train(recipe, progress=False)
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_streaming_skips_are_counted_and_reported(tmp_path, capsys):
    from mmzoo.cli import main

    path = _json_data(tmp_path, 6, 2)
    run = tmp_path / "run"
    code = main(["train", str(path), f"--set=training.output_dir={run}", "--set=data.train.streaming=true"])
    assert code == 0
    assert "data.train: skipped 2 bad sample(s) (on_bad_sample: skip)" in capsys.readouterr().out
    report = json.loads((run / "eval_results.json").read_text())["bad_samples"]["train"]
    assert report["skipped"] == 2 and "bad0.png" in report["examples"][0]


def test_a_run_that_failed_before_writing_anything_does_not_block_the_next(tmp_path):
    path = _json_data(tmp_path, 0, 3)
    sets = [f"training.output_dir={tmp_path / 'run'}"]
    with pytest.raises(DataError, match="all 3 rows are bad"):
        train(load_recipe(path, sets), progress=False)
    assert json.loads((tmp_path / "run" / "mmzoo_run.json").read_text())["status"] == "running"
    shutil.rmtree(tmp_path / "data")
    _json_data(tmp_path, 4, 0)  # the data fixed: the same command now trains, no --resume / overwrite needed
    assert train(load_recipe(path, sets), progress=False).global_step == 2


# -- item 12: no absolute local path in the published recipe --------------------------------------------------
def test_saved_recipe_has_relative_paths_and_still_resolves(tmp_path):
    path = _json_data(tmp_path, 4, 0)
    run = tmp_path / "runs" / "a"
    train(load_recipe(path, [f"training.output_dir={run}"]), progress=False)
    text = (run / "recipe.yaml").read_text()
    assert str(tmp_path) not in text and "base_dir: ../.." in text
    again = load_recipe(run / "recipe.yaml", ["training.output_dir=elsewhere"])
    assert Path(again.base_dir) == tmp_path.resolve()  # data paths resolve against the original folder


def test_pushed_recipe_carries_no_local_path(tmp_path, hub_server, hub_repo_id):
    from huggingface_hub import hf_hub_download

    path = _json_data(tmp_path, 4, 0)
    train(load_recipe(path, [f"training.output_dir={tmp_path / 'run'}", f"hub.repo_id={hub_repo_id}"]),
          progress=False)
    pushed = Path(hf_hub_download(hub_repo_id, "recipe.yaml")).read_text()
    card = Path(hf_hub_download(hub_repo_id, "README.md")).read_text()
    assert str(tmp_path) not in pushed and str(tmp_path) not in card and "/root" not in pushed


# -- issue 12: train() receives what it needs -----------------------------------------------------------------
def test_train_uses_the_given_evaluate_and_publish_callables(tmp_path):
    calls = {"evaluate": [], "publish": []}

    def evaluate(model, processor, tasks, dataset, output_dir, *, eval_source, base_dir):
        calls["evaluate"].append(output_dir)
        return {"mmzoo_version": "x", "results": [{"task": "retrieval", "metrics": {"r@1": 0.5}}]}

    def publish(folder, hub, **kwargs):
        calls["publish"].append((Path(folder).name, kwargs.get("revision")))

    recipe = tiny(tmp_path / "run", "evaluation=[{task: retrieval}]", "hub.repo_id=me/model",
                  "hub.push_checkpoints=true")
    train(recipe, progress=False, evaluate=evaluate, publish=publish)
    # results returned, not written (eval_results.json has one writer); once per pushed checkpoint (each branch
    # carries its own step's results), and the final results reuse the last step's evaluation
    assert calls["evaluate"] == [None, None]
    assert calls["publish"] == [("checkpoint-2", "step-2"), ("checkpoint-4", "step-4"), ("run", None)]
    results = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert results["results"][0]["metrics"] == {"r@1": 0.5} and "trainer_metrics" in results


def test_run_module_has_no_hidden_upward_imports():
    tree = ast.parse((REPO / "mmzoo" / "train" / "run.py").read_text())
    calls = {f"{n.func.value.id}.{n.func.attr}" for n in ast.walk(tree) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name)}
    assert not calls & {"importlib.import_module", "inspect.signature"}  # no reaching upward by name
    writers = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and "atomic" in n.name]
    assert not writers  # the atomic writer lives in mmzoo.utils.files only
    eval_base = (REPO / "mmzoo" / "eval" / "tasks" / "base.py").read_text()
    assert "mkstemp" not in eval_base and "os.replace" not in eval_base
