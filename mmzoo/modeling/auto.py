"""Idempotent registration of mmzoo classes with transformers' Auto factories (runs on `import mmzoo`)."""

from __future__ import annotations

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForZeroShotImageClassification,
    AutoProcessor,
)

from .configuration_mmzoo import MmzooConfig, MmzooSiglipConfig
from .modeling_mmzoo import MmzooForZeroShotImageClassification, MmzooModel
from .processing_mmzoo import MmzooAudioProcessor, MmzooProcessor

_done = False
# extra (auto factory, class) pairs that other modules add before registration runs, e.g. task heads
EXTRA_MODEL_CLASSES: list[tuple[object, type]] = []


def register_auto_classes() -> None:
    global _done
    if _done:
        return
    for config_class in (MmzooConfig, MmzooSiglipConfig):
        AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
        for factory, model_class in [
            (AutoModel, MmzooModel),
            (AutoModelForZeroShotImageClassification, MmzooForZeroShotImageClassification),
            *EXTRA_MODEL_CLASSES,
        ]:
            # Auto mappings key on the config class; register a per-config subclass so config_class matches
            cls = model_class if model_class.config_class is config_class else _for_config(model_class, config_class)
            factory.register(config_class, cls, exist_ok=True)
        AutoProcessor.register(config_class, MmzooProcessor, exist_ok=True)
    # AutoProcessor finds a saved processor's class by the name in processor_config.json among the registered
    # ones; the audio processor is registered under its own key (image and audio models share MmzooConfig)
    AutoProcessor.register(_AudioProcessorKey, MmzooAudioProcessor, exist_ok=True)
    _done = True


class _AudioProcessorKey:
    """Registration key of MmzooAudioProcessor with AutoProcessor (no model has this config)."""

    model_type = "mmzoo_audio_processor"


_subclasses: dict[tuple[type, type], type] = {}


def _for_config(model_class: type, config_class: type) -> type:
    key = (model_class, config_class)
    if key not in _subclasses:
        name = model_class.__name__.replace("Mmzoo", "MmzooSiglip", 1)
        _subclasses[key] = type(name, (model_class,), {"config_class": config_class, "__module__": model_class.__module__})
    return _subclasses[key]


def model_class_for(model_class: type, config_class: type) -> type:
    """The registered class of ``model_class`` for ``config_class`` (siglip-flavoured subclasses included)."""
    return model_class if model_class.config_class is config_class else _for_config(model_class, config_class)
