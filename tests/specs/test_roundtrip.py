"""YAML -> spec -> config.json -> reload -> spec is equal, for every preset; JSON schema is emitted."""

from __future__ import annotations

import json

import pytest
import yaml

import mmzoo
from mmzoo.presets import list_presets
from mmzoo.specs import ModelSpec


@pytest.mark.parametrize("name", list_presets())
def test_yaml_json_roundtrip(name):
    spec = mmzoo.load_spec(name)
    assert ModelSpec.from_yaml(spec.to_yaml()) == spec
    assert ModelSpec.from_dict(json.loads(spec.to_json())) == spec
    # defaults are filled in: the dump names every field
    dumped = yaml.safe_load(spec.to_yaml())
    assert "pooling" in dumped["encoders"][0] and "weight" in dumped["objectives"][0]


@pytest.mark.parametrize("name", [n for n in list_presets() if n.endswith("-tiny")])
def test_config_roundtrip(name, tmp_path):
    from transformers import AutoConfig

    spec = mmzoo.load_spec(name)
    config = mmzoo.build_config(spec)
    config.save_pretrained(tmp_path)
    reloaded = AutoConfig.from_pretrained(tmp_path)
    assert type(reloaded) is type(config)
    assert reloaded.model_spec() == spec
    assert reloaded.text_config.to_dict() == config.text_config.to_dict()


def test_specs_are_frozen():
    spec = mmzoo.load_spec("mm-clip-tiny")
    with pytest.raises(Exception):
        spec.name = "x"
    assert spec.model_copy(update={"name": "x"}).name == "x"


def test_json_schema_has_discriminators():
    schema = ModelSpec.model_json_schema()
    assert schema["properties"]["fusion"]["discriminator"]["propertyName"] == "type"
    assert "co_attention" in schema["properties"]["fusion"]["discriminator"]["mapping"]
