"""Encoder (tower) specs: which HF model encodes a modality, how it is pooled, frozen and projected."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_serializer, model_validator

from .base import SpecBase
from .peft import LoraSpec

Modality = Literal["text", "image", "audio"]
Pooling = Literal["cls", "mean", "max", "eos", "pooler", "attention"]
BUILTIN_TOKENIZER = "mmzoo:wordpiece-basic"


class ProjectionSpec(SpecBase):
    """Maps pooled tower features into the shared embedding space."""

    type: Literal["linear", "mlp"] = "linear"
    dim: int | None = Field(None, gt=0, description="output width; defaults to the model's projection_dim")
    hidden_dim: int | None = Field(None, gt=0, description="mlp hidden width; defaults to the output width")
    bias: bool = False


class TowerSourceSpec(SpecBase):
    """Where a tower comes from and how it is pooled: an HF model given by id/path (``model``) or by an inline
    config (``config``). Shared by the model's encoders and the distillation fusion's frozen teachers."""

    model: str | None = Field(None, description="HF Hub id or local folder of the tower")
    config: dict[str, Any] | None = Field(None, description="inline HF config with its `model_type`")
    pretrained: bool = Field(False, description="load the tower's weights from `model`")
    pooling: Pooling = "cls"

    def _label(self) -> str:
        """How errors name this tower."""
        return "a tower"

    @field_validator("config")
    @classmethod
    def _config_has_model_type(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and not value.get("model_type"):
            raise ValueError(
                "an inline tower config needs a `model_type` (e.g. bert, vit, clip_text_model); "
                "add `model_type:` to the config"
            )
        return value

    @model_validator(mode="after")
    def _has_a_source(self):
        if self.model is None and self.config is None:
            raise ValueError(f"{self._label()} needs `model:` (HF id or path) or `config:` (inline HF config)")
        if self.pretrained and self.model is None:
            raise ValueError(
                f"{self._label()}: pretrained: true needs `model:` to load weights from (got only `config:`); "
                "set `model:` or use pretrained: false"
            )
        return self


class EncoderSpec(TowerSourceSpec):
    """One modality tower: its source and pooling (:class:`TowerSourceSpec`), freezing, adapters, projection."""

    modality: Modality
    freeze: bool | list[str] = Field(False, description="true, or fnmatch patterns of parameter names to freeze")
    peft: LoraSpec | None = Field(None, description="LoRA adapters on the tower (its own weights then stay frozen)")
    projection: ProjectionSpec = ProjectionSpec()
    tokenizer: str | None = Field(None, description="text only: tokenizer id/path; defaults to `model`")
    image_mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    image_std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    feature_extractor: dict[str, Any] | None = Field(
        None, description="audio only: keyword arguments of the tower family's transformers feature extractor "
        "(e.g. sampling_rate, hop_length), on top of the values sized from the tower config")

    def _label(self) -> str:
        return f"{self.modality} encoder"

    @model_serializer(mode="wrap")
    def _modality_first(self, handler):
        """Dumps list ``modality`` first, as specs are written (the shared source fields come first otherwise)."""
        data = handler(self)
        return {"modality": data.pop("modality"), **data} if isinstance(data, dict) and "modality" in data else data

    @model_validator(mode="after")
    def _source_rules(self) -> EncoderSpec:
        if self.modality != "text" and self.tokenizer is not None:
            raise ValueError(f"`tokenizer` applies to text encoders only (this one is {self.modality}); remove it")
        if self.peft is not None and isinstance(self.freeze, list):
            raise ValueError(
                f"peft (LoRA) already freezes every weight of the {self.modality} tower and trains only the adapters; "
                f"freeze patterns {self.freeze} have no effect there: remove freeze (or the peft block)"
            )
        if self.modality != "text" and self.pooling == "eos":
            raise ValueError(f"pooling `eos` means the last text token; for {self.modality} towers use cls, mean, max, "
                             "pooler or attention")
        if self.modality != "audio" and self.feature_extractor is not None:
            raise ValueError(f"`feature_extractor` applies to audio encoders only (this one is {self.modality}); "
                             "remove it")
        return self

    @property
    def resolved_tokenizer(self) -> str:
        return self.tokenizer or self.model or BUILTIN_TOKENIZER
