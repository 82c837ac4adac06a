"""Image-text matching with in-batch hard negatives (ALBEF, Li et al. 2021, Sec. 3.2)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..errors import SpecError
from ..fusion.layers import MlpHead
from ..losses.functional import itm_loss, sample_hard_negatives
from ._utils import generator_from_global_rng, select_inputs, select_rows
from .base import OBJECTIVES, Objective, ObjectiveContext, ObjectiveOutput


def duplicate_text_mask(input_ids: Tensor, attention_mask: Tensor | None) -> Tensor | None:
    """(B, B) bool, True where two *different* rows hold the same text: such a "negative" would be a positive.
    None when excluding them would leave some row without any negative (e.g. a batch of one caption)."""
    ids = input_ids if attention_mask is None else input_ids.masked_fill(attention_mask == 0, -1)
    same = (ids[:, None, :] == ids[None, :, :]).all(dim=-1)
    same.fill_diagonal_(False)
    if not same.any() or (same.sum(dim=1) >= same.shape[0] - 1).any():
        return None
    return same


@OBJECTIVES.register("itm")
class ItmObjective(Objective):
    """Binary matched/not-matched classification of fused (image, text) pairs.

    Every batch gives B positives (the pairs i<->i) and 2B negatives: for each image one text, and for each
    text one image, drawn from ``softmax`` of the model's detached pair logits with the positive excluded
    (``hard_negatives: false`` draws uniformly). Each row draws uniformly instead with probability
    ``random_negatives`` (default 0.5): with only hard negatives a freshly initialised ITM head never leaves its
    class prior, because contrastive learning makes the sampled negatives near-duplicates of the positive (one
    attribute apart) before the head has learnt any match feature; the easy half lets it learn one, the hard half
    then sharpens it. Rows holding the same text are never drawn as each other's negatives. Negatives are fused
    by the model's fusion; loss = cross-entropy over all 3B pairs. With ``caption_negatives`` each image is also
    paired with the batch's ``negative_input_ids`` row (a caption one detail away, from the data), 4B pairs.

    :meth:`match_logits` (what ``model.score_pairs`` reads) returns logits at a *balanced* prior: the head is
    trained on 1 positive : 2 negatives (3 with ``caption_negatives``), so ``log 2`` (``log 3``) is added to the
    match logit (Bayes' prior correction), and ``P(match) >= 0.5`` then means "more likely matched than not" on data
    with as many matches as mismatches. Rankings are unchanged.
    """

    def __init__(self, spec, dims, fusion) -> None:
        super().__init__(spec, dims, fusion)
        # one text per image and one image per text, plus the data's negative caption
        self.negatives_per_positive = 3 if spec.caption_negatives else 2
        if not getattr(fusion, "pair_dim", None):
            raise SpecError(
                f"objectives(itm): fusion {type(fusion).__name__} sets no pair_dim, so there is no pair embedding to "
                "classify; use a fusion that provides pair_embedding "
                "(single_stream, co_attention, cross_attention, gated)"
            )
        # an MLP, not ALBEF's single Linear: a gated fusion's pair embedding is a convex mix of the two
        # embeddings, and telling matched from unmatched mixes needs a non-linearity (e.g. its norm)
        self.head = MlpHead(fusion.pair_dim, fusion.pair_dim, 2)

    def match_logits(self, model, text, image, text_index: Tensor, image_index: Tensor) -> Tensor:
        """(N, 2) ITM logits of the pairs (image ``image_index[n]``, text ``text_index[n]``) of encoded ``text`` /
        ``image`` tower outputs: the pairs are fused by the model's fusion, then read by the head; the match logit is
        corrected from the training prior (1:2, or 1:3) to a balanced one (see the class docstring)."""
        fused = model.fusion(select_rows(text, text_index), select_rows(image, image_index), {})
        logits = self.head(fused.pair_embeds)
        prior = torch.tensor([0.0, math.log(self.negatives_per_positive)], device=logits.device, dtype=logits.dtype)
        return logits + prior

    def sample_negatives(self, ctx: ObjectiveContext) -> tuple[Tensor, Tensor]:
        """(text index per image, image index per text), each (B,), never the positive."""
        with torch.no_grad():
            scores = ctx.model.pair_logits(ctx.image.normalized, ctx.text.normalized).detach()
            exclude = duplicate_text_mask(ctx.inputs["input_ids"], ctx.text.mask)
            generator = generator_from_global_rng(scores.device, deterministic=not self.training)
            text_for_image = sample_hard_negatives(self.mix_uniform(scores, generator), generator, exclude)
            image_for_text = sample_hard_negatives(self.mix_uniform(scores.t(), generator), generator, exclude)
        return text_for_image, image_for_text

    def mix_uniform(self, scores: Tensor, generator: torch.Generator) -> Tensor:
        """``scores`` with the rows that draw a random negative set to 0 (a uniform draw): every row when
        ``hard_negatives`` is false, else each with probability ``random_negatives``."""
        fraction = 1.0 if not self.spec.hard_negatives else self.spec.random_negatives
        if fraction <= 0.0:
            return scores
        uniform = torch.rand(scores.shape[0], generator=generator, device=scores.device) < fraction
        return scores.masked_fill(uniform[:, None], 0.0)

    def caption_negative_pairs(self, ctx: ObjectiveContext) -> Tensor:
        """(B, pair_dim) pair embeddings of each image with its negative caption (``negative_input_ids``)."""
        input_ids = ctx.inputs.get("negative_input_ids")
        if input_ids is None:
            raise SpecError(
                "objectives.itm.caption_negatives is true but the batch has no negative_input_ids: the training data "
                "needs a `negative_captions` column (list of captions that almost describe the image; built-in "
                "shapes: data.train.params.negative_captions: true), or set caption_negatives: false"
            )
        mask = ctx.inputs.get("negative_attention_mask")
        text = ctx.model.encode_text(input_ids, mask)
        inputs = {**ctx.inputs, "input_ids": input_ids, "attention_mask": text.mask, "token_type_ids": None}
        return ctx.model.fusion(text, ctx.image, inputs).pair_embeds

    def forward(self, ctx: ObjectiveContext) -> ObjectiveOutput:
        positives = ctx.fused.pair_embeds
        batch = positives.shape[0]
        text_for_image, image_for_text = self.sample_negatives(ctx)
        rows = torch.arange(batch, device=positives.device)
        text_index = torch.cat([text_for_image, rows])
        image_index = torch.cat([rows, image_for_text])
        negatives = [ctx.model.fusion(
            select_rows(ctx.text, text_index), select_rows(ctx.image, image_index),
            select_inputs(ctx.inputs, text_index, image_index, batch),
        ).pair_embeds]
        # evaluation data may lack negative captions (the eval loss then has the in-batch negatives only)
        if self.spec.caption_negatives and (self.training or "negative_input_ids" in ctx.inputs):
            negatives.append(self.caption_negative_pairs(ctx))
        logits = self.head(torch.cat([positives, *negatives]))
        labels = torch.cat([torch.ones(batch, dtype=torch.long),
                            torch.zeros(logits.shape[0] - batch, dtype=torch.long)])
        labels = labels.to(logits.device)
        accuracy = (logits.detach().argmax(-1) == labels).float().mean()
        return ObjectiveOutput(itm_loss(logits, labels), extras={"itm_accuracy": accuracy})
