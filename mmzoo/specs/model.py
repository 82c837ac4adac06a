"""ModelSpec: the single source of truth for a model — towers, projection, fusion and objectives."""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field, model_validator

from .base import SPEC_VERSION, SpecBase
from .encoders import EncoderSpec
from .fusion import FUSION_SPECS, DualEncoderFusionSpec, FusionSpecBase
from .objectives import OBJECTIVE_SPECS, ObjectiveSpecBase


def tagged_union(registry) -> object:
    """A pydantic discriminated union (on `type`) of every spec class in ``registry``."""
    members = tuple(cls for _, cls in registry.items())
    return Annotated[Union[members], Field(discriminator="type")]  # noqa: UP007 (runtime tuple)


FusionSpec = tagged_union(FUSION_SPECS)
ObjectiveSpec = tagged_union(OBJECTIVE_SPECS)


class ModelSpec(SpecBase):
    """A multimodal model: one encoder per modality, a fusion, and weighted alignment objectives."""

    spec_version: int = SPEC_VERSION
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="model name (a Hub-safe slug)")
    description: str = ""
    projection_dim: int = Field(512, gt=0, description="width of the shared embedding space")
    encoders: list[EncoderSpec] = Field(min_length=2)
    fusion: FusionSpec = DualEncoderFusionSpec()  # type: ignore[valid-type]
    objectives: list[ObjectiveSpec] = Field(min_length=1)  # type: ignore[valid-type]

    # -- accessors -------------------------------------------------------------------------------------------
    def encoder(self, modality: str) -> EncoderSpec:
        return next(e for e in self.encoders if e.modality == modality)

    def objective(self, type_: str) -> ObjectiveSpecBase | None:
        return next((o for o in self.objectives if o.type == type_), None)

    def projection_dim_of(self, modality: str) -> int:
        return self.encoder(modality).projection.dim or self.projection_dim

    @property
    def scores_pairs(self) -> bool:
        """True when an objective gives image-text similarity logits (retrieval, zero-shot)."""
        return any(o.scores_pairs for o in self.objectives)

    @property
    def pair_scores(self) -> str | None:
        """How the model's pair logits become probabilities: "sigmoid" when every pair-scoring objective scores
        by sigmoid, "softmax" when one scores by softmax, None when none scores pairs."""
        kinds = {o.pair_scores for o in self.objectives if o.scores_pairs}
        return None if not kinds else "sigmoid" if kinds == {"sigmoid"} else "softmax"

    @property
    def matches_pairs(self) -> bool:
        """True when an objective scores given (image, text) pairs as matches (``score_pairs``)."""
        return any(o.matches_pairs for o in self.objectives)

    @property
    def generates_text(self) -> bool:
        """True when an objective trains a text decoder conditioned on the image (``generate()``)."""
        return any(o.generates_text for o in self.objectives)

    @property
    def trains_projections(self) -> bool:
        """True when the fusion or an objective reads the projected embeddings with a gradient."""
        return self.fusion.trains_projections or any(o.trains_projections for o in self.objectives)

    # -- cross-field rules -----------------------------------------------------------------------------------
    @model_validator(mode="after")
    def _one_encoder_per_modality(self) -> ModelSpec:
        seen: dict[str, int] = {}
        for i, enc in enumerate(self.encoders):
            if enc.modality in seen:
                raise ValueError(
                    f"encoders.{i}: a second {enc.modality} encoder (first at encoders.{seen[enc.modality]}); "
                    "each modality has exactly one encoder — remove one"
                )
            seen[enc.modality] = i
        if "text" not in seen or not ({"image", "audio"} & set(seen)):
            missing = ["text"] if "text" not in seen else ["image or audio"]
            raise ValueError(
                f"encoders: need one text encoder and one image or audio encoder, missing {missing} "
                f"(got {sorted(seen)}); add an entry with modality: {'text' if 'text' not in seen else 'image'}"
            )
        return self

    @model_validator(mode="after")
    def _audio_rules(self) -> ModelSpec:
        """Audio towers align with text (and image) in a shared space: dual_encoder with pair-scoring objectives."""
        if not any(e.modality == "audio" for e in self.encoders):
            return self
        if self.fusion.type != "dual_encoder":
            raise ValueError(
                f"fusion.type {self.fusion.type!r}: models with an audio tower are dual encoders (CLAP-style); "
                "set fusion.type: dual_encoder"
            )
        for i, obj in enumerate(self.objectives):
            if not obj.scores_pairs:
                raise ValueError(
                    f"objectives.{i}: objective {obj.type!r} does not apply to audio models; use contrastive or "
                    "sigmoid (they align audio with text, and with images when the spec has both)"
                )
        return self

    @model_validator(mode="after")
    def _projection_dims_match(self) -> ModelSpec:
        dims = {e.modality: self.projection_dim_of(e.modality) for e in self.encoders}
        if len(set(dims.values())) > 1:
            widths = ", ".join(f"{m} {d}" for m, d in dims.items())
            raise ValueError(
                f"encoders.*.projection.dim: all towers must project to the same width to be compared "
                f"({widths}); set them to one value or drop them to use projection_dim ({self.projection_dim})"
            )
        return self

    @model_validator(mode="after")
    def _objectives_fit_fusion(self) -> ModelSpec:
        fusion: FusionSpecBase = self.fusion
        types = [o.type for o in self.objectives]
        for i, obj in enumerate(self.objectives):
            if types.index(obj.type) != i:
                raise ValueError(
                    f"objectives.{i}: objective {obj.type!r} appears twice; keep one entry and set its weight"
                )
            lacking = obj.requires - fusion.provides
            if lacking:
                serving = [t for t, cls in FUSION_SPECS.items() if obj.requires <= cls.provides]
                raise ValueError(
                    f"objectives.{i}: objective {obj.type!r} needs a fusion that provides {sorted(lacking)}, "
                    f"but fusion.type {fusion.type!r} does not; use fusion.type one of {serving} "
                    f"or remove the {obj.type!r} objective"
                )
        if fusion.needs_objective and fusion.needs_objective not in types:
            raise ValueError(
                f"fusion.type {fusion.type!r} adds modules that only the {fusion.needs_objective!r} objective "
                f"trains (objectives seen: {types}); add `- type: {fusion.needs_objective}` to objectives"
            )
        return self
