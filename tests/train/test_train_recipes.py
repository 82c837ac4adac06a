"""Every tiny twin trains a few steps on CPU and leaves a complete, reloadable run folder."""

from __future__ import annotations

import json
import os

import pytest
import torch
import yaml

from mmzoo.recipe import RecipeSpec, resolve_model_spec
from mmzoo.train import train

from .conftest import TINY, read_log

TWINS = sorted(p.stem for p in TINY.glob("*.yaml"))
RUN_FILES = ("config.json", "model.safetensors", "processor_config.json", "recipe.yaml", "training_log.jsonl",
             "eval_results.json")


@pytest.mark.parametrize("name", TWINS)
def test_tiny_twin_trains_and_writes_the_run_folder(tiny_recipe, name):
    recipe = tiny_recipe(name=name)
    result = train(recipe, progress=False)
    run = result.run_dir
    assert result.global_step == recipe.training.max_steps
    for file in RUN_FILES:
        assert (run / file).is_file(), file
    assert (run / f"checkpoint-{recipe.training.max_steps}" / "trainer_state.json").is_file()

    log = read_log(run)
    train_logs = [e for e in log if "loss" in e]
    assert [e["step"] for e in train_logs] == list(range(1, recipe.training.max_steps + 1))
    spec = resolve_model_spec(recipe)
    if recipe.model.head == "pretraining":  # every objective's term is logged, and they add up to the loss
        for entry in train_logs:
            terms = {o.type: entry[f"loss/{o.type}"] for o in spec.objectives}
            weighted = sum(o.weight * terms[o.type] for o in spec.objectives)
            assert weighted == pytest.approx(entry["loss"], rel=1e-4)
    assert all(torch.isfinite(torch.tensor(e["loss"])) for e in train_logs)

    results = json.loads((run / "eval_results.json").read_text())
    assert results["trainer_metrics"]["eval_loss"] > 0
    assert [r["task"] for r in results["results"]] == [t.task for t in recipe.evaluation]

    saved = yaml.safe_load((run / "recipe.yaml").read_text())
    resolved = RecipeSpec.model_validate(saved)
    assert resolved.model.spec == spec and resolved.data == recipe.data
    assert (resolved.model.head, resolved.model.num_answers) == (recipe.model.head, recipe.model.num_answers)
    token = os.environ.get("HF_TOKEN") or "hf_"
    assert token not in (run / "recipe.yaml").read_text()


def test_saved_model_reloads_with_auto_classes(tiny_recipe):
    from PIL import Image
    from transformers import AutoModel, AutoProcessor

    result = train(tiny_recipe(), progress=False)
    model = AutoModel.from_pretrained(result.run_dir).eval()
    processor = AutoProcessor.from_pretrained(result.run_dir)
    batch = processor(text=["a small red circle at the top left"], images=[Image.new("RGB", (32, 32))])
    with torch.no_grad():
        assert model(**batch).logits_per_image.shape == (1, 1)
