"""The one owner of "what a modality is called": its data column, model inputs, tower, output fields and tags.

Every modality mmzoo aligns with text is a :class:`Modality` entry of ``MODALITIES``. Code that must tell an image
model from an audio model asks this registry (``paired_modality(spec)``, ``MODALITIES.get("audio").embeds_field``)
instead of branching on names; audio tower families (which HF class encodes, which feature extractor feeds it) are
in :mod:`mmzoo.encoders.audio`.

>>> from mmzoo.modalities import MODALITIES
>>> MODALITIES.get("audio").logits_field
'logits_per_audio'
"""

from __future__ import annotations

from dataclasses import dataclass

from ._registry import Registry


@dataclass(frozen=True)
class Modality:
    """How one non-text modality appears in data, processors, models, outputs and cards.

    column: the dataset column holding the raw input (``image``: PIL images, ``audio``: waveforms).
    input_names: model keyword inputs that carry it (the tower's ``main_input_name`` is one of them).
    processor_argument: the ``MmzooProcessor`` argument (``images=`` / ``audio=``).
    tower_attr / config_key: the model's tower attribute and the MmzooConfig sub-config holding its HF config.
    embeds_field / logits_field / output_field: MmzooOutput fields (normalised embeddings, pair logits against
        the texts, the tower's own HF output). features_method: the CLIP-style ``get_*_features`` method.
    zero_shot_pipeline: the transformers pipeline task scoring an input against label texts; tags: card tags.
    """

    name: str
    column: str
    input_names: tuple[str, ...]
    processor_argument: str
    tower_attr: str
    config_key: str
    embeds_field: str
    logits_field: str
    output_field: str
    features_method: str
    zero_shot_pipeline: str
    tags: tuple[str, ...]


MODALITIES: Registry[Modality] = Registry("modality")

MODALITIES.register("image", Modality(
    name="image", column="image", input_names=("pixel_values",), processor_argument="images",
    tower_attr="vision_tower", config_key="vision_config", embeds_field="image_embeds",
    logits_field="logits_per_image", output_field="vision_model_output", features_method="get_image_features",
    zero_shot_pipeline="zero-shot-image-classification", tags=("vision-language",),
))
MODALITIES.register("audio", Modality(
    name="audio", column="audio", input_names=("input_features", "input_values"), processor_argument="audio",
    tower_attr="audio_tower", config_key="audio_config", embeds_field="audio_embeds",
    logits_field="logits_per_audio", output_field="audio_model_output", features_method="get_audio_features",
    zero_shot_pipeline="zero-shot-audio-classification", tags=("audio", "audio-text", "clap"),
))


def paired_modalities(spec) -> list[str]:
    """The spec's non-text modalities in registry order (``["image"]``, ``["audio"]`` or both)."""
    present = {e.modality for e in spec.encoders}
    return [name for name in MODALITIES.list() if name in present]


def paired_modality(spec) -> str:
    """The modality a dual-encoder aligns with text: image when the spec has an image tower, else audio."""
    names = paired_modalities(spec)
    return "image" if "image" in names else names[0]


def tower_attr(modality: str) -> str:
    """The model attribute of a modality's tower (``text_tower``, ``vision_tower``, ``audio_tower``)."""
    return "text_tower" if modality == "text" else MODALITIES.get(modality).tower_attr


def tower_of(model, modality: str):
    """The ``Tower`` of ``modality`` in an mmzoo model."""
    return getattr(model, tower_attr(modality))
