"""MmzooConfig: an HF config that carries the full ModelSpec plus real sub-configs of the towers.

``from_pretrained`` rebuilds the whole model from this config alone: the towers' original checkpoints are
never needed again (their configs are stored here, their weights in the model's safetensors).
"""

from __future__ import annotations

import json
from typing import Any

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from ..specs import ModelSpec
from ..version import __version__


class MmzooConfig(PreTrainedConfig):
    r"""
    Args:
        spec (`dict`): the full `ModelSpec` (every default filled in), as `ModelSpec.to_dict()`.
        text_config / vision_config / audio_config (`PreTrainedConfig` or `dict`): the towers' HF configs (a model
            has the text config and those of its other modalities, see `mmzoo.modalities`).
        teacher_configs (`dict[str, dict]`, *optional*): HF configs of distillation teachers by modality.
        tokens (`dict`, *optional*): vocabulary size and special token ids of the tokenizer the model was built with.
        answer_vocab (`list[str]`, *optional*): answers of the VQA classification head.
        mmzoo_version (`str`): version of mmzoo that wrote the config.

    Example:
    ```python
    >>> import mmzoo
    >>> model = mmzoo.build_model("mm-clip-tiny")
    >>> model.config.model_spec().name
    'mm-clip-tiny'
    ```
    """

    model_type = "mmzoo"
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="bert", optional=True),
        "vision_config": SubConfigSpec(config_class=AutoConfig, model_type="vit", optional=True),
        "audio_config": SubConfigSpec(config_class=AutoConfig, model_type="whisper", optional=True),
    }

    spec: dict[str, Any] | None = None
    text_config: PreTrainedConfig | dict | None = None
    vision_config: PreTrainedConfig | dict | None = None
    audio_config: PreTrainedConfig | dict | None = None
    teacher_configs: dict[str, Any] | None = None
    tokens: dict[str, Any] | None = None
    answer_vocab: list[str] | None = None
    mmzoo_version: str | None = __version__

    def model_spec(self) -> ModelSpec:
        """The validated ModelSpec this config was built from (parsed once per distinct spec, then cached: specs
        are immutable)."""
        text = json.dumps(self.spec, sort_keys=True)
        cached = _SPECS.get(text)
        if cached is None:
            cached = ModelSpec.from_dict(self.spec, source=f"{self.name_or_path or 'config'}:config.json → spec")
            if len(_SPECS) >= _SPEC_CACHE_SIZE:
                _SPECS.pop(next(iter(_SPECS)))
            _SPECS[text] = cached
        return cached


# validated specs by their JSON text (ModelSpec instances are frozen, so sharing them is safe)
_SPECS: dict[str, ModelSpec] = {}
_SPEC_CACHE_SIZE = 64


class MmzooSiglipConfig(MmzooConfig):
    """Same as MmzooConfig, for models scored by a sigmoid objective. The `siglip` in its model_type is what
    tells transformers' zero-shot pipeline to report independent sigmoid scores instead of a softmax."""

    model_type = "mmzoo_siglip"


def config_class_for(spec: ModelSpec) -> type[MmzooConfig]:
    """Sigmoid-scored models (an objective scoring pairs by sigmoid and none by softmax) get the siglip-flavoured
    config. The scoring kind is the objectives' declared ``pair_scores``."""
    return MmzooSiglipConfig if spec.pair_scores == "sigmoid" else MmzooConfig
