"""hub.push_checkpoints: every branch carries the results of its own weights (never another step's), and each
push prints where it went. A tiny real run pushes main and checkpoint branches to the loopback Hub; each
revision's model is downloaded and re-evaluated, and must reproduce the results published beside it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download
from transformers import AutoModel, AutoProcessor

import mmzoo  # noqa: F401  (registers the Auto classes)
from mmzoo.eval import run_evaluation
from mmzoo.recipe import load_recipe
from mmzoo.train import train

TINY = Path(__file__).parents[2] / "recipes" / "tiny"


def _download_json(repo_id, name, revision, cache):
    return json.load(open(hf_hub_download(repo_id, name, revision=revision, cache_dir=cache)))


@pytest.fixture(scope="module")
def pushed_run(hub_cache, _hub_server_session, tmp_path_factory):
    import contextlib
    import io

    root = tmp_path_factory.mktemp("ckpt-run")
    repo_id = f"{_hub_server_session.user}/checkpoint-branches"
    recipe = load_recipe(TINY / "clip-coco.yaml", [
        f"training.output_dir={root / 'run'}", "training.max_steps=4", "training.save_steps=2",
        "training.learning_rate=5e-3", f"hub.repo_id={repo_id}", "hub.push_checkpoints=true",
    ])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = train(recipe, progress=False)
    return {"repo_id": repo_id, "recipe": recipe, "result": result, "printed": printed.getvalue()}


def test_each_revision_has_the_results_of_its_own_weights(pushed_run, tmp_path):
    repo_id, recipe = pushed_run["repo_id"], pushed_run["recipe"]
    branches = {b.name for b in HfApi().list_repo_refs(repo_id).branches}
    assert {"main", "step-2", "step-4"} <= branches
    from mmzoo.data import load_source

    eval_data = load_source(recipe.data.eval)
    published = {}
    for revision in ("main", "step-2", "step-4"):
        results = _download_json(repo_id, "eval_results.json", revision, tmp_path / revision)
        model = AutoModel.from_pretrained(repo_id, revision=revision, cache_dir=tmp_path / revision).eval()
        processor = AutoProcessor.from_pretrained(repo_id, revision=revision, cache_dir=tmp_path / revision)
        again = run_evaluation(model, processor, recipe.evaluation, eval_data, None, eval_source=recipe.data.eval)
        assert [r["metrics"] for r in results["results"]] == pytest.approx(
            [r["metrics"] for r in again["results"]]), revision
        published[revision] = results
        info = _download_json(repo_id, "run_info.json", revision, tmp_path / revision)
        assert info["global_step"] == (2 if revision == "step-2" else 4)
    assert published["step-2"]["evaluated_step"] == 2
    assert published["step-2"]["trainer_metrics"]["eval_loss"] != published["main"]["trainer_metrics"]["eval_loss"]
    # the last checkpoint holds the final weights: the same numbers, evaluated once at step 4 (not twice)
    assert published["step-4"]["results"] == published["main"]["results"]
    log = [json.loads(line) for line in (pushed_run["result"].run_dir / "training_log.jsonl").read_text().splitlines()]
    assert sum(1 for e in log if "eval_loss" in e and e["step"] == 4) == 1


def test_every_push_prints_its_url_and_branch(pushed_run, _hub_server_session):
    printed, repo_id = pushed_run["printed"], pushed_run["repo_id"]
    for what, branch in (("checkpoint-2", "step-2"), ("checkpoint-4", "step-4"), ("run", "main")):
        line = f"pushed {what} to {_hub_server_session.url}/{repo_id}/tree/{branch} (repo {repo_id}, branch {branch}"
        assert line in printed, printed


def test_checkpoint_card_says_which_step(pushed_run, tmp_path):
    repo_id = pushed_run["repo_id"]
    readme = open(hf_hub_download(repo_id, "README.md", revision="step-2", cache_dir=tmp_path)).read()
    assert "Checkpoint at step 2" in readme
    commit = HfApi().list_repo_commits(repo_id, revision="step-2")[0]
    assert re.match(r"Upload clip-coco-tiny checkpoint at step 2 \(model mm-clip-tiny; 2 steps, 16 samples\)",
                    commit.title), commit.title


def test_checkpoint_without_evaluation_publishes_no_results(hub_cache, _hub_server_session, tmp_path):
    repo_id = f"{_hub_server_session.user}/checkpoint-no-eval"
    recipe = load_recipe(TINY / "clip-coco.yaml", [
        f"training.output_dir={tmp_path / 'run'}", "training.max_steps=2", "training.save_steps=2", "data.eval=null",
        "evaluation=[]", f"hub.repo_id={repo_id}", "hub.push_checkpoints=true",
    ])
    train(recipe, progress=False)
    files = HfApi().list_repo_files(repo_id, revision="step-2")
    assert "model.safetensors" in files and "eval_results.json" not in files
    assert not any(f.startswith(".eval_results/") for f in files)
    readme = open(hf_hub_download(repo_id, "README.md", revision="step-2", cache_dir=tmp_path)).read()
    assert "This checkpoint was not evaluated" in readme and "model-index" not in readme


def test_checkpoint_pushed_by_hand_does_not_inherit_mains_results(tiny_run, hub_repo_id, tmp_path):
    """`mmzoo push run/checkpoint-2 --revision step-2` after main: the branch starts as a copy of main, but
    main's results (measured on other weights) are removed from it."""
    from mmzoo.hub import push_run

    push_run(tiny_run, hub_repo_id)
    assert "eval_results.json" in HfApi().list_repo_files(hub_repo_id)
    push_run(tiny_run / "checkpoint-2", hub_repo_id, revision="step-2")
    files = HfApi().list_repo_files(hub_repo_id, revision="step-2")
    assert "model.safetensors" in files
    assert not [f for f in files if f in ("eval_results.json", "run_info.json", "loss_curve.png", "examples.png")
                or f.startswith(".eval_results/")], files
    assert "eval_results.json" in HfApi().list_repo_files(hub_repo_id)  # main keeps its own
