"""One modality tower: an HF model, its pooling and its projection into the shared space."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .pooling import POOLERS, pool
from .projection import build_projection


@dataclass
class TowerOutput:
    """What a tower hands to fusion and objectives.

    tokens: (B, L, D) last hidden states; mask: (B, L) 1 for real tokens; pooled: (B, D) pooled features;
    embeds: (B, P) projected embeddings (unnormalised, CLIP's `get_*_features`); normalized: (B, P) L2-normalised;
    raw: the HF model's own output.
    """

    tokens: Tensor
    mask: Tensor
    pooled: Tensor
    embeds: Tensor | None
    raw: Any = None

    @property
    def normalized(self) -> Tensor:
        return F.normalize(self.embeds, dim=-1)


def tower_model(hf_config, pooling: str) -> nn.Module:
    """``AutoModel.from_config(hf_config)``, without the model's pooling layer unless ``pooling == "pooler"``.

    An unused pooler gets no gradient, which breaks DDP with gradient checkpointing (Trainer disables
    ``find_unused_parameters`` then) and costs the unused-parameter scan otherwise. Models whose class takes
    ``add_pooling_layer`` (BERT, ViT, ...) are built with ``add_pooling_layer=False``; others keep their
    parameter-free pooling.
    """
    from transformers import AutoModel
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    from .audio import audio_tower_class

    family_class = audio_tower_class(hf_config)  # e.g. Whisper: the encoder only
    kwargs = {}
    if pooling != "pooler":
        model_class = family_class or MODEL_MAPPING.get(type(hf_config), None)
        if model_class is not None and "add_pooling_layer" in inspect.signature(model_class.__init__).parameters:
            kwargs["add_pooling_layer"] = False
    if family_class is not None:
        return family_class(hf_config, **kwargs)
    return AutoModel.from_config(hf_config, **kwargs)


def hidden_size_of(config) -> int:
    from .audio import audio_width

    if (width := audio_width(config)) is not None:
        return width
    for key in ("hidden_size", "d_model", "embed_dim", "width"):
        if isinstance(getattr(config, key, None), int):
            return getattr(config, key)
    # ResNet-like configs list widths per stage
    if isinstance(getattr(config, "hidden_sizes", None), list):
        return config.hidden_sizes[-1]
    raise ValueError(f"cannot tell the width of a {type(config).__name__}; it has no hidden_size/d_model")


class Tower(nn.Module):
    """Wraps ``model`` (an HF PreTrainedModel). ``projection_dim=None`` makes a tower without projection."""

    def __init__(self, model: nn.Module, modality: str, pooling: str, projection_spec=None, projection_dim=None):
        super().__init__()
        self.model = model
        self.modality = modality
        self.pooling = pooling
        self.width = hidden_size_of(model.config)
        # a learned pooling's module (None for parameter-free ones); the attribute name keeps checkpoint keys
        self.attention_pool = POOLERS.get(pooling).build(self.width)
        self.projection = (
            build_projection(projection_spec, self.width, projection_dim) if projection_dim is not None else None
        )
        accepted = inspect.signature(model.forward).parameters
        self._accepts = {k for k in ("token_type_ids", "attention_mask") if k in accepted}

    def forward(self, output_hidden_states: bool | None = None, output_attentions: bool | None = None,
                **inputs: Tensor) -> TowerOutput:
        """``output_hidden_states`` / ``output_attentions`` reach the HF model (its ``raw`` output has them)."""
        flags = {"output_hidden_states": output_hidden_states, "output_attentions": output_attentions}
        flags = {k: v for k, v in flags.items() if v is not None}
        if self.modality == "text":
            kwargs = {"input_ids": inputs["input_ids"]}
            mask = inputs.get("attention_mask")
            if mask is None:
                mask = torch.ones_like(inputs["input_ids"])
            if "attention_mask" in self._accepts:
                kwargs["attention_mask"] = mask
            if "token_type_ids" in self._accepts and inputs.get("token_type_ids") is not None:
                kwargs["token_type_ids"] = inputs["token_type_ids"]
        elif self.modality == "image":
            kwargs = {"pixel_values": inputs["pixel_values"]}
            mask = None
        else:  # audio: the tower's own input (input_features / input_values) and family extras (CLAP's is_longer)
            kwargs = {k: v for k, v in inputs.items() if v is not None}
            mask = None
        out = self.model(**kwargs, **flags, return_dict=True)
        tokens = out.last_hidden_state
        if tokens.dim() == 4:  # convolutional feature map (B, C, H, W) -> tokens
            tokens = tokens.flatten(2).transpose(1, 2)
        if mask is None:
            mask = torch.ones(tokens.shape[:2], dtype=torch.long, device=tokens.device)
        pooled = pool(self.pooling, tokens, mask, getattr(out, "pooler_output", None), self.attention_pool)
        if pooled.dim() > 2:
            pooled = pooled.flatten(1)
        embeds = self.projection(pooled) if self.projection is not None else None
        return TowerOutput(tokens=tokens, mask=mask, pooled=pooled, embeds=embeds, raw=out)
