"""Table-driven: each invalid spec fails with a message naming the dotted key, the bad value and a fix."""

from __future__ import annotations

import copy

import pytest

from mmzoo.errors import SpecError
from mmzoo.specs import ModelSpec

BASE = {
    "name": "t",
    "projection_dim": 16,
    "encoders": [
        {"modality": "text", "config": {"model_type": "bert", "hidden_size": 32}},
        {"modality": "image", "config": {"model_type": "vit", "hidden_size": 32}},
    ],
    "fusion": {"type": "dual_encoder"},
    "objectives": [{"type": "contrastive"}],
}


def spec_with(path: str, value):
    data = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    if value is DELETE:
        del node[int(last) if last.isdigit() else last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return data


DELETE = object()


def teacher(spec: dict) -> dict:
    """The fusion and objectives of a distillation spec with ``spec`` as its image teacher."""
    return {"fusion": {"type": "distillation", "teachers": {"image": spec}},
            "objectives": [{"type": "contrastive"}, {"type": "distillation"}]}

# (case id, spec, patterns that must all appear in the message)
CASES = [
    ("unknown-top-key", spec_with("projection", 3), ["projection", "unknown key", "remove it"]),
    ("typo-encoder-key", spec_with("encoders.0.poolng", "cls"), ["encoders.0.poolng", "unknown key"]),
    ("bad-pooling", spec_with("encoders.0.pooling", "avg"), ["encoders.0.pooling", "'avg'", "'mean'"]),
    ("bad-modality", spec_with("encoders.1.modality", "video"), ["encoders.1.modality", "'video'", "'image'"]),
    ("feature-extractor-on-image", spec_with("encoders.1.feature_extractor", {"sampling_rate": 16000}),
     ["encoders.1", "feature_extractor", "audio encoders only"]),
    ("no-source", spec_with("encoders.0.config", DELETE), ["encoders.0", "needs `model:`", "config:"]),
    ("config-without-model-type", spec_with("encoders.0.config", {"hidden_size": 3}),
     ["encoders.0.config", "model_type", "add `model_type:`"]),
    ("pretrained-without-model", spec_with("encoders.0.pretrained", True), ["encoders.0", "pretrained: true", "set `model:`"]),
    ("eos-on-image", spec_with("encoders.1.pooling", "eos"), ["encoders.1", "eos", "cls, mean"]),
    ("unknown-fusion", spec_with("fusion", {"type": "co_atention"}), ["fusion", "'co_atention'", "did you mean 'co_attention'"]),
    ("unknown-objective", spec_with("objectives", [{"type": "clip"}]), ["objectives.0", "'clip'", "contrastive"]),
    ("negative-weight", spec_with("objectives", [{"type": "contrastive", "weight": -1}]),
     ["objectives.0.weight", "greater than 0", "-1"]),
    ("no-objectives", spec_with("objectives", []), ["objectives", "at least 1"]),
    ("itm-on-dual-encoder", spec_with("objectives", [{"type": "itm"}]),
     ["objectives.0", "'itm'", "pair_embedding", "dual_encoder", "co_attention"]),
    ("mlm-on-gated", {**spec_with("objectives", [{"type": "mlm"}]), "fusion": {"type": "gated"}},
     ["objectives.0", "'mlm'", "text_tokens", "gated", "cross_attention"]),
    ("two-text-encoders", spec_with("encoders.1.modality", "text"), ["encoders.1", "second text encoder", "remove one"]),
    ("projection-mismatch", spec_with("encoders.0.projection", {"dim": 8}),
     ["projection.dim", "text 8, image 16", "same width"]),
    ("duplicate-objective", spec_with("objectives", [{"type": "contrastive"}, {"type": "contrastive"}]),
     ["objectives.1", "appears twice"]),
    ("adversarial-fusion-without-objective", {**BASE, "fusion": {"type": "adversarial"}},
     ["fusion.type 'adversarial'", "add `- type: adversarial`"]),
    ("heads-not-dividing", {**BASE, "fusion": {"type": "cross_attention", "hidden_size": 30, "num_heads": 4},
                            "objectives": [{"type": "itm"}]}, ["fusion", "divisible by num_heads", "30"]),
    ("bad-temperature", spec_with("objectives", [{"type": "contrastive", "init_temperature": 0}]),
     ["objectives.0.init_temperature", "greater than 0"]),
    ("bad-name", spec_with("name", "my model!"), ["name", "'my model!'", "pattern"]),
    ("tokenizer-on-image", spec_with("encoders.1.tokenizer", "bert-base-uncased"), ["tokenizer", "text encoders only"]),
    # teachers share the encoders' source fields and rules (TowerSourceSpec)
    ("teacher-without-source", {**BASE, **teacher({"pooling": "cls"})},
     ["fusion.teachers.image", "a teacher needs `model:`", "config:"]),
    ("pretrained-teacher-without-model", {**BASE, **teacher({"config": {"model_type": "vit"}})},
     ["fusion.teachers.image", "a teacher: pretrained: true needs `model:`", "pretrained: false"]),
    ("teacher-config-without-model-type", {**BASE, **teacher({"config": {"hidden_size": 8}, "pretrained": False})},
     ["fusion.teachers.image.config", "needs a `model_type`"]),
]


@pytest.mark.parametrize("data,patterns", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_spec_message(data, patterns):
    with pytest.raises(SpecError) as info:
        ModelSpec.from_dict(data, source="specs/bad.yaml")
    message = str(info.value)
    assert "specs/bad.yaml" in message
    for pattern in patterns:
        assert pattern in message, f"{pattern!r} not in:\n{message}"


def test_at_least_fifteen_cases():
    assert len(CASES) >= 15


def test_base_is_valid():
    assert ModelSpec.from_dict(BASE).name == "t"
