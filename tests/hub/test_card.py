"""Model cards rendered from run directories, validated by the loopback Hub's validate-yaml."""

from __future__ import annotations

import json

import pytest
import yaml
from huggingface_hub import ModelCard, parse_eval_result_entries

import mmzoo
from mmzoo.errors import HubError
from mmzoo.hub.card import eval_result_files, is_generated_card, load_run, render_card


def _config_only_run(tmp_path, spec: dict):
    """A run dir holding only config.json: cards need no weights."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mmzoo", "spec": spec}))
    return tmp_path


def test_card_metadata_and_validation(tiny_run, hub_server):
    card = render_card(tiny_run, "tester/tiny-clip")
    card.validate()  # the Hub's validate-yaml (loopback)
    data = card.data
    assert data.library_name == "mmzoo" and data.license == "mit"
    assert data.pipeline_tag == "zero-shot-image-classification"
    assert {"mmzoo", "dual_encoder", "contrastive", "tiny"} <= set(data.tags)
    assert data.base_model is None and data.datasets is None  # inline towers; built-in dataset is no Hub id
    metrics = {r.metric_type: r.metric_value for r in data.eval_results}
    assert metrics == {"t2i_recall@1": 0.25, "i2t_recall@1": 0.5, "t2i_recall@5": 0.75}
    assert {r.dataset_split for r in data.eval_results} == {"test"}
    text = str(card)
    for expected in ('AutoModel.from_pretrained("tester/tiny-clip")', "import mmzoo", "| `contrastive` | 1.0 |",
                     "| learning_rate | 0.001 |", "zero-shot-image-classification", "## Limitations"):
        assert expected in text


def test_base_model_lists_only_pretrained_hub_ids(tmp_path, hub_server):
    spec = mmzoo.load_spec("mm-lit-tiny").to_dict()
    card = render_card(_config_only_run(tmp_path, spec))
    assert card.data.base_model == ["sentence-transformers/all-MiniLM-L6-v2"]
    card.validate()
    spec["encoders"][0]["model"] = str(tmp_path)  # a local folder cannot be a base_model
    assert render_card(_config_only_run(tmp_path, spec)).data.base_model is None


def test_pipeline_tag_without_pair_scores(tmp_path):
    spec = mmzoo.load_spec("mm-albef-tiny").to_dict()
    spec["objectives"] = [o for o in spec["objectives"] if o["type"] != "contrastive"]
    card = render_card(_config_only_run(tmp_path, spec))
    assert card.data.pipeline_tag == "feature-extraction"
    assert "zero-shot-image-classification" not in card.text


def test_eval_results_files_round_trip(tiny_run):
    files = eval_result_files(load_run(tiny_run))
    assert list(files) == [".eval_results/mmzoo-shapes.yaml"]
    entries = parse_eval_result_entries(yaml.safe_load(files[".eval_results/mmzoo-shapes.yaml"]))
    assert {e.task_id: e.value for e in entries} == {
        "retrieval/i2t_recall@1": 0.5, "retrieval/t2i_recall@1": 0.25, "retrieval/t2i_recall@5": 0.75}
    assert {e.dataset_id for e in entries} == {"mmzoo:shapes"}


def test_generated_marker_detects_edits(tiny_run):
    text = str(render_card(tiny_run))
    assert is_generated_card(text) and is_generated_card(text.replace("\n", "\r\n"))
    assert is_generated_card(str(ModelCard(text)))  # survives the client's parse/serialise
    assert not is_generated_card(text.replace("## Limitations", "## Known issues"))
    assert not is_generated_card("# my own card\n")


def test_missing_config_is_a_clear_error(tmp_path):
    with pytest.raises(HubError, match="config.json: no such file"):
        render_card(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(HubError, match="not an mmzoo config"):
        render_card(tmp_path)
