"""One owner each: the dict -> HF config conversion (inline tower configs and stored teacher configs) and the
vision tower's input size (processor, recipe check and dry run read the same value)."""

from __future__ import annotations

import pytest

import mmzoo
from mmzoo._sources import hf_config_from_dict
from mmzoo.builder import image_size_of, tower_config
from mmzoo.errors import BuildError


def clip_with_image_size(size) -> dict:
    spec = mmzoo.load_spec("mm-clip-tiny").to_dict()
    spec["encoders"][1]["config"]["image_size"] = size
    return spec


@pytest.mark.parametrize("size", [48, [48, 48]])
def test_image_size_is_read_once_for_processor_and_recipe_checks(size):
    spec = mmzoo.load_spec(clip_with_image_size(size))
    assert image_size_of(spec) == 48
    assert mmzoo.build_processor(spec).image_processor.size == {"height": 48, "width": 48}


def test_image_size_default_when_the_config_has_none():
    spec = mmzoo.load_spec("mm-clip-tiny").to_dict()
    spec["encoders"][1]["config"] = {"model_type": "resnet", "hidden_sizes": [8, 16], "depths": [1, 1],
                                     "embedding_size": 8}
    spec = mmzoo.load_spec(spec)
    assert image_size_of(spec) == 224 and image_size_of(spec, default=None) is None


def test_inline_and_stored_configs_take_the_same_path():
    spec = mmzoo.load_spec("mm-clip-tiny")
    inline = tower_config(spec.encoder("image"), "encoders.1")
    stored = hf_config_from_dict(inline.to_dict(), "teacher_configs.image")
    assert type(stored) is type(inline) and stored.to_dict() == inline.to_dict()
    with pytest.raises(ValueError, match=r"teacher_configs.image.model_type: unknown transformers model_type 'vitt'"):
        hf_config_from_dict({"model_type": "vitt"}, "teacher_configs.image")
    bad = spec.to_dict()
    bad["encoders"][1]["config"]["model_type"] = "vitt"
    with pytest.raises(BuildError, match=r"encoders.1.config.model_type: unknown transformers model_type 'vitt'"):
        tower_config(mmzoo.load_spec(bad).encoder("image"), "encoders.1")
