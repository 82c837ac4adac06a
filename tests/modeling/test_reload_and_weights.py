"""Reloading a *trained* model gives its exact weights and outputs back; objective weights scale their terms."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel

import mmzoo
from mmzoo.modeling import MmzooForConditionalGeneration, MmzooForVisualQuestionAnswering
from tests.common import TINY_PRESETS, batch
from tests.modeling.test_engine_ready import assert_same_state, perturbed


def _captioning_spec():
    spec = mmzoo.load_spec("mm-clip-tiny").to_dict()
    spec["objectives"].append({"type": "captioning", "num_layers": 1, "max_length": 32})
    return spec


@pytest.mark.parametrize("preset", TINY_PRESETS)
def test_reload_of_a_trained_model_is_exact(tmp_path, preset):
    # a loader that re-initialises any parameter from the spec (instead of reading it) fails here: the perturbed
    # weights are nowhere but in the checkpoint
    model = perturbed(mmzoo.build_model(preset)).eval()
    model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    assert_same_state(model, reloaded)
    inputs = batch(mmzoo.build_processor(preset))
    with torch.no_grad():
        a, b = model(**inputs, return_loss=True), reloaded(**inputs, return_loss=True)
    torch.testing.assert_close(a.loss, b.loss, rtol=0, atol=0)
    torch.testing.assert_close(a.logits_per_image, b.logits_per_image, rtol=0, atol=0)


@pytest.mark.parametrize("head,spec,kwargs", [
    (MmzooForConditionalGeneration, _captioning_spec, {}),
    (MmzooForVisualQuestionAnswering, lambda: "mm-albef-tiny", {"answer_vocab": ["yes", "no", "two"]}),
])
def test_reload_of_a_trained_head_is_exact(tmp_path, head, spec, kwargs):
    model = perturbed(mmzoo.build_model(spec(), model_class=head, **kwargs)).eval()
    model.save_pretrained(tmp_path)
    reloaded = head.from_pretrained(tmp_path).eval()
    assert_same_state(model, reloaded)
    inputs = batch(mmzoo.build_processor("mm-clip-tiny"))
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, reloaded(**inputs).logits, rtol=0, atol=0)


def test_objective_weights_scale_their_terms():
    spec = mmzoo.load_spec("mm-albef-tiny").to_dict()
    weights = {"contrastive": 0.3, "itm": 2.0, "mlm": 0.5}
    for objective in spec["objectives"]:
        objective["weight"] = weights[objective["type"]]
    assert {o["type"] for o in spec["objectives"]} == set(weights)
    model = mmzoo.build_model(spec).eval()  # eval: dropout off, MLM masks and ITM negatives deterministic
    inputs = batch(mmzoo.build_processor("mm-albef-tiny"))
    with torch.no_grad():
        out = model(**inputs, return_loss=True)
        again = model(**inputs, return_loss=True)
    assert set(out.loss_terms) == set(weights)
    expected = sum(weights[tag] * term for tag, term in out.loss_terms.items())
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(again.loss, out.loss, rtol=0, atol=0)
    # and the gradient of one term follows its weight
    model.zero_grad()
    model(**inputs, return_loss=True).loss.backward()
    scale_grad = model.objectives["contrastive"].logit_scale.grad.clone()  # only the contrastive term reaches it
    model.zero_grad()
    model(**inputs, return_loss=True).loss_terms["contrastive"].backward()
    torch.testing.assert_close(scale_grad, 0.3 * model.objectives["contrastive"].logit_scale.grad)
