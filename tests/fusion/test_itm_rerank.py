"""ITM re-ranking of the contrastive top k (retrieval ``rerank_k``): what orders the candidates.

A stub model whose ITM probabilities and contrastive logits are set by hand: ``itm`` orders by the ITM probability
alone (ALBEF); ``itm+contrastive`` (the default) by ITM log-odds + contrastive logit (BLIP's evaluation), so a
confident contrastive ranking is not overturned by a weakly wrong ITM head, and a confident ITM head still wins.
"""

from __future__ import annotations

import math

import pytest
import torch

from mmzoo.eval.retrieval import retrieval_ranks
from mmzoo.eval.tasks.retrieval import itm_rerank


class StubProcessor:
    def __call__(self, text=None, images=None, return_tensors="pt", padding=False):
        if text is not None:  # a text's "token" is its index, so the stub model knows which text it scores
            return {"input_ids": torch.tensor([[int(t)] for t in text]),
                    "attention_mask": torch.ones(len(text), 1, dtype=torch.long)}
        return {"pixel_values": torch.tensor([[float(i)] for i in images])}


class StubModel(torch.nn.Module):
    def __init__(self, match: torch.Tensor, scale: float) -> None:
        super().__init__()
        self.match, self.scale = match, scale  # P(match) (n_images, n_texts); contrastive logit = scale * cos
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def score_pairs(self, input_ids, attention_mask, pixel_values, pairs, batch_size=256):
        images, texts = pixel_values[:, 0].long(), input_ids[:, 0]
        return self.match[images[pairs[:, 0]], texts[pairs[:, 1]]]

    def pair_logits(self, image_embeds, text_embeds):
        return self.scale * image_embeds @ text_embeds.t()


# two images, one caption each; the contrastive embeddings rank the correct image first for both captions,
# by cos 0.8 vs 0.6
IMAGES = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
TEXTS = torch.tensor([[1.0, 0.75], [0.75, 1.0]])
OWNER = torch.tensor([0, 1])


def rerank(match, scale, by):
    ranks = retrieval_ranks(IMAGES, TEXTS, OWNER, max_k=2)
    assert ranks.text_to_image.tolist() == [1, 1]  # contrastive alone is right
    embeddings = (IMAGES, TEXTS) if by == "itm+contrastive" else None
    return itm_rerank(StubModel(match, scale), StubProcessor(), ["0", "1"], ["0", "1"], OWNER, ranks, 4,
                      embeddings=embeddings)


def test_weakly_wrong_itm_does_not_overturn_a_confident_contrastive_ranking():
    weakly_wrong = torch.tensor([[0.45, 0.55], [0.55, 0.45]])  # prefers the wrong pairs, barely
    assert rerank(weakly_wrong, scale=20.0, by="itm").text_to_image.tolist() == [2, 2]
    assert rerank(weakly_wrong, scale=20.0, by="itm+contrastive").text_to_image.tolist() == [1, 1]


@pytest.mark.parametrize("by", ["itm", "itm+contrastive"])
def test_confident_itm_reorders_the_top_k(by):
    confident_wrong = torch.tensor([[1e-4, 1 - 1e-4], [1 - 1e-4, 1e-4]])  # log-odds -9.2 vs +9.2
    assert rerank(confident_wrong, scale=1.0, by=by).text_to_image.tolist() == [2, 2]
    assert math.log(1e-4 / (1 - 1e-4)) < -9  # outweighs the contrastive margin 1.0 * (0.8 - 0.6)
