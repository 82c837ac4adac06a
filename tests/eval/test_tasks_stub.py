"""Evaluation tasks on stub models with known embeddings: perfect / shuffled retrieval, chunked == full matrix,
zero-shot prompt ensembling, ITM negatives, the eval_results.json structure and error messages."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import datasets
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from mmzoo.eval import EVAL_TASKS, EvaluationError, list_tasks, run_evaluation
from mmzoo.eval.embed import embed_images, embed_texts
from mmzoo.eval.metrics import load_metric
from mmzoo.eval.tasks.itm import shuffled_negatives
from mmzoo.eval.tasks.zero_shot import class_embeddings
from mmzoo.version import __version__

CLASSES = ["cat", "dog", "bird", "fish"]
TEMPLATES = ["a photo of a {}.", "a drawing of a {}.", "{}"]


# -- stubs -----------------------------------------------------------------------------------------------------
def item_image(i: int) -> Image.Image:
    """A 2x2 image whose first pixel encodes ``i`` (red + 256 green)."""
    return Image.new("RGB", (2, 2), (i % 256, i // 256, 0))


class StubProcessor:
    """text "item 7 ..." -> input_ids [[7]] (or the index of the class name and template, see ``classes``);
    images -> pixel_values [[id]] decoded from the first pixel."""

    def __init__(self, classes=(), templates=()):
        self.classes, self.templates = list(classes), list(templates)

    def _text_id(self, text: str) -> list[int]:
        if self.classes:
            name = next(c for c in self.classes if re.search(rf"\b{c}\b", text))
            template = next(i for i, t in enumerate(self.templates) if t.replace("{}", name) == text)
            return [self.classes.index(name), template]
        return [int(re.search(r"\d+", text).group())]

    def __call__(self, text=None, images=None, return_tensors="pt", **kwargs):
        out = {}
        if text is not None:
            out["input_ids"] = torch.tensor([self._text_id(t) for t in text])
            out["attention_mask"] = torch.ones_like(out["input_ids"])
        if images is not None:
            ids = [(lambda p: p[0] + 256 * p[1])(img.getpixel((0, 0))) for img in images]
            out["pixel_values"] = torch.tensor(ids, dtype=torch.float32)[:, None]
        return out


class StubEmbedder(torch.nn.Module):
    """Image ``i`` embeds as ``table[i]``; text id ``j`` as ``table[text_map[j]] + noise[j]`` (+ a per-template
    offset for class prompts). ``text_map`` = identity and zero noise: a perfect model."""

    def __init__(self, n: int, dim: int = 32, text_map=None, noise: float = 0.0, templates: int = 0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.table = torch.nn.Parameter(torch.randn(n, dim, generator=g), requires_grad=False)
        self.text_map = torch.arange(n) if text_map is None else text_map
        self.noise = noise * torch.randn(n, dim, generator=g)
        self.offsets = torch.randn(templates, dim, generator=g) if templates else None
        self.calls = {"image": [], "text": []}

    def get_image_features(self, pixel_values):
        assert not torch.is_grad_enabled() and torch.is_inference_mode_enabled()
        self.calls["image"].append(len(pixel_values))
        return self.table[pixel_values[:, 0].long()]

    def get_text_features(self, input_ids, attention_mask=None, **kwargs):
        self.calls["text"].append(len(input_ids))
        ids = input_ids[:, 0]
        out = self.table[self.text_map[ids]] + self.noise[ids]
        if self.offsets is not None:
            out = out + self.offsets[input_ids[:, 1]]
        return out


def item_dataset(n: int, captions_per_image: int = 1) -> datasets.Dataset:
    features = datasets.Features({"image": datasets.Image(), "captions": datasets.List(datasets.Value("string"))})
    rows = {"image": [item_image(i) for i in range(n)],
            "captions": [[f"item {i} caption {k}" for k in range(captions_per_image)] for i in range(n)]}
    return datasets.Dataset.from_dict(rows, features=features, split="test")


def class_dataset(labels: list[int]) -> datasets.Dataset:
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES)})
    return datasets.Dataset.from_dict({"image": [item_image(y) for y in labels], "label": labels}, features=features)


def only_result(results):
    assert len(results["results"]) == 1
    return results["results"][0]


# -- retrieval -------------------------------------------------------------------------------------------------
def test_perfect_retrieval_scores_one_in_batches_and_chunks(tmp_path):
    model = StubEmbedder(40)
    task = {"task": "retrieval", "batch_size": 16, "chunk_size": 7, "recall_at": [1, 5]}
    results = run_evaluation(model, StubProcessor(), [task], item_dataset(40, captions_per_image=3), tmp_path)
    result = only_result(results)
    metrics = result["metrics"]
    for direction in ("image_to_text", "text_to_image"):
        assert metrics[f"{direction}_recall_at_1"] == 1.0 and metrics[f"{direction}_recall_at_5"] == 1.0
        assert metrics[f"{direction}_mean_rank"] == 1.0 and metrics[f"{direction}_median_rank"] == 1
    assert metrics["mean_recall"] == 1.0
    assert result["protocol"]["num_images"] == 40 and result["protocol"]["num_texts"] == 120
    assert result["protocol"]["recall_at"] == [1, 5] and result["protocol"]["ties"] == "pessimistic"
    assert "chunk_size" not in result["protocol"] and "batch_size" not in result["protocol"]
    assert max(model.calls["image"]) <= 16 and max(model.calls["text"]) <= 16  # embedded in batches
    assert json.loads((tmp_path / "eval_results.json").read_text()) == results


def test_shuffled_retrieval_is_near_chance():
    n = 200
    model = StubEmbedder(n, text_map=torch.randperm(n, generator=torch.Generator().manual_seed(1)))
    metrics = only_result(run_evaluation(model, StubProcessor(), ["retrieval"], item_dataset(n)))["metrics"]
    for direction in ("image_to_text", "text_to_image"):  # chance: R@K = K / 200, mean rank 100.5
        assert metrics[f"{direction}_recall_at_1"] <= 0.03
        assert metrics[f"{direction}_recall_at_10"] <= 0.12
        assert 70 <= metrics[f"{direction}_mean_rank"] <= 131


def test_chunked_task_equals_full_similarity_matrix():
    n, per_image = 30, 2
    model = StubEmbedder(n, noise=1.0, seed=3)  # imperfect: ranks spread over 1..n
    params = {"task": "retrieval", "chunk_size": 4, "batch_size": 8, "recall_at": [1, 3, 10]}
    metrics = only_result(run_evaluation(model, StubProcessor(), [params], item_dataset(n, per_image)))["metrics"]

    dataset = item_dataset(n, per_image)
    processor = StubProcessor()
    with torch.inference_mode():
        images = F.normalize(embed_images(model, processor, dataset["image"]), dim=-1)
        texts = F.normalize(embed_texts(model, processor, [c for row in dataset["captions"] for c in row]), dim=-1)
    full = load_metric("retrieval_recall", config_name="similarity", keep_in_memory=True).compute(
        similarity=(texts @ images.T).tolist(), text_to_image=[i for i in range(n) for _ in range(per_image)],
        recall_at=(1, 3, 10))
    assert metrics["text_to_image_recall_at_1"] < 1.0  # not a degenerate case
    for key, value in metrics.items():
        assert value == pytest.approx(full[key], abs=0), key


# -- zero-shot -------------------------------------------------------------------------------------------------
def test_class_embeddings_are_normalised_template_means():
    model = StubEmbedder(len(CLASSES), templates=len(TEMPLATES))
    processor = StubProcessor(CLASSES, TEMPLATES)
    got = class_embeddings(model, processor, CLASSES, TEMPLATES, batch_size=5)
    expected = torch.stack([
        F.normalize(torch.stack([F.normalize(model.table[c] + model.offsets[t], dim=0)
                                 for t in range(len(TEMPLATES))]).mean(0), dim=0)
        for c in range(len(CLASSES))
    ])
    torch.testing.assert_close(got, expected)


def test_zero_shot_accuracy_on_stub():
    labels = [0, 1, 2, 3, 3, 2, 1, 0, 1]
    model = StubEmbedder(len(CLASSES), templates=len(TEMPLATES))
    model.offsets.mul_(0.1)  # templates perturb the class embedding only slightly
    processor = StubProcessor(CLASSES, TEMPLATES)
    task = {"task": "zero_shot_classification", "templates": TEMPLATES, "top_k": [1, 2, 9]}
    result = only_result(run_evaluation(model, processor, [task], class_dataset(labels)))
    assert result["metrics"] == {"top1_accuracy": 1.0, "top2_accuracy": 1.0}
    assert result["protocol"]["class_names"] == CLASSES  # default: the ClassLabel names
    assert result["protocol"]["templates"] == TEMPLATES and result["protocol"]["top_k"] == [1, 2]
    assert result["protocol"]["num_examples"] == len(labels)

    # naming the ids in another order: an image of class y is now called CLASSES[3 - y]; right only if y == 3 - y
    reversed_names = {**task, "class_names": CLASSES[::-1], "top_k": [1]}
    result = only_result(run_evaluation(model, processor, [reversed_names], class_dataset(labels)))
    assert result["metrics"]["top1_accuracy"] == 0.0


def test_zero_shot_needs_class_names_or_class_label():
    plain = datasets.Dataset.from_dict({"image": [item_image(0)], "label": [0]},
                                       features=datasets.Features({"image": datasets.Image(),
                                                                   "label": datasets.Value("int64")}))
    with pytest.raises(EvaluationError, match="set class_names"):
        run_evaluation(StubEmbedder(4), StubProcessor(CLASSES, ["{}"]), ["zero_shot_classification"], plain)
    with pytest.raises(EvaluationError, match=r"label 3.*\[0, 2\)"):
        run_evaluation(StubEmbedder(4), StubProcessor(CLASSES, ["{}"]),
                       [{"task": "zero_shot_classification", "class_names": CLASSES[:2], "templates": ["{}"],
                         "top_k": [1]}], class_dataset([0, 3]))


# -- itm negatives ---------------------------------------------------------------------------------------------
def test_itm_negatives_are_seeded_and_never_a_positive():
    captions = [[f"c{i}"] for i in range(20)] + [["c0", "other"]]  # row 20 shares row 0's caption
    negatives = shuffled_negatives(captions, seed=0)
    assert negatives == shuffled_negatives(captions, seed=0)
    assert negatives != shuffled_negatives(captions, seed=1)
    for i, j in enumerate(negatives):
        assert j != i and captions[j][0] not in captions[i]
    with pytest.raises(EvaluationError, match="no negative"):
        shuffled_negatives([["same"], ["same"]], seed=0)


# -- results structure -----------------------------------------------------------------------------------------
def test_results_structure_flattens_for_trainer_and_hub_card():
    from mmzoo.hub.card import eval_result_files, eval_results
    from mmzoo.train.trainer import flatten_task_metrics

    results = run_evaluation(StubEmbedder(12), StubProcessor(), ["retrieval", {"task": "retrieval",
                                                                              "recall_at": [2]}], item_dataset(12))
    assert results["mmzoo_version"] == __version__
    assert [r["task"] for r in results["results"]] == ["retrieval", "retrieval"]
    first = results["results"][0]
    assert first["dataset"] == {"name": "unknown", "config": None, "split": "test", "revision": None}
    assert not [k for k in first["metrics"] if "num_" in k]  # counts live in the protocol
    assert first["protocol"]["text_to_image_num_queries"] == 12
    flat = flatten_task_metrics(results)
    assert flat["eval_retrieval/text_to_image_recall_at_1"] == 1.0
    run = SimpleNamespace(eval_results=results)
    card_metrics = {(r.task_type, r.metric_name): r.metric_value for r in eval_results(run)}
    assert card_metrics[("feature-extraction", "Image→Text Recall@2")] == 1.0
    assert list(eval_result_files(run)) == [".eval_results/unknown.yaml"]


def test_registry_lists_the_five_tasks():
    assert list_tasks() == ["captioning", "itm", "retrieval", "vqa", "zero_shot_classification"]
    assert EVAL_TASKS.get("retrieval").name == "retrieval"


@pytest.mark.parametrize(("task", "match"), [
    ({"task": "retrieval", "chunk": 8}, r"evaluation\[0\] \(task 'retrieval'\): chunk: unknown key.*chunk_size"),
    ({"task": "retrieval", "recall_at": [0, 1]}, "recall_at values must be >= 1"),
    ({"task": "retrival"}, r"evaluation\[0\]: task: .*Known tasks: captioning"),
    ({"task": "zero_shot_classification", "templates": ["no placeholder"]}, r"\{\} placeholder"),
    ({"task": "vqa"}, "vqa needs columns image, question"),
    ({"task": "retrieval", "split": "validation"}, r"evaluation\[0\]\.split: 'validation' differs .* 'test'"),
])
def test_errors_name_the_entry_and_the_fix(task, match):
    with pytest.raises(EvaluationError, match=match):
        run_evaluation(StubEmbedder(4), StubProcessor(), [task], item_dataset(4))


def test_no_data_and_training_mode_restored():
    model = StubEmbedder(4).train()
    with pytest.raises(EvaluationError, match="no data to evaluate on"):
        run_evaluation(model, StubProcessor(), ["retrieval"], None)
    run_evaluation(model, StubProcessor(), ["retrieval"], item_dataset(4))
    assert model.training
