"""One temperature convention (tau; learned ones stored as logit_scale = log(1 / tau)); the older keys
``max_logit_scale`` and ``init_logit_scale`` still load, converted, with a FutureWarning."""

from __future__ import annotations

import math

import pytest

import mmzoo
from mmzoo.errors import SpecError
from mmzoo.specs import ModelSpec


def spec_dict(preset: str, **objective_keys) -> dict:
    data = mmzoo.load_spec(preset).to_dict()
    objective = data["objectives"][0]
    for key in ("min_temperature", "init_temperature"):
        if any(old in objective_keys for old in ("max_logit_scale", "init_logit_scale")):
            objective.pop(key, None)
    objective.update(objective_keys)
    return data


def test_every_temperature_field_is_a_temperature():
    from mmzoo.specs.objectives import ContrastiveSpec, DistillationSpec, SigmoidSpec

    assert {"init_temperature", "min_temperature"} <= set(ContrastiveSpec.model_fields)
    assert "init_temperature" in SigmoidSpec.model_fields and "temperature" in DistillationSpec.model_fields
    for cls in (ContrastiveSpec, SigmoidSpec):
        assert not [k for k in cls.model_fields if "logit_scale" in k], cls  # no log-scale knobs left
    assert "tau" in ContrastiveSpec.model_fields["init_temperature"].description


def test_old_contrastive_cap_loads_as_min_temperature():
    with pytest.warns(FutureWarning, match=r"max_logit_scale: 50.*min_temperature: 0\.02.*write `min_temperature`"):
        spec = ModelSpec.from_dict(spec_dict("mm-clip-tiny", max_logit_scale=50))
    assert spec.objectives[0].min_temperature == pytest.approx(0.02)


def test_old_sigmoid_log_scale_loads_as_init_temperature():
    with pytest.warns(FutureWarning, match="init_logit_scale"):
        spec = ModelSpec.from_dict(spec_dict("mm-siglip-tiny", init_logit_scale=math.log(20.0)))
    assert spec.objectives[0].init_temperature == pytest.approx(0.05)
    assert ModelSpec.from_dict(spec_dict("mm-siglip-tiny")).objectives[0].init_temperature == 0.1  # SigLIP's t = 10


def test_old_and_new_key_disagreeing_is_an_error():
    data = spec_dict("mm-clip-tiny", max_logit_scale=50)
    data["objectives"][0]["min_temperature"] = 0.05
    with pytest.raises(SpecError, match="max_logit_scale .deprecated. = 50 and min_temperature = 0.05 disagree"):
        ModelSpec.from_dict(data, source="old.yaml")


def test_old_key_as_a_recipe_override(tmp_path):
    from mmzoo.recipe import load_recipe, resolve_model_spec

    recipe = tmp_path / "r.yaml"
    recipe.write_text("""name: r
model:
  preset: mm-clip-tiny
  overrides:
    objectives.contrastive.max_logit_scale: 40
data:
  train: {source: builtin, name: shapes, split: train}
training: {max_steps: 1}
""")
    with pytest.warns(FutureWarning, match="max_logit_scale"):
        spec = resolve_model_spec(load_recipe(recipe))
    assert spec.objective("contrastive").min_temperature == pytest.approx(0.025)
