"""Built-in datasets: shapes (determinism, captions, QA, splits, rendering) and digits; the on-disk cache."""

from __future__ import annotations

import os
import re
import sys

import datasets
import numpy as np
import pytest

from mmzoo.data import DataError, list_builtin, load_builtin
from mmzoo.data.builtin import shapes as shapes_mod
from mmzoo.errors import UnknownComponentError

POSITION_WORDS = {  # both phrasings the captions use
    "top left": ("at the top left", "in the top left corner"),
    "top right": ("at the top right", "in the top right corner"),
    "bottom left": ("at the bottom left", "in the bottom left corner"),
    "bottom right": ("at the bottom right", "in the bottom right corner"),
    "center": ("in the center", "in the middle"),
}


def raw_images(ds: datasets.Dataset) -> list[bytes]:
    return [img["bytes"] for img in ds.cast_column("image", datasets.Image(decode=False))["image"]]


def scene_keys(ds: datasets.Dataset) -> set[tuple]:
    return {tuple(sorted((o["position"], o["size"], o["color"], o["shape"]) for o in objs)) for objs in ds["objects"]}


@pytest.fixture(scope="module")
def shapes_ds() -> datasets.Dataset:
    return load_builtin("shapes", num_samples=200, seed=3, image_size=48)


def test_registry_lists_builtins():
    assert {"shapes", "digits"} <= set(list_builtin())
    with pytest.raises(UnknownComponentError, match="did you mean 'shapes'"):
        load_builtin("shapez")


def test_shapes_columns_and_types(shapes_ds):
    assert shapes_ds.column_names == ["image", "captions", "questions", "answers", "question_types", "objects"]
    row = shapes_ds[0]
    assert row["image"].mode == "RGB" and row["image"].size == (48, 48)
    assert len(row["captions"]) == 5 and all(isinstance(c, str) for c in row["captions"])
    assert len(row["questions"]) == len(row["answers"]) == len(row["question_types"])
    assert all(len(a) == shapes_mod.NUM_ANNOTATORS for a in row["answers"])
    counts = {len(o) for o in shapes_ds["objects"]}
    assert counts <= {1, 2, 3} and len(counts) >= 2


def test_shapes_negative_captions_change_one_attribute_of_one_object():
    ds = load_builtin("shapes", num_samples=60, seed=3, image_size=32, negative_captions=True)
    assert ds.column_names[-1] == "negative_captions"
    changed = set()
    for row in ds:
        scene = shapes_mod.scene_from_objects(row["objects"])
        assert 3 <= len(row["negative_captions"]) <= 4  # one per attribute that can change
        for caption in row["negative_captions"]:
            other = shapes_mod.parse_caption(caption)
            assert other is not None and len(other) == len(scene) and other != frozenset(scene), caption
            (removed,), (added,) = frozenset(scene) - other, other - frozenset(scene)  # exactly one object differs
            diff = [a for a in shapes_mod.ATTRIBUTES if getattr(removed, a) != getattr(added, a)]
            assert len(diff) == 1, (removed, added)
            changed.add(diff[0])
    assert changed == set(shapes_mod.ATTRIBUTES)
    plain = load_builtin("shapes", num_samples=60, seed=3, image_size=32)
    assert plain["captions"] == ds["captions"] and "negative_captions" not in plain.column_names


def test_shapes_same_seed_identical_bytes_other_seed_differs():
    a = load_builtin("shapes", num_samples=30, seed=7, image_size=32, use_cache=False)
    b = load_builtin("shapes", num_samples=30, seed=7, image_size=32, use_cache=False)
    c = load_builtin("shapes", num_samples=30, seed=8, image_size=32, use_cache=False)
    assert raw_images(a) == raw_images(b)
    assert a["captions"] == b["captions"] and a["questions"] == b["questions"] and a["objects"] == b["objects"]
    assert raw_images(a) != raw_images(c)


def test_captions_name_every_shape_attribute(shapes_ds):
    for captions, objects in zip(shapes_ds["captions"], shapes_ds["objects"]):
        for caption in captions:
            for o in objects:
                # "large red circle" or "red circle (large)", followed somewhere by the position phrase
                size, color, kind = o["size"], o["color"], o["shape"]
                noun = re.search(rf"{size} {color} {kind}|{color} {kind} \({size}\)", caption)
                assert noun, (caption, o)
                assert any(p in caption for p in POSITION_WORDS[o["position"]]), (caption, o)
            for other in set(shapes_mod.COLORS) - {o["color"] for o in objects}:
                assert other not in caption.split(), (caption, objects)


def test_scenes_are_unique_within_a_split(shapes_ds):
    assert len(scene_keys(shapes_ds)) == len(shapes_ds)
    assert len({c[0] for c in shapes_ds["captions"]}) == len(shapes_ds)  # canonical captions identify the image


def test_splits_are_disjoint():
    splits = {
        s: load_builtin("shapes", num_samples=150, split=s, image_size=32) for s in ("train", "validation", "test")
    }
    keys = {s: scene_keys(ds) for s, ds in splits.items()}
    images = {s: set(raw_images(ds)) for s, ds in splits.items()}
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        assert not keys[a] & keys[b], (a, b)
        assert not images[a] & images[b], (a, b)
    # seeds pick different samples but never cross the split boundary
    other_seed = load_builtin("shapes", num_samples=150, split="train", seed=99, image_size=32)
    assert not scene_keys(other_seed) & (keys["validation"] | keys["test"])


def test_pixels_match_metadata(shapes_ds):
    """Each object's colour is at its centre, the background elsewhere; boxes never overlap."""
    size = 48
    for row in shapes_ds.select(range(40)):
        pixels = np.asarray(row["image"]).astype(int)
        occupied = set()
        for o in row["objects"]:
            cx, cy = (round(c * size) for c in shapes_mod.POSITIONS[o["position"]])
            assert np.abs(pixels[cy, cx] - shapes_mod.COLORS[o["color"]]).max() <= 2, o
            x0, y0, x1, y1 = o["bbox"]
            assert 0 <= x0 < cx < x1 <= size and 0 <= y0 < cy < y1 <= size
            occupied.add(o["position"])
        for box_a, box_b in ((a["bbox"], b["bbox"]) for a in row["objects"] for b in row["objects"] if a is not b):
            assert box_a[2] <= box_b[0] or box_b[2] <= box_a[0] or box_a[3] <= box_b[1] or box_b[3] <= box_a[1]
        for position in set(shapes_mod.POSITIONS) - occupied:
            cx, cy = (round(c * size) for c in shapes_mod.POSITIONS[position])
            assert tuple(pixels[cy, cx]) == shapes_mod.BACKGROUND


def _expected_answer(question: str, objects: list[dict]) -> str:
    """Answer computed here from the metadata, independently of the generator's code."""
    by_position = {o["position"]: o for o in objects}
    if question == "how many shapes are there?":
        return str(len(objects))
    if m := re.fullmatch(r"what color is the shape (?:at|in) the (.+)\?", question):
        return by_position[m[1]]["color"]
    if m := re.fullmatch(r"what shape is (?:at|in) the (.+)\?", question):
        return by_position[m[1]]["shape"]
    if m := re.fullmatch(r"what size is the (\w+) (\w+) (?:at|in) the (.+)\?", question):
        o = by_position[m[3]]
        assert (o["color"], o["shape"]) == (m[1], m[2])
        return o["size"]
    if m := re.fullmatch(r"where is the (\w+) (\w+) (\w+)\?", question):
        (match,) = [o for o in objects if (o["size"], o["color"], o["shape"]) == m.groups()]
        return match["position"]
    if m := re.fullmatch(r"is there an? (\w+) (\w+)\?", question):
        return "yes" if any((o["color"], o["shape"]) == m.groups() for o in objects) else "no"
    if m := re.fullmatch(r"how many (\w+) shapes are there\?", question):
        return str(sum(o["color"] == m[1] for o in objects))
    raise AssertionError(f"unexpected question {question!r}")


def test_qa_answers_follow_from_metadata(shapes_ds):
    types_seen = set()
    for row in shapes_ds.select(range(100)):
        for question, answers, qtype in zip(row["questions"], row["answers"], row["question_types"]):
            assert answers == [_expected_answer(question, row["objects"])] * 10, question
            types_seen.add(qtype)
    assert types_seen == {"count", "color", "shape", "size", "position", "exists"}


def test_shapes_param_errors():
    with pytest.raises(DataError, match=r"min_shapes must be <= max_shapes.*Accepted params: num_samples"):
        load_builtin("shapes", min_shapes=3, max_shapes=2)
    with pytest.raises(DataError, match="num_sample: unknown key"):
        load_builtin("shapes", num_sample=3)
    too_many = r"only \d+ distinct scenes with 1..1 shapes exist in split 'test'.*num_samples=500"
    with pytest.raises(DataError, match=too_many):
        load_builtin("shapes", num_samples=500, max_shapes=1, split="test", use_cache=False)


def test_cache_hit_skips_generation_and_keys_on_params(tmp_path, monkeypatch):
    calls = []
    real = shapes_mod.sample_scenes
    monkeypatch.setattr(shapes_mod, "sample_scenes", lambda p: calls.append(p) or real(p))
    monkeypatch.setenv("MMZOO_CACHE", str(tmp_path))
    first = load_builtin("shapes", num_samples=12, image_size=24)
    second = load_builtin("shapes", num_samples=12, image_size=24)
    assert len(calls) == 1
    assert raw_images(first) == raw_images(second)
    entries = sorted(os.listdir(tmp_path / "datasets"))
    assert len(entries) == 1 and entries[0].startswith("shapes-v")  # no temporary folder left behind
    load_builtin("shapes", num_samples=12, image_size=24, seed=1)
    load_builtin("shapes", num_samples=12, image_size=32)
    assert len(calls) == 3 and len(os.listdir(tmp_path / "datasets")) == 3
    explicit = tmp_path / "elsewhere"
    load_builtin("shapes", num_samples=12, image_size=24, cache_dir=explicit)
    assert len(calls) == 4 and len(os.listdir(explicit)) == 1


def test_digits_columns_labels_and_captions():
    ds = load_builtin("digits", image_size=16, num_samples=40)
    assert ds.features["label"].names[7] == "seven"
    row = ds[0]
    assert row["image"].mode == "RGB" and row["image"].size == (16, 16)
    for captions, label in zip(ds["captions"], ds["label"]):
        assert captions[0] == f"a handwritten digit {ds.features['label'].names[label]}"
        assert all(str(label) in c or ds.features["label"].names[label] in c for c in captions)
    assert len(set(ds["label"])) >= 8


def test_digits_splits_are_disjoint_and_cover_the_data():
    from mmzoo.data.builtin.digits import split_indices

    parts = [set(split_indices(1797, s).tolist()) for s in ("train", "validation", "test")]
    assert sum(map(len, parts)) == 1797 and set().union(*parts) == set(range(1797))
    train = load_builtin("digits", image_size=8, split="train")
    test = load_builtin("digits", image_size=8, split="test")
    assert (len(train), len(test)) == (len(parts[0]), len(parts[2]))


def test_digits_without_sklearn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DataError, match=r"pip install mmzoo\[digits\]"):
        load_builtin("digits", image_size=8, use_cache=False)
