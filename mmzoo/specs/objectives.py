"""Alignment objective specs, one per `type:` tag, each with a loss `weight`.

``requires`` lists the fusion capabilities an objective needs (see ``fusion.py``); the model spec rejects
combinations that cannot work, naming the rule and a fix.

Temperatures, one convention for every objective: a spec gives the temperature tau itself, logits =
cosine similarity / tau (plus a bias for sigmoid). A learned tau is set by ``init_temperature`` (and bounded
below by ``min_temperature``) and stored as the ``logit_scale`` parameter = log(1 / tau), the CLIP / SigLIP
checkpoint layout; a fixed one is ``temperature``. Training logs the current tau as ``<objective>/temperature``
and the model card reports the learned one. The older keys ``max_logit_scale`` (contrastive, a cap on 1 / tau)
and ``init_logit_scale`` (sigmoid, log(1 / tau)) still load, converted, with a FutureWarning.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import Field

from .._registry import ComponentRegistry
from .base import Renamed, SpecBase

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
    # its loss reaches the towers' projections (reads the projected embeddings with a gradient); when no component
    # of a spec does, the model freezes the projections (see ``MmzooModel.unreached_modules``)
    trains_projections: ClassVar[bool] = False
    # it scores a given (image, text) pair as a match (``model.score_pairs``; the card's matching head)
    matches_pairs: ClassVar[bool] = False
    # it trains a text decoder that generates from an image (``generate()``; the card's captioning head)
    generates_text: ClassVar[bool] = False

    def learned_values(self, scalars: dict[str, float]) -> dict[str, float]:
        """What a trained model learned, for its card: ``{"temperature": tau, "bias": b}`` from this objective's
        learned scalar parameters by name (``{"logit_scale": log(1 / tau), ...}``); empty if it learns none."""
        return {}


def temperature_of(logit_scale: float) -> float:
    """tau from a stored ``logit_scale`` = log(1 / tau)."""
    return math.exp(-logit_scale)


@OBJECTIVE_SPECS.register("contrastive")
class ContrastiveSpec(ObjectiveSpecBase):
    """Symmetric InfoNCE with a learnable temperature (CLIP, Radford et al. 2021)."""

    type: Literal["contrastive"] = "contrastive"
    init_temperature: float = Field(0.07, gt=0, le=1, description="initial temperature tau (logits = cosine / tau)")
    learnable_temperature: bool = Field(True, description="learn tau (false keeps init_temperature)")
    min_temperature: float = Field(
        0.01, gt=0, lt=1, description="lower bound of the learned tau (CLIP's cap of 100 on 1 / tau)"
    )
    renamed_keys: ClassVar[dict[str, Renamed]] = {
        "max_logit_scale": Renamed("min_temperature", lambda cap: 1.0 / float(cap), "1 / max_logit_scale"),
    }
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    gather: bool = Field(True, description="use negatives from every process under DDP/FSDP")
    scores_pairs: ClassVar[bool] = True
    pair_scores: ClassVar[str | None] = "softmax"
    embeddings_only: ClassVar[bool] = True
    trains_projections: ClassVar[bool] = True

    def learned_values(self, scalars: dict[str, float]) -> dict[str, float]:
        if "logit_scale" not in scalars:
            return {}
        return {"temperature": max(temperature_of(scalars["logit_scale"]), self.min_temperature)}


@OBJECTIVE_SPECS.register("sigmoid")
class SigmoidSpec(ObjectiveSpecBase):
    """Pairwise sigmoid loss with learnable temperature and bias (SigLIP, Zhai et al. 2023; its scale t = 1 / tau)."""

    type: Literal["sigmoid"] = "sigmoid"
    init_temperature: float = Field(
        0.1, gt=0, description="initial temperature tau (logits = cosine / tau + bias; SigLIP's t = 1 / tau = 10)"
    )
    init_logit_bias: float = Field(-10.0, description="initial bias b of the logits")
    renamed_keys: ClassVar[dict[str, Renamed]] = {
        "init_logit_scale": Renamed("init_temperature", lambda log_t: math.exp(-float(log_t)),
                                    "exp(-init_logit_scale)"),
    }
    gather: bool = True
    exchange: Literal["all_gather", "ring"] = Field(
        "all_gather", description="how texts of other processes are reached: all_gather, or ring (neighbour "
        "exchange: one (n, n) block at a time, the same loss and gradients, less memory)"
    )
    scores_pairs: ClassVar[bool] = True
    pair_scores: ClassVar[str | None] = "sigmoid"
    embeddings_only: ClassVar[bool] = True
    trains_projections: ClassVar[bool] = True

    def learned_values(self, scalars: dict[str, float]) -> dict[str, float]:
        out = {"temperature": temperature_of(scalars["logit_scale"])} if "logit_scale" in scalars else {}
        return {**out, **({"bias": scalars["logit_bias"]} if "logit_bias" in scalars else {})}


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
    caption_negatives: bool = Field(
        False,
        description="also pair each image with a hard negative caption supplied by the training data (a "
        "`negative_captions` column: captions one detail away from the image's, e.g. built-in shapes with "
        "params.negative_captions: true; NegCLIP-style). In-batch negatives rarely differ in one attribute only, "
        "so without them ITM learns which objects and colours occur, not every attribute",
    )
    requires: ClassVar[frozenset[str]] = frozenset({"pair_embedding"})
    matches_pairs: ClassVar[bool] = True


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
    generates_text: ClassVar[bool] = True


@OBJECTIVE_SPECS.register("distillation")
class DistillationSpec(ObjectiveSpecBase):
    """Match the teachers: relational KL over in-batch similarities, or cosine to teacher embeddings."""

    type: Literal["distillation"] = "distillation"
    loss: Literal["kl", "cosine"] = "kl"
    temperature: float = Field(1.0, gt=0, description="fixed temperature tau of the kl similarities (cosine / tau)")
    requires: ClassVar[frozenset[str]] = frozenset({"teachers"})
    trains_projections: ClassVar[bool] = True  # the students are the projected embeddings


@OBJECTIVE_SPECS.register("adversarial")
class AdversarialSpec(ObjectiveSpecBase):
    """Modality discriminator loss; gradient reversal pushes the towers to fool it."""

    type: Literal["adversarial"] = "adversarial"
    requires: ClassVar[frozenset[str]] = frozenset({"discriminator"})
