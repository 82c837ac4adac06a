"""Fusion specs: how the two modalities interact. One spec class per `type:` tag, kept in a registry.

Each class declares ``provides``: the capabilities it offers to objectives (see ``objectives.py``):
- ``pair_embedding``: a joint vector for an (image, text) pair (ITM, VQA heads);
- ``text_tokens``: text token states conditioned on the image (MLM);
- ``discriminator``: a modality discriminator behind gradient reversal (adversarial objective);
- ``teachers``: frozen teacher encoders (distillation objective).
``needs_objective`` names an objective without which the fusion's extra modules would never be trained.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from .._registry import ComponentRegistry
from .base import SpecBase
from .encoders import Pooling, TowerSourceSpec

# one entry per fusion tag: spec class (+ its declared capabilities) and, once mmzoo.fusion is imported, builder
FUSION_COMPONENTS = ComponentRegistry("fusion")
FUSION_SPECS = FUSION_COMPONENTS.specs


class FusionSpecBase(SpecBase):
    type: str
    provides: ClassVar[frozenset[str]] = frozenset()
    needs_objective: ClassVar[str | None] = None
    # it reads the towers' projected embeddings with a gradient (see ``ObjectiveSpecBase.trains_projections``)
    trains_projections: ClassVar[bool] = False


class TransformerFusionSpec(FusionSpecBase):
    """Shared knobs of fusions made of mmzoo-owned transformer layers."""

    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(4, ge=1)
    hidden_size: int | None = Field(None, gt=0, description="defaults to the text tower's width")
    intermediate_size: int | None = Field(None, gt=0, description="defaults to 4 x hidden_size")
    dropout: float = Field(0.1, ge=0, lt=1)

    @model_validator(mode="after")
    def _heads_divide_width(self):
        if self.hidden_size is not None and self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size must be divisible by num_heads (hidden_size {self.hidden_size}, num_heads "
                f"{self.num_heads}); pick num_heads among {[h for h in range(1, 17) if self.hidden_size % h == 0]}"
            )
        return self


@FUSION_SPECS.register("dual_encoder")
class DualEncoderFusionSpec(FusionSpecBase):
    """Late fusion, no joint layers (CLIP, ALIGN)."""

    type: Literal["dual_encoder"] = "dual_encoder"


@FUSION_SPECS.register("single_stream")
class SingleStreamFusionSpec(TransformerFusionSpec):
    """Text and image tokens concatenated into one shared transformer (VisualBERT, UNITER)."""

    type: Literal["single_stream"] = "single_stream"
    max_positions: int = Field(1024, gt=0, description="position embeddings over the joint sequence")
    provides: ClassVar[frozenset[str]] = frozenset({"pair_embedding", "text_tokens"})


@FUSION_SPECS.register("co_attention")
class CoAttentionFusionSpec(FusionSpecBase):
    """ViLBERT two-stream co-attentional transformer (Lu et al. 2019)."""

    type: Literal["co_attention"] = "co_attention"
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(4, ge=1)
    text_hidden_size: int | None = Field(None, gt=0, description="text stream width; defaults to the text tower's")
    image_hidden_size: int | None = Field(None, gt=0, description="image stream width; defaults to the image tower's")
    co_hidden_size: int | None = Field(None, gt=0, description="width of the co-attention; defaults to text width")
    intermediate_size: int | None = Field(None, gt=0, description="defaults to 4 x each stream's width")
    dropout: float = Field(0.1, ge=0, lt=1)
    provides: ClassVar[frozenset[str]] = frozenset({"pair_embedding", "text_tokens"})

    @model_validator(mode="after")
    def _heads_divide_widths(self):
        for key in ("text_hidden_size", "image_hidden_size", "co_hidden_size"):
            width = getattr(self, key)
            if width is not None and width % self.num_heads:
                raise ValueError(
                    f"{key} must be divisible by num_heads ({key} {width}, num_heads {self.num_heads}); "
                    f"change one of them"
                )
        return self


@FUSION_SPECS.register("cross_attention")
class CrossAttentionFusionSpec(TransformerFusionSpec):
    """Text layers that cross-attend to image tokens (ALBEF / BLIP fusion encoder)."""

    type: Literal["cross_attention"] = "cross_attention"
    provides: ClassVar[frozenset[str]] = frozenset({"pair_embedding", "text_tokens"})


@FUSION_SPECS.register("gated")
class GatedFusionSpec(FusionSpecBase):
    """Attention-weighted fusion of the pooled modality embeddings, with learned per-example weights."""

    type: Literal["gated"] = "gated"
    hidden_size: int = Field(128, gt=0, description="width of the gate's scoring MLP")
    dropout: float = Field(0.0, ge=0, lt=1)
    provides: ClassVar[frozenset[str]] = frozenset({"pair_embedding"})
    trains_projections: ClassVar[bool] = True  # gates the projected embeddings


@FUSION_SPECS.register("adversarial")
class AdversarialFusionSpec(FusionSpecBase):
    """Dual encoder plus a modality discriminator behind gradient reversal (modality-invariant space)."""

    type: Literal["adversarial"] = "adversarial"
    hidden_size: int = Field(128, gt=0)
    num_layers: int = Field(2, ge=1)
    grl_lambda: float = Field(1.0, gt=0, description="scale of the reversed gradient")
    provides: ClassVar[frozenset[str]] = frozenset({"discriminator"})
    needs_objective: ClassVar[str | None] = "adversarial"
    trains_projections: ClassVar[bool] = True  # the discriminator reads the projected embeddings


class TeacherSpec(TowerSourceSpec):
    """A frozen teacher tower for one modality (any HF model): a tower source (:class:`TowerSourceSpec`) that is
    pretrained and mean-pooled by default."""

    pretrained: bool = Field(True, description="load the teacher's weights from `model`")
    pooling: Pooling = "mean"

    def _label(self) -> str:
        return "a teacher"


@FUSION_SPECS.register("distillation")
class DistillationFusionSpec(FusionSpecBase):
    """Dual encoder whose towers are guided by frozen unimodal teachers."""

    type: Literal["distillation"] = "distillation"
    teachers: dict[Literal["text", "image"], TeacherSpec] = Field(min_length=1)
    provides: ClassVar[frozenset[str]] = frozenset({"teachers"})
    needs_objective: ClassVar[str | None] = "distillation"

    @model_validator(mode="after")
    def _frozen_pooling(self):
        for modality, teacher in self.teachers.items():
            if teacher.pooling == "attention":
                raise ValueError(
                    f"teachers.{modality}.pooling: `attention` pooling adds a learned pooler, which a frozen teacher "
                    "would keep untrained; use cls, mean, max or pooler"
                )
            if modality == "image" and teacher.pooling == "eos":
                raise ValueError(
                    "teachers.image.pooling: `eos` means the last text token; use cls, mean, max or pooler"
                )
        return self
