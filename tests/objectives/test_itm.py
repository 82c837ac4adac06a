"""ITM: negatives are never the positive, follow the similarity, skip duplicate texts, and are fused re-indexed."""

from __future__ import annotations

import pytest
import torch

import mmzoo.objectives.itm as itm_module
from mmzoo.errors import SpecError
from mmzoo.losses.functional import sample_hard_negatives
from mmzoo.objectives.itm import ItmObjective, duplicate_text_mask
from tests.common import images
from tests.objectives.helpers import tiny_batch, tiny_model


@pytest.fixture(scope="module")
def albef():
    torch.manual_seed(0)
    model, processor = tiny_model("cross_attention", ["contrastive", "itm"])
    return model.eval(), processor


@pytest.fixture
def drawn(monkeypatch):
    """Every index vector sample_hard_negatives returns inside the ITM objective."""
    seen = []

    def spy(similarity, generator=None, exclude_mask=None):
        out = sample_hard_negatives(similarity, generator, exclude_mask)
        seen.append(out)
        return out

    monkeypatch.setattr(itm_module, "sample_hard_negatives", spy)
    return seen


@pytest.mark.parametrize("hard", [True, False])
def test_negatives_are_never_the_positive(albef, drawn, hard, monkeypatch):
    model, processor = albef
    objective = model.objectives["itm"]
    monkeypatch.setattr(objective, "spec", objective.spec.model_copy(update={"hard_negatives": hard}))
    batch = tiny_batch(processor)
    for seed in range(15):
        torch.manual_seed(seed)
        model(**batch, return_loss=True)
    assert len(drawn) == 30  # one text per image and one image per text, per step
    rows = torch.arange(4)
    for index in drawn:
        assert (index != rows).all()
    assert len({tuple(i.tolist()) for i in drawn}) > 1  # the draws vary with the seed


def test_negative_pairs_are_fused_from_reindexed_rows(albef, drawn, monkeypatch):
    model, processor = albef
    calls = []
    forward = model.fusion.forward

    def record(text, image, inputs=None):
        calls.append((text, image, inputs))
        return forward(text, image, inputs)

    monkeypatch.setattr(model.fusion, "forward", record)
    losses = []
    monkeypatch.setattr(itm_module, "itm_loss", lambda logits, labels: losses.append((logits, labels)) or
                        torch.nn.functional.cross_entropy(logits, labels))
    torch.manual_seed(0)
    model(**tiny_batch(processor), return_loss=True)
    (pos_text, pos_image, pos_inputs), (neg_text, neg_image, neg_inputs) = calls
    text_for_image, image_for_text = drawn
    rows = torch.arange(4)
    text_index, image_index = torch.cat([text_for_image, rows]), torch.cat([rows, image_for_text])
    assert torch.equal(neg_text.tokens, pos_text.tokens[text_index])
    assert torch.equal(neg_text.mask, pos_text.mask[text_index])
    assert torch.equal(neg_image.tokens, pos_image.tokens[image_index])
    assert torch.equal(neg_inputs["input_ids"], pos_inputs["input_ids"][text_index])
    assert torch.equal(neg_inputs["pixel_values"], pos_inputs["pixel_values"][image_index])
    assert (text_index != image_index).all()  # every fused negative pairs a text with another image
    logits, labels = losses[0]
    assert logits.shape == (12, 2) and labels.tolist() == [1] * 4 + [0] * 8


def test_hard_negatives_follow_the_similarity(albef, drawn, monkeypatch):
    model, processor = albef
    size = 4
    peaked = torch.full((size, size), -50.0)
    peaked[torch.arange(size), (torch.arange(size) + 1) % size] = 50.0  # image i looks most like text i+1
    monkeypatch.setattr(model, "pair_logits", lambda image_embeds, text_embeds: peaked)
    objective = model.objectives["itm"]
    monkeypatch.setattr(objective, "spec", objective.spec.model_copy(update={"random_negatives": 0.0}))
    batch = tiny_batch(processor)
    for seed in range(5):
        torch.manual_seed(seed)
        model(**batch, return_loss=True)
    rows = torch.arange(size)
    for text_for_image, image_for_text in zip(drawn[::2], drawn[1::2]):
        assert torch.equal(text_for_image, (rows + 1) % size)
        assert torch.equal(image_for_text, (rows - 1) % size)
    # uniform sampling ignores the similarity
    monkeypatch.setattr(objective, "spec", objective.spec.model_copy(update={"hard_negatives": False}))
    drawn.clear()
    for seed in range(10):
        torch.manual_seed(seed)
        model(**batch, return_loss=True)
    assert any(not torch.equal(t, (rows + 1) % size) for t in drawn[::2])


@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_random_negatives_mix_uniform_draws_into_the_hard_ones(albef, drawn, monkeypatch, fraction):
    model, processor = albef
    size = 4
    peaked = torch.full((size, size), -50.0)
    peaked[torch.arange(size), (torch.arange(size) + 1) % size] = 50.0  # the hard negative of row i is i+1
    monkeypatch.setattr(model, "pair_logits", lambda image_embeds, text_embeds: peaked)
    objective = model.objectives["itm"]
    assert objective.spec.random_negatives == 0.5  # the default (a curriculum; see ItmObjective)
    monkeypatch.setattr(objective, "spec", objective.spec.model_copy(update={"random_negatives": fraction}))
    batch = tiny_batch(processor)
    model.train()  # eval-mode draws are seeded by a constant (deterministic eval loss): one draw 60 times
    try:
        for seed in range(60):
            torch.manual_seed(seed)
            model(**batch, return_loss=True)
    finally:
        model.eval()
    rows = torch.arange(size)
    hard = torch.stack([t == (rows + 1) % size for t in drawn[::2]]).float().mean().item()
    # a uniform draw hits the hard negative 1/3 of the time: P(hard) = (1 - f) + f / 3
    expected = (1 - fraction) + fraction / 3
    assert abs(hard - expected) < 0.1, (fraction, hard, expected)


def test_match_probabilities_are_corrected_to_a_balanced_prior(albef):
    model, processor = albef
    batch = tiny_batch(processor)
    with torch.no_grad():
        text = model.encode_text(batch["input_ids"], batch["attention_mask"])
        image = model.encode_image(batch["pixel_values"])
        rows = torch.arange(4)
        objective = model.objectives["itm"]
        raw = objective.head(model.fusion(text, image, {}).pair_embeds)
        scores = model.score_pairs(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                   pixel_values=batch["pixel_values"], pairs=torch.stack([rows, rows], 1))
    # trained at 1 positive : 2 negatives, so the balanced-prior log-odds are the head's plus log 2
    expected = torch.sigmoid(raw[:, 1] - raw[:, 0] + torch.log(torch.tensor(2.0)))
    torch.testing.assert_close(scores, expected)


def test_duplicate_texts_are_not_negatives(albef, drawn):
    model, processor = albef
    texts = ["a red circle", "a red circle", "a blue square", "two dogs"]
    batch = dict(processor(text=texts, images=images(4)))
    for seed in range(15):
        torch.manual_seed(seed)
        model(**batch, return_loss=True)
    for index in drawn:
        assert index[0] != 1 and index[1] != 0


def test_duplicate_text_mask():
    ids = torch.tensor([[2, 5, 3, 0], [2, 5, 3, 0], [2, 6, 7, 3]])
    mask = (ids != 0).long()
    same = duplicate_text_mask(ids, mask)
    assert same.tolist() == [[False, True, False], [True, False, False], [False, False, False]]
    # every text identical: excluding would leave no negative, so nothing is excluded
    assert duplicate_text_mask(ids[:2], mask[:2]) is None
    assert duplicate_text_mask(ids[1:], mask[1:]) is None  # no duplicates at all


def test_itm_reports_accuracy(albef, monkeypatch):
    from mmzoo.objectives import ObjectiveContext

    model, processor = albef
    batch = tiny_batch(processor)
    seen = []
    monkeypatch.setattr(itm_module, "itm_loss", lambda logits, labels: seen.append((logits, labels)) or
                        torch.nn.functional.cross_entropy(logits, labels))
    text = model.encode_text(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    image = model.encode_image(batch["pixel_values"])
    torch.manual_seed(0)
    out = model.objectives["itm"](ObjectiveContext(model, text, image, batch))
    logits, labels = seen[0]
    assert out.loss == torch.nn.functional.cross_entropy(logits, labels)
    assert out.extras["itm_accuracy"] == (logits.argmax(-1) == labels).float().mean()
    assert out.logits_per_image is None  # ITM does not score retrieval


def test_itm_needs_a_pair_embedding():
    from types import SimpleNamespace

    from mmzoo.specs.objectives import ItmSpec

    with pytest.raises(SpecError, match="pair_embedding"):
        ItmObjective(ItmSpec(), None, SimpleNamespace(pair_dim=None))


# --- hard negative captions from the data (objectives.itm.caption_negatives) ---------------------------------------
@pytest.fixture(scope="module")
def albef_caption_negatives():
    torch.manual_seed(0)
    model, processor = tiny_model("cross_attention", ["contrastive", {"type": "itm", "caption_negatives": True}])
    return model, processor


def with_negative_captions(processor, batch):
    from tests.common import CAPTIONS

    negatives = processor(text=CAPTIONS[1:] + CAPTIONS[:1], padding=True, return_tensors="pt")
    return {**batch, "negative_input_ids": negatives["input_ids"],
            "negative_attention_mask": negatives["attention_mask"]}


def test_caption_negatives_are_scored_as_a_fourth_pair_per_image(albef_caption_negatives, monkeypatch):
    model, processor = albef_caption_negatives
    objective = model.objectives["itm"]
    assert objective.negatives_per_positive == 3
    batch = with_negative_captions(processor, tiny_batch(processor))
    seen = {}
    head = objective.head.forward

    def record(pairs):
        seen["pairs"] = pairs.shape[0]
        return head(pairs)

    encoded = []
    encode_text = model.encode_text

    def record_text(input_ids, *args, **kwargs):
        encoded.append(input_ids)
        return encode_text(input_ids, *args, **kwargs)

    monkeypatch.setattr(objective.head, "forward", record)
    monkeypatch.setattr(model, "encode_text", record_text)
    model.train()
    out = model(**batch, return_loss=True)
    assert seen["pairs"] == 4 * 4  # positives, text-per-image, image-per-text, caption negatives
    assert any(torch.equal(ids, batch["negative_input_ids"]) for ids in encoded)  # the data's captions, encoded
    out.loss.backward()
    assert torch.isfinite(out.loss_terms["itm"])


def test_caption_negatives_missing_from_a_training_batch_name_the_fix(albef_caption_negatives):
    model, processor = albef_caption_negatives
    model.train()
    with pytest.raises(SpecError, match=r"caption_negatives.*negative_captions.*params.negative_captions: true"):
        model(**tiny_batch(processor), return_loss=True)
    model.eval()  # evaluation data without negative captions: the in-batch negatives only
    assert torch.isfinite(model(**tiny_batch(processor), return_loss=True).loss_terms["itm"])


def test_caption_negatives_move_the_balanced_prior_to_one_in_four(albef_caption_negatives):
    model, processor = albef_caption_negatives
    batch = tiny_batch(processor)
    text = model.encode_text(batch["input_ids"], batch["attention_mask"])
    image = model.encode_image(batch["pixel_values"])
    rows = torch.arange(4)
    objective = model.objectives["itm"]
    corrected = objective.match_logits(model, text, image, rows, rows)
    fused = model.fusion(text, image, {})
    raw = objective.head(fused.pair_embeds)
    assert torch.allclose(corrected[:, 1] - corrected[:, 0], raw[:, 1] - raw[:, 0] + torch.log(torch.tensor(3.0)),
                          atol=1e-5)
