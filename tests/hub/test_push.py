"""push_run against the loopback Hub with the real huggingface_hub/transformers clients."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from huggingface_hub import HfApi, ModelCard, hf_hub_download, parse_eval_result_entries
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoProcessor

import mmzoo  # noqa: F401  (registers the Auto classes)
from mmzoo.errors import HubError
from mmzoo.hub import is_generated_card, push_run


@pytest.fixture
def api(hub_server) -> HfApi:
    return HfApi()


def _inputs(processor):
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(2)]
    return processor(text=["a red circle", "two blue squares"], images=images, return_tensors="pt")


def _fresh_weights(path) -> None:
    weights = load_file(path)
    name = sorted(weights)[0]
    weights[name] = weights[name] + torch.rand_like(weights[name])
    save_file(weights, path, metadata={"format": "pt"})


def _set_recall(run, value: float) -> None:
    """Change text->image recall@1 in the run's eval_results.json (a re-evaluation with other numbers)."""
    results = json.loads((run / "eval_results.json").read_text())
    results["results"][0]["metrics"]["text_to_image_recall_at_1"] = value
    (run / "eval_results.json").write_text(json.dumps(results))


def _metrics(run) -> dict:
    return json.loads((run / "eval_results.json").read_text())["results"][0]["metrics"]


def _readme(repo_id: str, tmp_path, revision: str = "main") -> str:
    return open(hf_hub_download(repo_id, "README.md", revision=revision, cache_dir=tmp_path / "readme")).read()


def test_push_then_load_is_bit_identical(api, hub_server, hub_repo_id, tiny_run, tmp_path):
    result = push_run(tiny_run, hub_repo_id)
    commits = api.list_repo_commits(hub_repo_id)
    assert len(commits) == 2 and commits[0].commit_id == result.commit_oid  # initial commit + ONE push commit
    files = set(api.list_repo_files(hub_repo_id))
    assert {"config.json", "model.safetensors", "processor_config.json", "tokenizer.json", "recipe.yaml",
            "eval_results.json", "README.md", ".eval_results/mmzoo-shapes.yaml"} <= files
    assert not any(f.startswith("checkpoint-") or f == "training_log.jsonl" for f in files)

    cache = tmp_path / "fresh-cache"
    local_model, remote_model = AutoModel.from_pretrained(tiny_run), AutoModel.from_pretrained(hub_repo_id, cache_dir=cache)
    local_proc, remote_proc = AutoProcessor.from_pretrained(tiny_run), AutoProcessor.from_pretrained(hub_repo_id, cache_dir=cache)
    local_inputs, remote_inputs = _inputs(local_proc), _inputs(remote_proc)
    assert local_inputs.keys() == remote_inputs.keys()
    assert all(torch.equal(local_inputs[k], remote_inputs[k]) for k in local_inputs)
    with torch.no_grad():
        expected, got = local_model(**local_inputs), remote_model(**remote_inputs)
    for name in ("image_embeds", "text_embeds", "logits_per_image"):
        assert torch.equal(expected[name], got[name]), name


def test_card_and_metrics_on_the_hub(api, hub_repo_id, tiny_run, tmp_path):
    push_run(tiny_run, hub_repo_id)
    readme = _readme(hub_repo_id, tmp_path)
    ModelCard(readme).validate()
    assert is_generated_card(readme)
    info = api.model_info(hub_repo_id, expand=["evalResults", "cardData"])
    index = info.card_data.eval_results
    metrics = _metrics(tiny_run)
    assert {r.metric_type: r.metric_value for r in index} == metrics
    assert {r.metric_name for r in index} >= {"Text→Image Recall@1", "Image→Text Recall@5", "Mean Recall"}
    assert {e.task_id: e.value for e in info.eval_results}["retrieval/text_to_image_recall_at_1"] == \
        metrics["text_to_image_recall_at_1"]
    path = hf_hub_download(hub_repo_id, ".eval_results/mmzoo-shapes.yaml", cache_dir=tmp_path / "c")
    assert len(parse_eval_result_entries(yaml.safe_load(open(path)))) == len(metrics)


def test_push_to_branch_leaves_main_unchanged(api, hub_repo_id, tiny_run):
    push_run(tiny_run, hub_repo_id)
    main_head = api.model_info(hub_repo_id).sha
    _set_recall(tiny_run, 0.3)
    result = push_run(tiny_run, hub_repo_id, revision="step-2", commit_message="step 2")
    refs = {b.name: b.target_commit for b in api.list_repo_refs(hub_repo_id).branches}
    assert refs["main"] == main_head and refs["step-2"] == result.commit_oid != main_head
    assert api.list_repo_commits(hub_repo_id, revision="step-2")[0].title == "step 2"


def test_edited_readme_survives_repush(api, hub_repo_id, tiny_run, tmp_path):
    push_run(tiny_run, hub_repo_id)
    edited = _readme(hub_repo_id, tmp_path).replace("## Limitations", "## Limitations\n\nHand-written note.")
    api.upload_file(path_or_fileobj=edited.encode(), path_in_repo="README.md", repo_id=hub_repo_id)
    _set_recall(tiny_run, 0.3)

    kept = push_run(tiny_run, hub_repo_id)
    assert kept.card_kept and "README.md" not in kept.files
    assert "Hand-written note." in _readme(hub_repo_id, tmp_path / "a")
    assert json.load(open(hf_hub_download(hub_repo_id, "eval_results.json", cache_dir=tmp_path / "b")))[
        "results"][0]["metrics"]["text_to_image_recall_at_1"] == 0.3

    replaced = push_run(tiny_run, hub_repo_id, overwrite_card=True)
    readme = _readme(hub_repo_id, tmp_path / "c")
    assert not replaced.card_kept and "Hand-written note." not in readme and is_generated_card(readme)


def test_generated_readme_is_refreshed(hub_repo_id, tiny_run, tmp_path):
    push_run(tiny_run, hub_repo_id)
    _set_recall(tiny_run, 0.375)
    assert not push_run(tiny_run, hub_repo_id).card_kept
    assert "0.3750" in _readme(hub_repo_id, tmp_path)


def test_token_never_leaves_the_machine(hub_server, hub_repo_id, tiny_run, tmp_path):
    recipe = yaml.safe_load((tiny_run / "recipe.yaml").read_text())
    recipe["hub"]["token"] = hub_server.token
    (tiny_run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    push_run(tiny_run, hub_repo_id)
    pushed = open(hf_hub_download(hub_repo_id, "recipe.yaml", cache_dir=tmp_path)).read()
    assert hub_server.token not in pushed and "token" not in yaml.safe_load(pushed)["hub"]
    (tiny_run / "config.json").write_text((tiny_run / "config.json").read_text().replace(
        '"model_type"', f'"leak": "{hub_server.token}", "model_type"'))
    with pytest.raises(HubError, match=r"token appears in \['config.json'"):
        push_run(tiny_run, hub_repo_id)


def test_auth_errors_are_clear(hub_server, hub_repo_id, tiny_run, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(HubError, match="no Hugging Face token"):
        push_run(tiny_run, hub_repo_id)
    with pytest.raises(HubError, match="token was rejected"):
        push_run(tiny_run, hub_repo_id, token="hf_wrong")
    hub_server.add_token("hf_stranger", "stranger")
    with pytest.raises(HubError, match="no write access"):
        push_run(tiny_run, hub_repo_id, token="hf_stranger")
    hub_server.add_token("hf_read_only", hub_server.user, role="read")
    HfApi().create_repo(hub_repo_id, token=hub_server.token)
    with pytest.raises(HubError, match="no write access"):
        push_run(tiny_run, hub_repo_id, token="hf_read_only")
    assert HfApi().list_repo_files(hub_repo_id, token=hub_server.token) == [".gitattributes"]


@pytest.mark.parametrize("fault", ["commit-500", "lfs-500", "lfs-drop", "commit-drop"])
def test_failures_commit_nothing(api, hub_server, hub_repo_id, tiny_run, hub_fast_retries, fault):
    _fresh_weights(tiny_run / "model.safetensors")  # the LFS store dedups: make sure an upload is needed
    api.create_repo(hub_repo_id)
    kind, how = fault.split("-")
    pattern = r"/commit/main$" if kind == "commit" else r"^/lfs-upload/"
    if how == "500":
        hub_server.fail(pattern, times=None)
    else:
        hub_server.drop(pattern, after_bytes=100, times=None)
    match = r"HTTP 500 after \d+ tries" if how == "500" else "onnection"
    with pytest.raises(HubError, match=match):
        push_run(tiny_run, hub_repo_id)
    assert api.list_repo_files(hub_repo_id) == [".gitattributes"] and len(api.list_repo_commits(hub_repo_id)) == 1


def test_missing_weights_and_remote_code(api, tiny_run, hub_repo_id):
    (tiny_run / "processor_config.json").unlink()
    with pytest.raises(HubError, match="processor_config.json: no such file"):  # remote code needs its auto_map
        push_run(tiny_run, hub_repo_id, remote_code=True)
    assert not api.repo_exists(hub_repo_id)  # checked before any request
    (tiny_run / "model.safetensors").unlink()
    with pytest.raises(HubError, match="no \\*.safetensors weights"):
        push_run(tiny_run, hub_repo_id)
