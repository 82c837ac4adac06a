"""Output dataclasses of mmzoo models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.utils import ModelOutput


@dataclass
class MmzooOutput(ModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`): weighted sum of the objectives' losses (when `return_loss=True`).
    loss_terms (`dict[str, torch.FloatTensor]`): each objective's unweighted loss, keyed by its `type`.
    logits_per_image (`(n_images, n_texts)`): image-text similarity logits of the scoring objective (scaled
        cosine for contrastive, scale*cos+bias for sigmoid); plain cosine when the model has no scoring objective.
    logits_per_text (`(n_texts, n_images)`): the transpose view.
    text_embeds (`(n_texts, projection_dim)`): L2-normalised projected text embeddings.
    image_embeds (`(n_images, projection_dim)`): L2-normalised projected image embeddings.
    fused_embeds (`(batch, fusion_width)`): joint pair embeddings of fusions that make one (pairs i<->i).
    fused_text_states (`(batch, text_len, width)`): image-conditioned text states of fusions that make them.
    text_model_output / vision_model_output: the towers' own HF outputs.
    objective_metrics (`dict[str, torch.FloatTensor]`): detached scalars the objectives computed, keyed
        `<objective>/<name>` (`itm/accuracy`, `mlm/accuracy`, `contrastive/temperature`, ...), when `return_loss=True`.
    logits_per_audio (`(n_audios, n_texts)`): audio-text logits of models with an audio tower (CLAP's name; what
        transformers' zero-shot-audio-classification pipeline reads); `logits_per_text` is then its transpose
        (for a text-image-audio model `logits_per_text` stays the image one).
    audio_embeds (`(n_audios, projection_dim)`): L2-normalised projected audio embeddings.
    audio_model_output: the audio tower's own HF output.
    """

    loss: torch.FloatTensor | None = None
    loss_terms: dict[str, torch.Tensor] | None = None
    logits_per_image: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    fused_embeds: torch.FloatTensor | None = None
    fused_text_states: torch.FloatTensor | None = None
    text_model_output: Any = None
    vision_model_output: Any = None
    objective_metrics: dict[str, torch.Tensor] | None = None
    logits_per_audio: torch.FloatTensor | None = None
    audio_embeds: torch.FloatTensor | None = None
    audio_model_output: Any = None

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(
            v.to_tuple() if isinstance(v, ModelOutput) else v
            for k, v in self.items()
        )
