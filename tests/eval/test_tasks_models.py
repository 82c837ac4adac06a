"""Every evaluation task on a tiny real model (16 built-in `shapes` / `digits` samples at 32 px): the task runs,
records its protocol, and its metric reacts to what the model predicts (heads forced to one answer)."""

from __future__ import annotations

import os

import pytest
import torch

import mmzoo
from mmzoo.builder import build_config
from mmzoo.data import BuiltinSourceSpec, load_source
from mmzoo.eval import EvaluationError, run_evaluation
from mmzoo.eval.tasks._heads import as_head
from mmzoo.modeling import MmzooForConditionalGeneration, MmzooForVisualQuestionAnswering
from tests.objectives.helpers import tiny_spec

SHAPES = BuiltinSourceSpec(name="shapes", split="test", image_size=32, params={"num_samples": 16})
FORCED = "red"  # a one-token answer of the tiny tokenizer, and a frequent shapes answer


@pytest.fixture(autouse=True, scope="module")
def _one_thread_private_cache(tmp_path_factory):
    threads, old = torch.get_num_threads(), os.environ.get("MMZOO_CACHE")
    torch.set_num_threads(1)  # tiny models: one thread avoids oversubscription on a busy machine
    os.environ["MMZOO_CACHE"] = str(tmp_path_factory.mktemp("mmzoo_cache"))
    yield
    torch.set_num_threads(threads)
    os.environ.pop("MMZOO_CACHE") if old is None else os.environ.__setitem__("MMZOO_CACHE", old)


@pytest.fixture(scope="module")
def shapes():
    return load_source(SHAPES)


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    return mmzoo.build_model("mm-clip-tiny"), mmzoo.build_processor("mm-clip-tiny")


@pytest.fixture(scope="module")
def captioner():
    spec = tiny_spec("cross_attention", ["contrastive", "captioning"])
    torch.manual_seed(0)
    return mmzoo.build_model(spec), mmzoo.build_processor(spec)


def fraction_answered(dataset, answer: str) -> float:
    answers = [a[0] for row in dataset["answers"] for a in row]
    return sum(a == answer for a in answers) / len(answers)


def only_result(results):
    assert len(results["results"]) == 1
    return results["results"][0]


def test_retrieval_on_tiny_clip(clip, shapes, tmp_path):
    model, processor = clip
    model.train()
    result = only_result(run_evaluation(model, processor, [{"task": "retrieval", "batch_size": 5}], shapes, tmp_path,
                                        eval_source=SHAPES))
    assert model.training  # restored after evaluating in eval mode
    assert result["dataset"] == {"name": "mmzoo:shapes", "config": None, "split": "test", "revision": "v1"}
    metrics, protocol = result["metrics"], result["protocol"]
    for direction, gallery in (("image_to_text", 80), ("text_to_image", 16)):
        recalls = [metrics[f"{direction}_recall_at_{k}"] for k in (1, 5, 10)]
        assert 0 <= recalls[0] <= recalls[1] <= recalls[2] <= 1
        assert 1 <= metrics[f"{direction}_mean_rank"] <= gallery
    assert protocol["num_images"] == 16 and protocol["num_texts"] == 80  # 5 captions per scene
    assert protocol["dataset_params"] == {"num_samples": 16, "split": "test", "image_size": 32}
    assert (tmp_path / "eval_results.json").is_file()


def test_zero_shot_on_tiny_clip_with_digits(clip):
    model, processor = clip
    digits = BuiltinSourceSpec(name="digits", split="test", params={"num_samples": 16})
    task = {"task": "zero_shot_classification", "data": digits.model_dump(),
            "templates": ["a handwritten digit {}", "the number {}"]}
    result = only_result(run_evaluation(model, processor, [task]))
    assert result["dataset"]["name"] == "mmzoo:digits"
    assert result["protocol"]["class_names"][:3] == ["zero", "one", "two"]
    assert result["protocol"]["templates"] == task["templates"] and result["protocol"]["num_examples"] == 16
    assert 0 <= result["metrics"]["top1_accuracy"] <= result["metrics"]["top5_accuracy"] <= 1


def test_task_data_and_split_override(clip):
    model, processor = clip
    task = {"task": "retrieval", "split": "validation", "max_samples": 6}
    source = SHAPES.model_copy(update={"params": {"num_samples": 8}})
    result = only_result(run_evaluation(model, processor, [task], None, eval_source=source))
    assert result["dataset"]["split"] == "validation" and result["protocol"]["num_images"] == 6
    assert result["protocol"]["max_samples"] == 6


def test_vqa_classification_counts_forced_answers(shapes):
    config = build_config(tiny_spec("cross_attention", ["contrastive", "itm"]))
    config.answer_vocab = ["yes", "no", FORCED, "3"]
    torch.manual_seed(0)
    model = MmzooForVisualQuestionAnswering(config)
    processor = mmzoo.build_processor(tiny_spec("cross_attention", ["contrastive", "itm"]))
    with torch.no_grad():
        model.vqa_head[-1].bias[config.answer_vocab.index(FORCED)] = 1e4
    result = only_result(run_evaluation(model, processor, [{"task": "vqa", "batch_size": 50}], shapes))
    expected = fraction_answered(shapes, FORCED)
    assert 0 < expected < 1
    assert result["metrics"]["vqa_accuracy"] == pytest.approx(expected)
    assert result["protocol"]["mode"] == "classification" and result["protocol"]["num_questions"] > 16


def test_vqa_generation_counts_forced_answers(captioner, shapes):
    model, processor = captioner
    bias = model.objectives["captioning"].decoder.lm_head.bias
    saved = bias.detach().clone()
    with torch.no_grad():
        bias[processor.tokenizer.convert_tokens_to_ids(FORCED)] = 1e4
    try:
        result = only_result(run_evaluation(model, processor, [{"task": "vqa", "max_new_tokens": 1}], shapes))
    finally:
        with torch.no_grad():
            bias.copy_(saved)
    assert result["metrics"]["vqa_accuracy"] == pytest.approx(fraction_answered(shapes, FORCED))
    assert result["protocol"]["mode"] == "generation"
    assert result["protocol"]["decoding"] == {"max_new_tokens": 1, "num_beams": 1, "do_sample": False,
                                              "prompt": "question"}


def test_captioning_records_decoding_and_scores(captioner, shapes):
    model, processor = captioner
    task = {"task": "captioning", "max_new_tokens": 6, "num_beams": 2, "max_samples": 8}
    result = only_result(run_evaluation(model, processor, [task], shapes))
    # shapes knows its scenes: exact_scene (captions naming exactly the scene's objects) comes with BLEU and CIDEr
    assert set(result["metrics"]) == {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "brevity_penalty", "cider",
                                      "exact_scene"}
    assert all(v >= 0 for v in result["metrics"].values())
    assert result["protocol"]["decoding"] == {"max_new_tokens": 6, "max_new_tokens_from": "max_new_tokens",
                                              "num_beams": 2, "do_sample": False}
    assert result["protocol"]["num_images"] == 8 and result["protocol"]["num_references"] == 40
    with pytest.raises(EvaluationError, match="exceed the decoder's max_length 32"):
        run_evaluation(model, processor, [{"task": "captioning", "max_new_tokens": 40}], shapes)


def test_captioning_default_length_comes_from_the_data(captioner, shapes):
    model, processor = captioner
    result = only_result(run_evaluation(model, processor, [{"task": "captioning", "max_samples": 4}], shapes))
    decoding = result["protocol"]["decoding"]
    longest = max(len(processor.tokenizer(c, add_special_tokens=False)["input_ids"])
                  for row in shapes.select(range(4))["captions"] for c in row)
    assert decoding["max_new_tokens"] == min(longest + 4, 31)  # capped by the decoder's max_length 32
    assert decoding["max_new_tokens_from"].startswith("longest reference")


def test_generation_head_shares_the_weights(captioner):
    model, processor = captioner
    head = as_head(model, MmzooForConditionalGeneration)
    assert isinstance(head, MmzooForConditionalGeneration) and as_head(head, MmzooForConditionalGeneration) is head
    assert all(a.data_ptr() == b.data_ptr() for a, b in zip(model.parameters(), head.parameters()))
    assert not any(b.is_meta for b in head.buffers())
    built = MmzooForConditionalGeneration(model.config).eval()
    built.load_state_dict(model.state_dict())
    pixel_values = processor(images=[torch.zeros(3, 32, 32).numpy().transpose(1, 2, 0)] * 2)["pixel_values"]
    torch.testing.assert_close(head.generate(pixel_values=pixel_values, max_new_tokens=4),
                               built.generate(pixel_values=pixel_values, max_new_tokens=4))


def test_itm_on_tiny_albef(shapes):
    torch.manual_seed(0)
    model, processor = mmzoo.build_model("mm-albef-tiny"), mmzoo.build_processor("mm-albef-tiny")
    result = only_result(run_evaluation(model, processor, [{"task": "itm", "seed": 3}], shapes))
    assert 0 <= result["metrics"]["accuracy"] <= 1
    # 16 images, each with its caption, a random negative and a minimal-pair negative (shapes knows its objects)
    assert result["protocol"]["num_pairs"] == 48 and result["protocol"]["seed"] == 3
    with torch.no_grad():
        last = [m for m in model.objectives["itm"].head.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.bias.copy_(torch.tensor([0.0, 1e4]))  # always "matched"
    forced = only_result(run_evaluation(model, processor, ["itm"], shapes))["metrics"]
    assert forced["accuracy"] == 0.5 and forced["recall"] == 1.0 and forced["precision"] == 0.5
    assert forced["minimal_pair_accuracy"] == 0.5
    assert all(forced[f"minimal_pair_rejected_{a}"] == 0.0 for a in ("color", "shape", "size", "position")
               if f"minimal_pair_rejected_{a}" in forced)


@pytest.mark.parametrize(("task", "match"), [
    ("vqa", r"cannot answer questions.*AutoModelForVisualQuestionAnswering.*captioning"),
    ("captioning", "no text decoder; captioning needs a `captioning` objective"),
    ("itm", "no image-text matching head; itm needs an `itm` objective"),
])
def test_tasks_name_the_missing_head(clip, shapes, task, match):
    model, processor = clip
    with pytest.raises(EvaluationError, match=match):
        run_evaluation(model, processor, [task], shapes)
