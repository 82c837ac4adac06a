"""Build models and processors from specs: the construction path that may load tower weights.

``AutoModel.from_pretrained(dir_or_repo)`` is the other path: it needs the saved config only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ._sources import hf_config_from_dict, load_tokenizer, resolve_model_source
from ._spec_io import load_spec
from .errors import BuildError
from .modalities import MODALITIES, paired_modalities
from .specs import EncoderSpec, ModelSpec
from .utils.logging import get_logger

logger = get_logger(__name__)


def tower_config(enc: EncoderSpec | Any, where: str):
    """The HF config of a tower: from `model` (with `config` keys overriding) or from the inline `config`."""
    from transformers import AutoConfig

    overrides = dict(enc.config or {})
    if enc.model is not None:
        source = resolve_model_source(enc.model)
        _refuse_custom_code(source, f"{where}.model")
        try:
            config = AutoConfig.from_pretrained(source)
        except OSError as err:
            raise BuildError(
                f"{where}.model: cannot load the config of {enc.model!r} ({err}); give a local folder, an id "
                "reachable on the Hub, or an inline `config:`"
            ) from None
        overrides.pop("model_type", None)
        for key, value in overrides.items():
            setattr(config, key, value)
        return config
    try:
        return hf_config_from_dict(overrides, f"{where}.config")
    except ValueError as err:
        raise BuildError(str(err)) from None


def image_size_of(spec: ModelSpec, default: int | None = 224) -> int | None:
    """The side in pixels the vision tower takes: its config's ``image_size`` (the first of a (height, width)
    pair), or ``default`` when the config has none."""
    size = getattr(tower_config(spec.encoder("image"), "encoders.image"), "image_size", None)
    if size is None:
        return default
    return size if isinstance(size, int) else int(size[0])


def _refuse_custom_code(source, where: str) -> None:
    """A local tower folder whose config maps to custom code (``auto_map``) is refused: mmzoo never runs
    code from a model folder (no ``trust_remote_code``)."""
    import json
    from pathlib import Path

    config_file = Path(str(source)) / "config.json"
    if not config_file.is_file():
        return
    try:
        data = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise BuildError(f"{where}: {config_file} is not valid JSON ({err}); fix or replace the tower folder") from None
    if isinstance(data, dict) and data.get("auto_map"):
        raise BuildError(
            f"{where}: {config_file} needs custom code (auto_map {sorted(data['auto_map'])}); mmzoo never runs "
            "code from a model folder (no trust_remote_code). Use a tower whose architecture transformers ships "
            "(its config's model_type), or build it with an inline `config:`"
        )


def _token_info(tokenizer, text_config, spec: ModelSpec) -> dict[str, Any]:
    vocab = len(tokenizer)
    if vocab > text_config.vocab_size:
        raise BuildError(
            f"encoders.*(text).config.vocab_size: the tokenizer {spec.encoder('text').resolved_tokenizer!r} has "
            f"{vocab} tokens but the text tower's vocab_size is {text_config.vocab_size}; set vocab_size >= {vocab}"
        )
    return {
        "vocab_size": text_config.vocab_size,
        "pad_token_id": tokenizer.pad_token_id,
        "mask_token_id": tokenizer.mask_token_id,
        "cls_token_id": tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id,
        "sep_token_id": tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id,
        "special_token_ids": sorted(set(tokenizer.all_special_ids)),
    }


def build_config(spec: ModelSpec | dict | str | Path, tokenizer=None, answer_vocab: list[str] | None = None):
    """An MmzooConfig holding the full spec and the towers' (and teachers') HF configs.

    ``answer_vocab``: answers of a VQA classification head (collected from the training data).
    """
    from .modeling import config_class_for

    spec = load_spec(spec)
    index = {e.modality: i for i, e in enumerate(spec.encoders)}
    text_config = tower_config(spec.encoder("text"), f"encoders.{index['text']}")
    paired = {MODALITIES.get(m).config_key: tower_config(spec.encoder(m), f"encoders.{index[m]}").to_dict()
              for m in paired_modalities(spec)}  # vision_config and / or audio_config
    tokenizer = tokenizer or load_tokenizer(spec.encoder("text").resolved_tokenizer)
    teachers = getattr(spec.fusion, "teachers", None) or {}
    teacher_configs = {m: tower_config(t, f"fusion.teachers.{m}").to_dict() for m, t in teachers.items()}
    return config_class_for(spec)(
        spec=spec.to_dict(),
        text_config=text_config.to_dict(),
        **paired,
        teacher_configs=teacher_configs or None,
        tokens=_token_info(tokenizer, text_config, spec),
        answer_vocab=list(answer_vocab) if answer_vocab else None,
    )


def _load_pretrained_into(module, source: str, where: str) -> None:
    from transformers import AutoModel

    try:
        pretrained = AutoModel.from_pretrained(resolve_model_source(source))
    except OSError as err:
        raise BuildError(f"{where}.model: cannot load weights of {source!r} ({err})") from None
    if not isinstance(pretrained, type(module)):  # an audio family's tower inside the checkpoint's model
        pretrained = next((m for m in pretrained.modules() if isinstance(m, type(module))), pretrained)
    from .adapters import base_layer_state_dict, is_lora_key

    missing, unexpected = module.load_state_dict(base_layer_state_dict(module, pretrained.state_dict()), strict=False)
    missing = [k for k in missing if not is_lora_key(k)]  # LoRA adapters keep their initialisation
    if getattr(module, "pooler", None) is None:  # built without its pooler (unused by the spec's pooling)
        unexpected = [k for k in unexpected if not k.startswith("pooler.")]
    if missing or unexpected:
        raise BuildError(
            f"{where}: weights of {source!r} do not fit the tower (missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}); check that `config:` overrides do not change the architecture"
        )


def build_model(spec: ModelSpec | dict | str | Path, model_class=None, answer_vocab: list[str] | None = None):
    """Build a model from a spec, a spec file or a preset name, loading pretrained tower weights where asked.

    Args:
        spec: `ModelSpec`, dict, path of a YAML/JSON spec, or a preset name (`mmzoo zoo list`).
        model_class: a class from `mmzoo.modeling` (default `MmzooModel`; e.g. `MmzooForVisualQuestionAnswering`).
        answer_vocab: the answers of a VQA classification head.

    Example:
    ```python
    >>> import mmzoo
    >>> model = mmzoo.build_model("mm-clip-tiny")
    >>> type(model).__name__
    'MmzooModel'
    ```
    """
    from .modeling import MmzooModel
    from .modeling.auto import model_class_for

    spec = load_spec(spec)
    config = build_config(spec, answer_vocab=answer_vocab)
    model = model_class_for(model_class or MmzooModel, type(config))(config)
    towers = {"text": model.text_tower.model,
              **{m: getattr(model, MODALITIES.get(m).tower_attr).model for m in paired_modalities(spec)}}
    for i, enc in enumerate(spec.encoders):
        if enc.pretrained:
            _load_pretrained_into(towers[enc.modality], enc.model, f"encoders.{i}")
            logger.info("loaded pretrained %s tower from %s", enc.modality, enc.model)
    for modality, teacher in (getattr(spec.fusion, "teachers", None) or {}).items():
        if teacher.pretrained:
            _load_pretrained_into(model.fusion.teachers[modality].model, teacher.model, f"fusion.teachers.{modality}")
    fresh = [o.type for o in spec.objectives] + [spec.fusion.type]
    if any(e.pretrained for e in spec.encoders):
        logger.warning("pretrained towers got freshly initialised projections, fusion and heads (%s)", fresh)
    logger.info(
        "built %s: towers %s, fusion=%s, objectives=%s", spec.name,
        " ".join(f"{e.modality}={e.model or e.config.get('model_type')}" for e in spec.encoders),
        spec.fusion.type, {o.type: o.weight for o in spec.objectives},
    )
    return model


def build_processor(spec: ModelSpec | dict | str | Path, max_length: int | None = None):
    """The MmzooProcessor of a spec: its text tokenizer and an image processor sized for the vision tower."""
    from transformers import ViTImageProcessorPil

    from .modeling import MmzooProcessor

    spec = load_spec(spec)
    if "image" not in paired_modalities(spec):
        return build_audio_processor(spec, max_length)
    image_spec = spec.encoder("image")
    size = image_size_of(spec)
    image_processor = ViTImageProcessorPil(
        size={"height": size, "width": size}, image_mean=list(image_spec.image_mean), image_std=list(image_spec.image_std)
    )
    tokenizer = _text_tokenizer(spec)
    return MmzooProcessor(image_processor, tokenizer, max_length=max_length or tokenizer.model_max_length)


def _text_tokenizer(spec: ModelSpec):
    text_config = tower_config(spec.encoder("text"), "encoders.text")
    tokenizer = load_tokenizer(spec.encoder("text").resolved_tokenizer)
    positions = getattr(text_config, "max_position_embeddings", None) or tokenizer.model_max_length
    tokenizer.model_max_length = min(tokenizer.model_max_length, positions)
    return tokenizer


def _saved_feature_extractor(audio_spec):
    """The feature extractor saved with a tower given by ``model:`` (its preprocessor config, e.g. a Whisper
    checkpoint's), with the spec's ``feature_extractor:`` keys on top; None when the folder / repo has none."""
    if audio_spec.model is None:
        return None
    from transformers import AutoFeatureExtractor

    try:
        extractor = AutoFeatureExtractor.from_pretrained(resolve_model_source(audio_spec.model))
    except (OSError, ValueError):
        return None
    for key, value in (audio_spec.feature_extractor or {}).items():
        setattr(extractor, key, value)
    extractor.return_attention_mask = False
    return extractor


def build_audio_processor(spec: ModelSpec | dict | str | Path, max_length: int | None = None):
    """The MmzooAudioProcessor of a text-audio spec: its tokenizer and the audio tower family's feature
    extractor (see :mod:`mmzoo.encoders.audio`)."""
    from .encoders.audio import build_feature_extractor
    from .modeling import MmzooAudioProcessor

    spec = load_spec(spec)
    audio_spec = spec.encoder("audio")
    index = next(i for i, e in enumerate(spec.encoders) if e.modality == "audio")
    extractor = _saved_feature_extractor(audio_spec) or build_feature_extractor(
        tower_config(audio_spec, f"encoders.{index}"), audio_spec.feature_extractor, f"encoders.{index}")
    tokenizer = _text_tokenizer(spec)
    return MmzooAudioProcessor(extractor, tokenizer, max_length=max_length or tokenizer.model_max_length)


def save_pretrained(model, processor, out_dir: str | Path) -> Path:
    """Write model (config + safetensors) and processor into ``out_dir``."""
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
