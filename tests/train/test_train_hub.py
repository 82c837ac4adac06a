"""`hub.repo_id` publishes the finished run (and, with push_checkpoints, each checkpoint) to the Hub —
here mmzoo's loopback Hub server, through the real huggingface_hub client."""

from __future__ import annotations

from huggingface_hub import HfApi

from mmzoo.train import train


def test_run_and_checkpoints_are_pushed(hub_server, hub_repo_id, tiny_recipe):
    recipe = tiny_recipe(f"hub.repo_id={hub_repo_id}", "hub.push_checkpoints=true", "training.save_steps=2",
                         "hub.tags=[tiny-test]")
    train(recipe, progress=False)
    api = HfApi(endpoint=hub_server.url, token=hub_server.token)
    files = set(api.list_repo_files(hub_repo_id))
    assert {"config.json", "model.safetensors", "recipe.yaml", "eval_results.json", "README.md"} <= files
    assert not any(f.startswith("checkpoint-") or f == "training_log.jsonl" for f in files)
    branches = {b.name for b in api.list_repo_refs(hub_repo_id).branches}
    assert {"main", "step-2"} <= branches
    assert "tiny-test" in api.model_info(hub_repo_id).tags
