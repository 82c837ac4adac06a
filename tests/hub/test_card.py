"""Model cards rendered from real tiny run folders, validated by the loopback Hub's validate-yaml."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml
from huggingface_hub import ModelCard, parse_eval_result_entries

import mmzoo
from mmzoo.errors import HubError
from mmzoo.hub.card import (
    TASK_TYPES,
    code_blocks,
    eval_result_files,
    is_generated_card,
    load_run,
    metric_name,
    render_card,
)
from mmzoo.hub.snippets import HEADS
from mmzoo.testing._hub_yaml import PIPELINE_TAGS


def _config_only_run(tmp_path, spec: dict):
    """A run dir holding only config.json: cards need no weights."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mmzoo", "spec": spec}))
    return tmp_path


def _outside_code(markdown: str) -> str:
    """The Markdown without its fenced blocks and code spans (where every character shows literally)."""
    without_fences = re.sub(r"^(`{3,})[^\n]*\n.*?^\1[ \t]*$", "", markdown, flags=re.DOTALL | re.MULTILINE)
    return re.sub(r"(`+)(?!`).*?(?<!`)\1(?!`)", "", without_fences)


def _results(run):
    return json.loads((run / "eval_results.json").read_text())["results"]


def test_card_metadata_and_validation(tiny_run, hub_server):
    card = render_card(tiny_run, "tester/tiny-clip")
    card.validate()  # the Hub's validate-yaml (loopback)
    data = card.data
    assert data.library_name == "mmzoo" and data.license == "mit"
    assert data.pipeline_tag == "zero-shot-image-classification"
    assert {"mmzoo", "dual_encoder", "contrastive", "tiny"} <= set(data.tags)
    assert data.base_model is None and data.datasets is None  # inline towers; built-in dataset is no Hub id
    [retrieval] = _results(tiny_run)
    assert {r.metric_type: r.metric_value for r in data.eval_results} == retrieval["metrics"]
    assert {r.task_type for r in data.eval_results} == {"feature-extraction"}
    names = {r.metric_type: r.metric_name for r in data.eval_results}
    assert names["text_to_image_recall_at_1"] == "Text→Image Recall@1"
    assert names["image_to_text_median_rank"] == "Image→Text Median Rank"
    text = str(card)
    for expected in ('AutoModel.from_pretrained("tester/tiny-clip")', "import mmzoo", "| `contrastive` | 1.0 |",
                     "| learning_rate | 0.001 |", "zero-shot-image-classification", "## Limitations",
                     "Training data: `mmzoo:shapes`.", "| Text→Image Recall@1 |"):
        assert expected in text, expected


def test_task_ids_and_pipeline_tags_are_hub_ids():
    """Every task type and pipeline tag mmzoo writes is in the Hub's task list (huggingface.js pipelines, as
    mirrored by the loopback Hub's validate-yaml; retrieval / matching have no Hub task of their own)."""
    for task, (task_type, _) in TASK_TYPES.items():
        assert task_type in PIPELINE_TAGS, task
    for head in HEADS.values():
        assert head.pipeline_tag in PIPELINE_TAGS, head.name
    assert "image-text-retrieval" not in PIPELINE_TAGS


def test_metric_names_are_readable():
    assert metric_name("text_to_image_recall_at_10") == "Text→Image Recall@10"
    assert metric_name("bleu_4") == "BLEU 4" and metric_name("cider") == "CIDEr"
    assert metric_name("vqa_accuracy") == "VQA Accuracy" and metric_name("mean_recall") == "Mean Recall"


def test_card_facts_come_from_the_run(tiny_run):
    """Wall time, hardware, samples, final losses, the learned temperature and a description of the spec as
    trained (after overrides), from the run folder itself."""
    info = json.loads((tiny_run / "run_info.json").read_text())
    assert info["global_step"] == 2 and info["samples_seen"] == 16 and info["wall_time_s"] > 0
    text = str(render_card(tiny_run))
    assert "| Optimizer steps | 2 |" in text and "| Samples seen | 16 (0.50 epochs) |" in text
    assert f"| Final training loss | {info['final_train_loss']:.4f} (contrastive " in text
    assert f"| Final evaluation loss | {info['final_eval_loss']:.4f}" in text
    assert re.search(r"\| Hardware \| CPU only: .+ \(\d+ cores, \d+ torch threads\) \|", text)
    from safetensors import safe_open

    with safe_open(str(tiny_run / "model.safetensors"), "np") as f:
        scale = float(f.get_tensor("objectives.contrastive.logit_scale").reshape(-1)[0])
    import math

    learned = f"temperature {1 / math.exp(scale):.4g}"
    assert learned in text and scale != pytest.approx(math.log(1 / 0.07), abs=1e-6)  # it moved from its init
    # the preset's description (hidden 32, 32 px) is not repeated for a spec built from it: it is regenerated
    assert "Tiny CPU twin" not in text.split("## Model specification")[0]
    assert "ViT image tower (2 layers, width 32, 32 px images, 8 px patches, mean pooled)" not in text  # BERT/VIT
    assert "VIT image tower (2 layers, width 32, 32 px images, 8 px patches), mean pooled" in text


def test_description_follows_overrides(trained_run, tmp_path):
    from mmzoo.hub.facts import describe_spec

    spec = mmzoo.load_spec("mm-clip-tiny").with_overrides({"encoders.image.config.hidden_size": 64,
                                                            "encoders.image.config.image_size": 48}) \
        if hasattr(mmzoo.load_spec("mm-clip-tiny"), "with_overrides") else None
    if spec is None:
        from mmzoo.specs import ModelSpec

        data = mmzoo.load_spec("mm-clip-tiny").to_dict()
        data["encoders"][1]["config"].update(hidden_size=64, image_size=48)
        spec = ModelSpec.from_dict(data)
    assert "width 64, 48 px images" in describe_spec(spec)
    # the user's own description is kept (an inline spec of theirs)
    run = shutil.copytree(trained_run("clip"), tmp_path / "run")
    info = json.loads((run / "run_info.json").read_text())
    info["model_origin"]["description_from"] = "user"
    (run / "run_info.json").write_text(json.dumps(info))
    assert "Tiny CPU twin of mm-clip" in str(render_card(run)).split("## Model specification")[0]


@pytest.mark.parametrize("evil", [
    "<script>alert(1)</script>",
    "nice model\n## Injected heading",
    "a | b | c",
    "caption\n```\n## Swallowed",
])
def test_user_strings_are_escaped(tiny_run, hub_server, evil):
    """A description, dataset name, tag or recipe value cannot inject HTML, headings, table cells or close the
    card's code blocks (issue 13 item 11)."""
    recipe = yaml.safe_load((tiny_run / "recipe.yaml").read_text())
    recipe["description"] = evil
    recipe["data"]["eval"] = {"source": "hf", "dataset": evil, "split": "test"}
    recipe["training"]["learning_rate"] = evil
    recipe["hub"]["tags"] = [evil]
    (tiny_run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    card = render_card(tiny_run, "tester/tiny-clip")
    card.validate()
    text, data = str(card), ModelCard(str(card)).data
    assert evil in data.tags  # the YAML front matter keeps the string exactly
    body = text.split("\n---\n", 1)[1]
    assert "<script>" not in _outside_code(body)  # shown as code or as &lt;script&gt;, never as HTML
    headings = re.findall(r"^#+ .*$", body, flags=re.MULTILINE)
    assert headings == [h for h in headings if "Injected" not in h and "Swallowed" not in h]
    assert re.findall(r"^## .*$", body, flags=re.MULTILINE) == [
        "## Model specification", "## Training", "## Evaluation", "## Usage", "## Limitations"]
    for row in re.findall(r"^\|.*\|$", body, flags=re.MULTILINE):
        if row.startswith("| learning_rate"):
            assert len(re.split(r"(?<!\\)\|", row)) == 4, row  # two cells, the value's pipes escaped
    assert len(code_blocks(text, "python")) == 1 and len(code_blocks(text, "yaml")) == 2


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


def test_heads_follow_the_capabilities_the_components_declare(monkeypatch):
    """The card's head table (pipeline_tag, usage sections) and the remote-code export read the flags declared on
    the objective specs (generates_text, matches_pairs, pair_scores), never objective tag names."""
    from mmzoo.hub.remote_code import MODEL_AUTO_CLASSES
    from mmzoo.hub.snippets import supported_heads
    from mmzoo.specs.objectives import CaptioningSpec, ItmSpec, SigmoidSpec

    coca, albef, siglip = (mmzoo.load_spec(p) for p in ("mm-coca-tiny", "mm-albef-tiny", "mm-siglip-tiny"))

    def heads(spec):
        return [h.name for h in supported_heads(spec, {})]

    generates = MODEL_AUTO_CLASSES["AutoModelForImageTextToText"][1]
    assert "captioning" in heads(coca) and generates(coca, {}) and "itm" in heads(albef)
    assert siglip.pair_scores == "sigmoid" and albef.pair_scores == "softmax"
    monkeypatch.setattr(CaptioningSpec, "generates_text", False)
    monkeypatch.setattr(ItmSpec, "matches_pairs", False)
    monkeypatch.setattr(SigmoidSpec, "pair_scores", "softmax")
    assert "captioning" not in heads(coca) and not generates(coca, {}) and "itm" not in heads(albef)
    assert siglip.pair_scores == "softmax"


def test_eval_results_files_round_trip(tiny_run):
    files = eval_result_files(load_run(tiny_run))
    assert list(files) == [".eval_results/mmzoo-shapes.yaml"]
    entries = parse_eval_result_entries(yaml.safe_load(files[".eval_results/mmzoo-shapes.yaml"]))
    [retrieval] = _results(tiny_run)
    assert {e.task_id: e.value for e in entries} == {f"retrieval/{k}": v for k, v in retrieval["metrics"].items()}
    assert {e.dataset_id for e in entries} == {"mmzoo:shapes"}
    notes = {e.task_id: e.notes for e in entries}
    assert notes["retrieval/text_to_image_recall_at_1"].startswith("Image-Text Retrieval: Text→Image Recall@1 (")


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


@pytest.mark.parametrize("head", ["clip", "vqa", "captioning"])
def test_run_pictures_are_written_shown_and_pushed(trained_run, hub_repo_id, head, tmp_path):
    """The run folder has a loss curve and a gallery of held-out examples; both open as images, show in the
    card and are pushed."""
    import numpy as np
    from huggingface_hub import HfApi
    from PIL import Image

    from mmzoo.hub import push_run

    run = trained_run(head)
    for name in ("loss_curve.png", "examples.png"):
        with Image.open(run / name) as image:
            image.load()
            pixels = np.asarray(image.convert("L"), dtype=float)
            assert image.width >= 400 and image.height >= 200 and pixels.std() > 5, name  # drawn, not blank
    text = str(render_card(run))
    assert "![Training and evaluation curves](loss_curve.png)" in text
    assert "![Held-out examples with the model's top results](examples.png)" in text
    push_run(run, hub_repo_id)
    assert {"loss_curve.png", "examples.png"} <= set(HfApi().list_repo_files(hub_repo_id))


def test_gallery_shows_each_heads_results(trained_run):
    from transformers import AutoConfig, AutoModel, AutoModelForVisualQuestionAnswering, AutoProcessor

    from mmzoo.data import load_source
    from mmzoo.hub.pictures import curve_series, gallery_rows
    from mmzoo.recipe import load_recipe

    for head, expect in (("clip", r"^1\. .+ \(-?[01]\.\d\d\)( ✓)?$"), ("captioning", r"^generated: "),
                         ("vqa", r"^.+ \([01]\.\d\d\)$")):
        run = trained_run(head)
        recipe = load_recipe(run / "recipe.yaml")
        data = load_source(recipe.data.eval, recipe.base_dir or ".")
        auto = AutoModelForVisualQuestionAnswering if AutoConfig.from_pretrained(run).answer_vocab else AutoModel
        rows = gallery_rows(auto.from_pretrained(run), AutoProcessor.from_pretrained(run), data)
        assert len(rows) == 4 and all(r["lines"] for r in rows), head
        assert re.match(expect, rows[0]["lines"][0]), (head, rows[0]["lines"])
    log = [json.loads(line) for line in (trained_run("clip") / "training_log.jsonl").read_text().splitlines()]
    panels = curve_series(log)
    assert set(panels) == {"Training loss", "Evaluation loss", "Evaluation metrics"}
    assert {"total", "contrastive"} <= set(panels["Training loss"])
    assert "retrieval/text_to_image_recall_at_1" in panels["Evaluation metrics"]


def test_a_picture_that_cannot_be_drawn_does_not_stop_the_run(tmp_path, caplog):
    import logging

    from mmzoo.hub.pictures import write_pictures

    log = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]
    logging.getLogger("mmzoo").addHandler(caplog.handler)
    try:
        written = write_pictures(tmp_path, log, model=object(), processor=object(), eval_dataset=object())
    finally:
        logging.getLogger("mmzoo").removeHandler(caplog.handler)
    assert written == [tmp_path / "loss_curve.png"] and not (tmp_path / "examples.png").exists()
    assert "could not draw examples.png (AttributeError" in caplog.text


def test_card_states_the_precision_and_its_measurement(tiny_run):
    """From the run's precision.json: the precision trained in, why, and the calibration's timings; the machine's
    cache file the measurement came from (a local path) stays out of the card."""
    choice = json.loads((tiny_run / "precision.json").read_text())  # written by the run itself
    assert choice["requested"] == "auto"
    assert f"| Precision | {choice['precision']}, chosen by `precision: auto`: " in str(render_card(tiny_run))
    choice.update(precision="bf16", reason="the CPU has avx512_bf16; bf16 autocast measured faster on this model",
                  seconds_per_step={"fp32": 1.97, "bf16": 1.12}, speedup_bf16=1.76,
                  cached_from="/home/someone/.cache/mmzoo/precision/abc.json")
    (tiny_run / "precision.json").write_text(json.dumps(choice))
    text = str(render_card(tiny_run))
    assert ("| Precision | bf16, chosen by `precision: auto`: the CPU has avx512_bf16; bf16 autocast measured "
            "faster on this model; calibration: fp32 1.970 s/step, bf16 1.120 s/step, bf16 speedup 1.76x |") in text
    assert "/home/someone" not in text
    (tiny_run / "precision.json").write_text(json.dumps({**choice, "requested": "fp32", "precision": "fp32"}))
    assert "| Precision | fp32 (set in the recipe) |" in str(render_card(tiny_run))
