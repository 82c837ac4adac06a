"""Original dataset layouts as sources (COCO captions, Karpathy COCO / Flickr30k, VQA v2) on tiny fixtures written
in the exact original formats by :mod:`mmzoo.testing.layouts`: rows, multi-caption and answer semantics, errors."""

from __future__ import annotations

import json

import pytest
import torch

from mmzoo.data import (
    CocoCaptionsSourceSpec,
    DataError,
    DataSpec,
    HFSourceSpec,
    KarpathySourceSpec,
    VqaV2SourceSpec,
    load_source,
)
from mmzoo.errors import SpecError
from mmzoo.testing.layouts import COLOR_NAMES, PALETTE, write_all


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("layouts")
    return root, write_all(root)


@pytest.fixture
def load(base, hf_cache):
    return lambda spec: load_source(spec, base[0], cache_dir=hf_cache)


def colour(image) -> tuple[int, int, int]:
    """The solid colour of a fixture JPEG (within JPEG error)."""
    pixel = image.getpixel((5, 5))
    return min(PALETTE, key=lambda c: sum((a - b) ** 2 for a, b in zip(c, pixel)))


def karpathy(split="train", **kw):
    return KarpathySourceSpec(**{"file": "data/coco/dataset_coco.json", "images": "data/coco/images", "split": split,
                                 **kw})


# ------------------------------------------------------------------------------------------ COCO captions
def test_coco_captions_one_row_per_image_with_all_its_captions(load, base):
    expected = base[1]["coco_captions"]["train"]
    ds = load(CocoCaptionsSourceSpec(path="data/coco"))
    assert ds.column_names == ["image", "captions"]
    # captions are grouped per image in annotation order (the file interleaves them), stripped; the image
    # without annotations is not a row
    assert ds["captions"] == [e["captions"] for e in expected]
    assert [len(c) for c in ds["captions"]] == [5, 5, 6]
    assert [colour(row["image"]) for row in ds] == [e["color"] for e in expected]


def test_coco_captions_validation_split_and_captions_per_image(load, base):
    ds = load(CocoCaptionsSourceSpec(path="data/coco", split="validation", captions_per_image=5))
    assert ds["captions"] == [e["captions"] for e in base[1]["coco_captions"]["val"]]
    trimmed = load(CocoCaptionsSourceSpec(path="data/coco", captions_per_image=5))
    assert trimmed["captions"][2] == base[1]["coco_captions"]["train"][2]["captions"][:5]


def test_coco_captions_2014_names(tmp_path):
    from mmzoo.testing.layouts import write_coco_captions

    write_coco_captions(tmp_path / "coco", year=2014)
    ds = load_source(CocoCaptionsSourceSpec(path="coco", year=2014), tmp_path)
    assert len(ds) == 3 and (tmp_path / "coco/train2014/COCO_train2014_000000000009.jpg").is_file()


# ------------------------------------------------------------------------------------------------- Karpathy
def test_karpathy_train_includes_restval_unless_disabled(load, base):
    expected = base[1]["karpathy_coco"]
    ds = load(karpathy())
    assert ds["captions"] == [e["captions"] for e in expected["train"] + expected["restval"]]
    assert [colour(row["image"]) for row in ds] == [e["color"] for e in expected["train"] + expected["restval"]]
    assert len(load(karpathy(include_restval=False))) == 2
    assert load(karpathy("validation"))["captions"] == [expected["val"][0]["captions"]]


def test_karpathy_test_split_five_captions_per_image(load, base):
    expected = base[1]["karpathy_coco"]["test"]
    everything = load(karpathy("test"))
    assert [len(c) for c in everything["captions"]] == [5, 6, 5]  # as in the file
    ds = load(karpathy("test", captions_per_image=5))
    assert ds["captions"] == [e["captions"][:5] for e in expected]
    with pytest.raises(DataError, match=r"images\[3\] \(COCO_val2014_000000000103.jpg\) has 5 caption\(s\), fewer "
                                        r"than captions_per_image: 6"):
        load(karpathy("test", captions_per_image=6))


def test_karpathy_flickr30k_has_no_filepath(load, base):
    expected = base[1]["karpathy_flickr30k"]["test"]
    ds = load(KarpathySourceSpec(file="data/flickr30k/dataset_flickr30k.json",
                                 images="data/flickr30k/flickr30k-images", split="test", captions_per_image=5))
    assert ds["captions"] == [e["captions"][:5] for e in expected]
    assert [colour(row["image"]) for row in ds] == [e["color"] for e in expected]
    with pytest.raises(DataError, match="no image has split restval"):
        load(KarpathySourceSpec(file="data/flickr30k/dataset_flickr30k.json",
                                images="data/flickr30k/flickr30k-images", split="restval"))


class ColourOracle(torch.nn.Module):
    """Embeds a fixture image as the one-hot of its colour and a caption as the one-hot of the colour it
    names, except that a caption starting with "something" names the *next* palette colour (a known mistake)."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def get_image_features(self, pixel_values):
        return torch.nn.functional.one_hot(pixel_values.long(), len(PALETTE)).float()

    def get_text_features(self, input_ids, **_):
        return torch.nn.functional.one_hot(input_ids.long(), len(PALETTE)).float()


class ColourProcessor:
    def __call__(self, text=None, images=None, return_tensors="pt", **_):
        if images is not None:
            return {"pixel_values": torch.tensor([PALETTE.index(colour(im)) for im in images])}
        ids = []
        for caption in text:
            index = next(i for i, name in enumerate(COLOR_NAMES) if f" {name}" in f" {caption.lower()}")
            ids.append((index + 1) % len(PALETTE) if caption.startswith("something") else index)
        return {"input_ids": torch.tensor(ids)}


def test_karpathy_test_retrieval_protocol_five_captions_both_ways(load):
    """3 test images x 5 captions through run_evaluation's retrieval task. Hand computation (pessimistic
    ties): 12 captions find their image at rank 1, the 3 "something ..." captions at rank 3 -> t2i R@1 12/15.
    Image->text: the first image's captions all score 1 and no other caption does -> rank 1; the other two
    images tie with one wrong "something" caption -> rank 2 -> i2t R@1 1/3, R@5 1."""
    from mmzoo.eval import run_evaluation

    spec = karpathy("test", captions_per_image=5)
    results = run_evaluation(ColourOracle(), ColourProcessor(), ["retrieval"], load(spec), eval_source=spec)
    result = results["results"][0]
    assert result["dataset"]["name"] == "karpathy:coco" and result["dataset"]["split"] == "test"
    assert result["protocol"]["num_images"] == 3 and result["protocol"]["num_texts"] == 15
    assert result["protocol"]["captions_per_image"] == 5
    metrics = result["metrics"]
    assert metrics["text_to_image_recall_at_1"] == pytest.approx(12 / 15)
    assert metrics["text_to_image_recall_at_5"] == pytest.approx(1.0)
    assert metrics["image_to_text_recall_at_1"] == pytest.approx(1 / 3)
    assert metrics["image_to_text_recall_at_5"] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------------ VQA v2
def vqa(split="validation", **kw):
    return VqaV2SourceSpec(path="data/vqa", images="data/coco/images", split=split, **kw)


def test_vqa_v2_rows_are_questions_with_ten_normalised_answers(load, base):
    expected = base[1]["vqa_v2"]["val2014"]
    ds = load(vqa())
    assert ds.column_names == ["image", "question", "answers"]
    assert ds["question"] == [e["question"] for e in expected]  # question order, annotations matched by id
    assert all(len(a) == 10 for a in ds["answers"])
    assert ds["answers"][0] == ["2", "2", "2", "2", "2", "3", "3", "3", "4", "2"]
    assert ds["answers"][2] == ["dog", "dog", "dog", "dog", "dogs", "dogs", "dogs", "cat", "cat", "cat"]
    assert ds["answers"][3][:3] == ["don't know"] * 3
    assert [colour(row["image"]) for row in ds] == [PALETTE[0], PALETTE[0], PALETTE[1], PALETTE[2]]
    raw = load(vqa(normalize_answers=False))
    assert raw["answers"] == [e["answers"] for e in expected]
    assert len(load(vqa("train"))) == 4


def test_vqa_accuracy_on_the_fixture_equals_the_hand_computation(load):
    """Official VQA accuracy: mean over the 10 leave-one-out subsets of min(matches / 3, 1), after the official
    normalisation. By hand, with the fixture's answers:
    Q1 "3": normalised answers hold three "3" ("3", "3", "three") -> 3 subsets with 2 matches (2/3), 7 with 3
         (1) -> 0.9 (unnormalised only two "3" would match: 0.6);
    Q2 "yes": "Yes" and "yes!" -> 2 subsets with 1 match (1/3), 8 with 2 (2/3) -> 0.6;
    Q3 "Dog": "a dog" x2, "dog", "the dog" -> 4 matches in every subset of 9 -> 1.0;
    Q4 "dont know": "dont know" x2 + "don't know" -> 3 matches -> 0.9.
    Mean: (0.9 + 0.6 + 1.0 + 0.9) / 4 = 0.85."""
    from mmzoo.eval.metrics import load_metric

    predictions = ["3", "yes", "Dog", "dont know"]
    for spec in (vqa(), vqa(normalize_answers=False)):  # the metric normalises the raw answers the same way
        references = load(spec)["answers"]
        score = load_metric("vqa_accuracy", keep_in_memory=True).compute(predictions=predictions,
                                                                          references=references)
        assert score["vqa_accuracy"] == pytest.approx(0.85)


def test_vqa_training_targets_count_normalised_answers_together(load):
    from mmzoo.train.data import VqaCollator, VqaDataset, answer_vocabulary

    items = VqaDataset(load(vqa("train")))
    vocab = answer_vocabulary(items, 4)
    # "no" 15, "2" 6 ("two", "Two." and "2 " included), "dog" 4 ("a dog", "the dog"), "3" 3 ("three"), "cat" 3
    assert vocab == ["no", "2", "dog", "3"]

    class Processor:
        def __call__(self, text, images, **_):
            return {"input_ids": torch.zeros(len(text), 2, dtype=torch.long)}

    labels = VqaCollator(Processor(), vocab)([items[0]])["labels"][0]
    assert labels.tolist() == pytest.approx([0.0, 1.0, 0.0, 1.0])  # six "2" -> 1, three "3" -> 1 (raw: 2/3)


def test_vqa_v2_test_dev_has_questions_only(tmp_path):
    (tmp_path / "vqa").mkdir()
    (tmp_path / "vqa/v2_OpenEnded_mscoco_test-dev2015_questions.json").write_text(json.dumps(
        {"questions": [{"image_id": 1, "question": "Why?", "question_id": 10}]}))
    from mmzoo.testing.layouts import write_image

    write_image(tmp_path / "vqa/test2015/COCO_test2015_000000000001.jpg", 0)
    ds = load_source(VqaV2SourceSpec(path="vqa", split="test-dev"), tmp_path)
    assert ds.column_names == ["image", "question"] and ds["question"] == ["Why?"]


# ------------------------------------------------------------------------------------------- errors and specs
def test_missing_files_name_the_expected_layout(load, tmp_path):
    with pytest.raises(DataError, match=r"captions_train2014.json not found; expected the COCO captions layout"):
        load(CocoCaptionsSourceSpec(path="data/coco", year=2014))
    with pytest.raises(DataError, match=r"v2_OpenEnded_mscoco_test2015_questions.json not found; expected the VQA"):
        load(vqa("test"))
    with pytest.raises(DataError, match=r"image folder .*nowhere not found"):
        load(karpathy(images="nowhere"))


def test_malformed_entries_name_file_and_key(tmp_path):
    (tmp_path / "dataset_coco.json").write_text(json.dumps(
        {"images": [{"filename": "a.jpg", "split": "test", "sentences": [{"tokens": ["x"]}]}]}))
    with pytest.raises(DataError, match=r"dataset_coco.json: images\[0\].sentences\[0\].raw must be a non-empty "
                                        r"string, got None"):
        load_source(KarpathySourceSpec(file="dataset_coco.json", split="test"), tmp_path)
    (tmp_path / "dataset_coco.json").write_text("{not json")
    with pytest.raises(DataError, match=r"cannot read .*dataset_coco.json as JSON"):
        load_source(KarpathySourceSpec(file="dataset_coco.json", split="test"), tmp_path)


@pytest.mark.parametrize(("data", "match"), [
    ({"source": "karpathy", "file": "x.json", "split": "dev"}, "split 'dev' is not one of this layout's splits"),
    ({"source": "vqa_v2", "path": "v", "split": "testdev"}, "split 'testdev' is not a VQA v2 split"),
    ({"source": "coco_captions", "path": "c", "columns": {"caption": "text"}}, "remove columns:"),
    ({"source": "coco_captions", "path": "c", "year": 2015}, "year"),
])
def test_invalid_layout_specs(data, match):
    with pytest.raises(SpecError, match=match):
        DataSpec.from_dict({"train": data})


def test_eval_on_the_train_split_is_refused_and_held_out_is_accepted():
    with pytest.raises(SpecError, match="eval reads the same data as train"):
        DataSpec.from_dict({"train": {"source": "karpathy", "file": "d.json"},
                            "eval": {"source": "karpathy", "file": "d.json", "captions_per_image": 5}})
    DataSpec.from_dict({"train": {"source": "karpathy", "file": "d.json"},
                        "eval": {"source": "karpathy", "file": "d.json", "split": "test"}})


def test_source_specs_name_their_hub_dataset():
    assert HFSourceSpec(dataset="nlphuji/flickr30k").hub_dataset() == "nlphuji/flickr30k"
    assert karpathy().hub_dataset() is None and vqa().hub_dataset() is None
    assert vqa().dataset_info()[0]["name"] == "vqa:v2"
