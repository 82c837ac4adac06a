"""transformers' zero-shot pipeline on saved mmzoo models: softmax for contrastive, sigmoid for sigmoid-loss models."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import pipeline

import mmzoo
from tests.common import images


@pytest.fixture(scope="module", params=["mm-clip-tiny", "mm-siglip-tiny"])
def saved(request, tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp(request.param)
    model, processor = mmzoo.build_model(request.param), mmzoo.build_processor(request.param)
    mmzoo.builder.save_pretrained(model, processor, out)
    return request.param, out, model.eval(), processor


def test_zero_shot_pipeline(saved):
    name, path, model, processor = saved
    labels = ["red circle", "blue square", "green triangle"]
    classifier = pipeline("zero-shot-image-classification", model=str(path))
    result = classifier(images(1)[0], candidate_labels=labels)
    scores = {r["label"]: r["score"] for r in result}
    assert set(scores) == set(labels)
    inputs = processor(text=[f"This is a photo of {lab}." for lab in labels], images=images(1))
    with torch.no_grad():
        logits = model(**inputs).logits_per_image[0]
    if name == "mm-siglip-tiny":
        expected = torch.sigmoid(logits)
        assert not math.isclose(sum(scores.values()), 1.0, rel_tol=1e-3)  # independent scores
    else:
        expected = logits.softmax(-1)
        assert math.isclose(sum(scores.values()), 1.0, rel_tol=1e-5)
    for label, value in zip(labels, expected.tolist()):
        assert math.isclose(scores[label], value, rel_tol=1e-4, abs_tol=1e-7)
