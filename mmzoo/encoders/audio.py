"""Audio tower families: which HF class encodes a ``model_type`` and which transformers feature extractor feeds it.

One registry entry per family (``AUDIO_FAMILIES``), keyed by the tower config's ``model_type``:

* ``model_class``: the transformers class built as the tower (``None``: ``AutoModel``). Whisper is built as its
  encoder only (``WhisperEncoder``), CLAP as its audio model (``ClapAudioModel``).
* ``feature_extractor``: ``(hf_config, overrides) -> FeatureExtractor`` sized from the tower config (mel bins,
  input length) with the spec's ``feature_extractor:`` keys on top. Feature extractors never return an
  ``attention_mask``: the text's mask owns that name in a joint call (fixed-length clips need none).

The tower's input name is its class's ``main_input_name`` (``input_features`` for log-mel towers, ``input_values``
for waveform / AST towers), listed in :data:`mmzoo.modalities.MODALITIES`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._registry import Registry

DEFAULT_SAMPLING_RATE = 16000


@dataclass(frozen=True)
class AudioFamily:
    model_class: str | None  # dotted path of the transformers class; None: AutoModel
    feature_extractor: Callable[[Any, dict[str, Any]], Any]
    extra_inputs: tuple[str, ...] = field(default=())  # other feature-extractor outputs the tower takes
    width: Callable[[Any], int] | None = None  # width of the tower's states when it is not config.hidden_size


AUDIO_FAMILIES: Registry[AudioFamily] = Registry("audio tower family")


def _whisper(config, overrides: dict[str, Any]):
    from transformers import WhisperFeatureExtractor

    hop = overrides.get("hop_length", 160)
    rate = overrides.get("sampling_rate", DEFAULT_SAMPLING_RATE)
    frames = config.max_source_positions * 2  # conv2 has stride 2; the encoder wants exactly this many frames
    seconds = frames * hop / rate
    kwargs = {"feature_size": config.num_mel_bins, "sampling_rate": rate, "hop_length": hop,
              "chunk_length": int(seconds) if float(seconds).is_integer() else seconds}
    return _fixed_length(WhisperFeatureExtractor(**{**kwargs, **overrides}), frames * hop)


def _fixed_length(extractor, n_samples: int):
    extractor.n_samples = int(n_samples)
    extractor.nb_max_frames = int(n_samples) // extractor.hop_length
    return extractor


def _ast(config, overrides: dict[str, Any]):
    from transformers import ASTFeatureExtractor

    kwargs = {"num_mel_bins": config.num_mel_bins, "max_length": config.max_length,
              "sampling_rate": DEFAULT_SAMPLING_RATE}
    return ASTFeatureExtractor(**{**kwargs, **overrides})


def _waveform(config, overrides: dict[str, Any]):
    from transformers import Wav2Vec2FeatureExtractor

    kwargs = {"feature_size": 1, "sampling_rate": DEFAULT_SAMPLING_RATE, "do_normalize": True}
    return Wav2Vec2FeatureExtractor(**{**kwargs, **overrides, "return_attention_mask": False})


def _clap(config, overrides: dict[str, Any]):
    from transformers import ClapFeatureExtractor

    # fused 4-channel mel stacks only for a tower built with enable_fusion; otherwise one mel channel
    kwargs = {"feature_size": config.num_mel_bins, "sampling_rate": 48000,
              "truncation": "fusion" if getattr(config, "enable_fusion", False) else "rand_trunc"}
    return ClapFeatureExtractor(**{**kwargs, **overrides})


AUDIO_FAMILIES.register("whisper", AudioFamily("transformers.models.whisper.modeling_whisper.WhisperEncoder", _whisper))
AUDIO_FAMILIES.register("audio-spectrogram-transformer", AudioFamily(None, _ast))
for _type in ("wav2vec2", "hubert", "wavlm", "data2vec-audio"):
    AUDIO_FAMILIES.register(_type, AudioFamily(None, _waveform))
AUDIO_FAMILIES.register("clap_audio_model", AudioFamily(
    "transformers.models.clap.modeling_clap.ClapAudioModel", _clap, extra_inputs=("is_longer",),
    width=lambda config: int(config.patch_embeds_hidden_size * 2 ** (len(config.depths) - 1)),  # last Swin stage
))


def audio_family(model_type: str, where: str = "encoders.audio") -> AudioFamily:
    from ..errors import BuildError

    if model_type not in AUDIO_FAMILIES:
        raise BuildError(
            f"{where}.config.model_type: {model_type!r} is not an audio tower mmzoo knows; use one of "
            f"{AUDIO_FAMILIES.list()} (add a family to mmzoo.encoders.audio.AUDIO_FAMILIES for others)"
        )
    return AUDIO_FAMILIES.get(model_type)


def audio_tower_class(hf_config):
    """The transformers class of an audio tower, or ``None`` for ``AutoModel``."""
    family = AUDIO_FAMILIES.get(hf_config.model_type) if hf_config.model_type in AUDIO_FAMILIES else None
    if family is None or family.model_class is None:
        return None
    import importlib

    module, name = family.model_class.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


def audio_width(hf_config) -> int | None:
    """The width of an audio tower's states when its family declares one (CLAP's last Swin stage), else None."""
    family = AUDIO_FAMILIES.get(hf_config.model_type) if hf_config.model_type in AUDIO_FAMILIES else None
    return family.width(hf_config) if family is not None and family.width is not None else None


def build_feature_extractor(hf_config, overrides: dict[str, Any] | None = None, where: str = "encoders.audio"):
    """The transformers feature extractor of an audio tower (sized from its config; ``overrides`` on top)."""
    extractor = audio_family(hf_config.model_type, where).feature_extractor(hf_config, dict(overrides or {}))
    extractor.return_attention_mask = False
    return extractor
