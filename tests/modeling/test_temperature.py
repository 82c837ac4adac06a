"""The temperature convention end to end: what training logs (``<objective>/temperature``), what the card reads
from the weights (``learned_values``) and the scale the loss uses agree; checkpoints whose config.json holds the
older keys (max_logit_scale, init_logit_scale) load with equal weights."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from transformers import AutoModel

import mmzoo
from mmzoo.hub.facts import learned_scalars
from tests.common import batch


@pytest.mark.parametrize("preset,tag", [("mm-clip-tiny", "contrastive"), ("mm-siglip-tiny", "sigmoid")])
def test_logged_and_card_temperature_are_the_learned_one(tmp_path, preset, tag):
    model = mmzoo.build_model(preset)
    with torch.no_grad():
        model.objectives[tag].logit_scale.fill_(math.log(1 / 0.2))  # a "learned" value, not the init
    out = model(**batch(mmzoo.build_processor(preset)), return_loss=True)
    logged = float(out.objective_metrics[f"{tag}/temperature"])
    assert logged == pytest.approx(0.2, rel=1e-5)
    assert float(1 / model.objectives[tag].scale().detach()) == pytest.approx(logged, rel=1e-6)  # the loss uses that tau
    model.save_pretrained(tmp_path)
    card = learned_scalars(tmp_path, model.config.model_spec())[tag]
    assert card["temperature"] == pytest.approx(logged, rel=1e-5)
    if tag == "sigmoid":
        assert card["bias"] == pytest.approx(-10.0)


def test_contrastive_min_temperature_bounds_the_learned_one(tmp_path):
    model = mmzoo.build_model("mm-clip-tiny")
    with torch.no_grad():
        model.objectives["contrastive"].logit_scale.fill_(math.log(1 / 0.001))  # below min_temperature 0.01
    assert float(1 / model.objectives["contrastive"].scale().detach()) == pytest.approx(0.01)
    model.save_pretrained(tmp_path)
    assert learned_scalars(tmp_path, model.config.model_spec())["contrastive"]["temperature"] == pytest.approx(0.01)


@pytest.mark.parametrize("preset,tag,old,new", [
    ("mm-clip-tiny", "contrastive", {"max_logit_scale": 100.0}, "min_temperature"),
    ("mm-siglip-tiny", "sigmoid", {"init_logit_scale": math.log(10.0)}, "init_temperature"),
])
def test_checkpoint_with_the_old_keys_loads(tmp_path, preset, tag, old, new):
    model = mmzoo.build_model(preset)
    with torch.no_grad():
        model.objectives[tag].logit_scale.add_(0.5)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    objective = next(o for o in config["spec"]["objectives"] if o["type"] == tag)
    objective.pop(new)
    objective.update(old)  # what mmzoo wrote before the rename
    (tmp_path / "config.json").write_text(json.dumps(config))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = AutoModel.from_pretrained(tmp_path)
    torch.testing.assert_close(loaded.objectives[tag].logit_scale, model.objectives[tag].logit_scale)
    assert getattr(loaded.config.model_spec().objective(tag), new) == pytest.approx(
        getattr(model.config.model_spec().objective(tag), new))
