"""Alignment objective specs, one per `type:` tag, each with a loss `weight`.

``requires`` lists the fusion capabilities an objective needs (see ``fusion.py``); the model spec rejects
combinations that cannot work, naming the rule and a fix.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import Field

from .._registry import ComponentRegistry
from .base import SpecBase

# one entry per objective tag: spec class (+ its declared capabilities) and, once mmzoo.objectives is imported,
# builder
OBJECTIVE_COMPONENTS = ComponentRegistry("objective")
OBJECTIVE_SPECS = OBJECTIVE_COMPONENTS.specs


class ObjectiveSpecBase(SpecBase):
    type: str
    weight: float = Field(1.0, gt=0, description="multiplier of this term in the total loss")
    # capabilities, declared once here and read everywhere else (never re-encoded as tag literals):
    requires: ClassVar[frozenset[str]] = frozenset()  # fusion capabilities the objective needs
    # an objective with similarity logits can serve retrieval and zero-shot classification
    scores_pairs: ClassVar[bool] = False
    # how its pair logits become probabilities: "softmax" over candidates or independent "sigmoid" scores
    pair_scores: ClassVar[str | None] = None
    # its loss reads only the two towers' projected embeddings (so gradient caching can chunk the batch)
    embeddings_only: ClassVar[bool] = False


@OBJECTIVE_SPECS.register("contrastive")
class ContrastiveSpec(ObjectiveSpecBase):
    """Symmetric InfoNCE with a learnable temperature (CLIP, Radford et al. 2021)."""

    type: Literal["contrastive"] = "contrastive"
    init_temperature: float = Field(0.07, gt=0, le=1)
    learnable_temperature: bool = True
    max_logit_scale: float = Field(100.0, gt=1, description="clamp of 1/temperature")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    gather: bool = Field(True, description="use negatives from every process under DDP/FSDP")
    scores_pairs: ClassVar[bool] = True
    pair_scores: ClassVar[str | None] = "softmax"
    embeddings_only: ClassVar[bool] = True


@OBJECTIVE_SPECS.register("sigmoid")
class SigmoidSpec(ObjectiveSpecBase):
    """Pairwise sigmoid loss with learnable scale and bias (SigLIP, Zhai et al. 2023)."""

    type: Literal["sigmoid"] = "sigmoid"
    init_logit_scale: float = Field(math.log(10.0), description="log of the initial scale t")
    init_logit_bias: float = -10.0
    gather: bool = True
    exchange: Literal["all_gather", "ring"] = Field(
        "all_gather", description="how texts of other processes are reached: all_gather, or ring (neighbour "
        "exchange: one (n, n) block at a time, the same loss and gradients, less memory)"
    )
    scores_pairs: ClassVar[bool] = True
    pair_scores: ClassVar[str | None] = "sigmoid"
    embeddings_only: ClassVar[bool] = True


@OBJECTIVE_SPECS.register("itm")
class ItmSpec(ObjectiveSpecBase):
    """Image-text matching on the fused pair embedding with in-batch hard negatives (ALBEF)."""

    type: Literal["itm"] = "itm"
    hard_negatives: bool = Field(True, description="sample negatives by similarity; false samples uniformly")
    random_negatives: float = Field(
        0.5, ge=0.0, le=1.0,
        description="fraction of the negatives drawn uniformly from the batch instead of by similarity (a "
        "curriculum: ITM leaves its class prior on the easy ones while contrastive makes the hard ones hard; "
        "0 = ALBEF's all-hard sampling)",
    )
    requires: ClassVar[frozenset[str]] = frozenset({"pair_embedding"})


@OBJECTIVE_SPECS.register("mlm")
class MlmSpec(ObjectiveSpecBase):
    """Masked language modelling conditioned on the image (VisualBERT, UNITER, ALBEF)."""

    type: Literal["mlm"] = "mlm"
    mask_probability: float = Field(0.15, gt=0, lt=1)
    requires: ClassVar[frozenset[str]] = frozenset({"text_tokens"})


@OBJECTIVE_SPECS.register("captioning")
class CaptioningSpec(ObjectiveSpecBase):
    """Causal text decoder cross-attending to image tokens (BLIP / CoCa captioner)."""

    type: Literal["captioning"] = "captioning"
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(4, ge=1)
    hidden_size: int | None = Field(None, gt=0, description="defaults to the text tower's width")
    intermediate_size: int | None = Field(None, gt=0)
    max_length: int = Field(64, gt=1, description="longest caption (positions) the decoder handles")
    dropout: float = Field(0.1, ge=0, lt=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)


@OBJECTIVE_SPECS.register("distillation")
class DistillationSpec(ObjectiveSpecBase):
    """Match the teachers: relational KL over in-batch similarities, or cosine to teacher embeddings."""

    type: Literal["distillation"] = "distillation"
    loss: Literal["kl", "cosine"] = "kl"
    temperature: float = Field(1.0, gt=0)
    requires: ClassVar[frozenset[str]] = frozenset({"teachers"})


@OBJECTIVE_SPECS.register("adversarial")
class AdversarialSpec(ObjectiveSpecBase):
    """Modality discriminator loss; gradient reversal pushes the towers to fool it."""

    type: Literal["adversarial"] = "adversarial"
    requires: ClassVar[frozenset[str]] = frozenset({"discriminator"})
