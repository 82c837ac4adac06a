"""Tests for mmzoo.eval.retrieval: exact ranks, chunked == full, bounded memory, sanity of perfect/shuffled models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from mmzoo.eval.retrieval import (
    RetrievalRanks,
    chunked_topk_similarity,
    retrieval_ranks,
    retrieval_ranks_full,
)

# Hand-checked fixture, similarity = image . text (normalize=False):
#         T0 T1 T2 T3
#   I0  [  1  1  0  1 ]      captions: T0 -> I0, T1 -> I1, T2 -> I1, T3 -> I2
#   I1  [  0  0  1  1 ]
#   I2  [  1  1  1  2 ]
IMAGES = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
TEXTS = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
TEXT_TO_IMAGE = torch.tensor([0, 1, 1, 2])
# I0: best caption 1, ties with T1 and T3 -> pessimistic 3, optimistic 1. I1: best caption T2 = 1, ties T3 -> 2 / 1.
# T0: I2 ties -> 2 / 1. T1: correct 0, I0 and I2 higher -> 3 / 3. T2: I2 ties -> 2 / 1. T3: 1 / 1.
EXPECTED = {
    "pessimistic": ([3, 2, 1], [2, 3, 2, 1]),
    "optimistic": ([1, 1, 1], [1, 3, 1, 1]),
}


def _integer_fixture(num_images=23, dim=4, seed=0):
    """Small-integer embeddings (exact dot products, many ties) with 1-3 captions per image, shuffled order."""
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(-2, 3, (num_images, dim), generator=gen).float()
    counts = torch.randint(1, 4, (num_images,), generator=gen)
    text_to_image = torch.arange(num_images).repeat_interleave(counts)
    text_to_image = text_to_image[torch.randperm(len(text_to_image), generator=gen)]
    texts = images[text_to_image] + torch.randint(-1, 2, (len(text_to_image), dim), generator=gen).float()
    return images, texts, text_to_image


class MaxTensorSize(TorchDispatchMode):
    """Records the largest tensor produced by any op."""

    def __init__(self):
        super().__init__()
        self.max_numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        sizes = [t.numel() for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        self.max_numel = max([self.max_numel, *sizes])
        return out


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
@pytest.mark.parametrize("chunk_size", [1, 2, 10])
def test_hand_checked_ranks(ties, chunk_size):
    for ranks in (
        retrieval_ranks(IMAGES, TEXTS, TEXT_TO_IMAGE, chunk_size, ties=ties, normalize=False),
        retrieval_ranks_full(IMAGES, TEXTS, TEXT_TO_IMAGE, ties=ties, normalize=False),
    ):
        assert ranks.image_to_text.tolist() == EXPECTED[ties][0]
        assert ranks.text_to_image.tolist() == EXPECTED[ties][1]


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
@pytest.mark.parametrize("chunk_size", [1, 3, 5, 23, 100])
def test_chunked_equals_full_with_ties(ties, chunk_size):
    images, texts, text_to_image = _integer_fixture()
    chunked = retrieval_ranks(images, texts, text_to_image, chunk_size, max_k=4, ties=ties, normalize=False)
    full = retrieval_ranks_full(images, texts, text_to_image, max_k=4, ties=ties, normalize=False)
    assert torch.equal(chunked.image_to_text, full.image_to_text)
    assert torch.equal(chunked.text_to_image, full.text_to_image)
    # Top-k: the order among tied scores is unspecified, so compare the retrieved scores.
    scores = images @ texts.T
    expected_i2t = scores.topk(4, dim=1).values
    assert torch.equal(scores.gather(1, chunked.image_to_text_topk), expected_i2t)
    assert torch.equal(scores.T.gather(1, chunked.text_to_image_topk), scores.T.topk(4, dim=1).values)
    # The fixture really has ties that matter: the two rules disagree somewhere.
    other = retrieval_ranks_full(images, texts, text_to_image, ties="optimistic", normalize=False)
    if ties == "pessimistic":
        assert (full.image_to_text > other.image_to_text).any() and (full.text_to_image > other.text_to_image).any()


def test_chunked_equals_full_random_float():
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(41, 16, generator=gen)
    text_to_image = torch.arange(41).repeat_interleave(3)
    texts = images[text_to_image] + 2.0 * torch.randn(123, 16, generator=gen)
    full = retrieval_ranks_full(images, texts, text_to_image)
    for chunk_size in (7, 64):
        chunked = retrieval_ranks(images, texts, text_to_image, chunk_size)
        assert torch.equal(chunked.image_to_text, full.image_to_text)
        assert torch.equal(chunked.text_to_image, full.text_to_image)
        assert torch.equal(chunked.image_to_text_topk, full.image_to_text_topk)
        assert torch.equal(chunked.text_to_image_topk, full.text_to_image_topk)
    assert 1 < full.image_to_text.float().mean() < 41  # neither trivial nor hopeless


def test_perfect_model_ranks_one():
    gen = torch.Generator().manual_seed(2)
    images = torch.randn(50, 32, generator=gen)
    text_to_image = torch.arange(50).repeat_interleave(2)[torch.randperm(100, generator=gen)]
    ranks = retrieval_ranks(images, images[text_to_image].clone(), text_to_image, chunk_size=7)
    assert ranks.image_to_text.tolist() == [1] * 50
    assert ranks.text_to_image.tolist() == [1] * 100
    # the top-1 text of each image is one of its captions, and the top-1 image of each text is its image
    assert (text_to_image[ranks.image_to_text_topk[:, 0]] == torch.arange(50)).all()
    assert torch.equal(ranks.text_to_image_topk[:, 0], text_to_image)


def test_shuffled_pairs_score_near_chance():
    gen = torch.Generator().manual_seed(3)
    n = 400
    embeds = torch.randn(n, 32, generator=gen)
    shuffled = torch.randperm(n, generator=gen)  # captions paired with the wrong images
    ranks = retrieval_ranks(embeds, embeds[shuffled], torch.arange(n), chunk_size=64)
    for direction in (ranks.image_to_text, ranks.text_to_image):
        # uniform ranks: mean (n + 1) / 2 = 200.5 (std of the mean ~5.8), recall@10 = 0.025 (std ~0.008)
        assert abs(direction.float().mean().item() - (n + 1) / 2) < 30
        assert (direction <= 10).float().mean().item() < 0.08


def test_collapsed_model_is_not_rewarded():
    images, texts = torch.ones(5, 3), torch.ones(10, 3)
    text_to_image = torch.arange(5).repeat_interleave(2)
    pessimistic = retrieval_ranks(images, texts, text_to_image, 2)
    assert pessimistic.image_to_text.tolist() == [9] * 5  # 8 other captions tie, + 1
    assert pessimistic.text_to_image.tolist() == [5] * 10
    optimistic = retrieval_ranks(images, texts, text_to_image, 2, ties="optimistic")
    assert optimistic.image_to_text.tolist() == [1] * 5


def test_chunked_memory_is_chunk_times_gallery():
    images, texts, text_to_image = _integer_fixture(num_images=60, dim=8)
    num_texts = len(text_to_image)
    with MaxTensorSize() as chunked:
        retrieval_ranks(images, texts, text_to_image, chunk_size=8, max_k=5)
    with MaxTensorSize() as full:
        retrieval_ranks_full(images, texts, text_to_image, max_k=5)
    assert chunked.max_numel <= 8 * num_texts
    assert full.max_numel >= 60 * num_texts  # the probe does see the full matrix


def test_half_precision_inputs_are_upcast():
    # 16*16 + 1 = 257 is not a bfloat16 number (it rounds to 256): a bfloat16 matmul would create a tie.
    embeds = torch.tensor([[16.0, 1.0], [16.0, 0.0]])
    assert (embeds.bfloat16() @ embeds.bfloat16().T)[0].tolist() == [256.0, 256.0]
    ranks = retrieval_ranks(embeds.bfloat16(), embeds.bfloat16(), torch.tensor([0, 1]), normalize=False)
    assert ranks.text_to_image[0].item() == 1


def test_metric_inputs_layout():
    ranks = RetrievalRanks(torch.tensor([1, 3]), torch.tensor([2, 1, 1]))
    assert ranks.metric_inputs() == {
        "ranks": [1, 3, 2, 1, 1],
        "directions": ["image_to_text"] * 2 + ["text_to_image"] * 3,
    }
    assert retrieval_ranks(IMAGES, TEXTS, TEXT_TO_IMAGE, max_k=0).image_to_text_topk is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"text_to_image": torch.tensor([0, 0, 1, 1])}, r"1 image\(s\) have no caption .*\[2\]"),
        ({"text_to_image": torch.tensor([0, 1, 2, 3])}, r"must lie in \[0, 3\)"),
        ({"text_to_image": [0, 1, 1, 2]}, "must be a LongTensor of shape \\(4,\\)"),
        ({"text_to_image": torch.tensor([0.0, 1, 1, 2])}, "must be a LongTensor"),
        ({"text_embeds": torch.ones(4, 5)}, "must share the embedding size"),
        ({"image_embeds": torch.ones(3)}, "image_embeds must be a 2-D tensor"),
        ({"image_embeds": torch.full((3, 2), float("nan"))}, "image_embeds contains NaN"),
        ({"ties": "random"}, "ties='random' is not one of"),
    ],
)
def test_input_errors(kwargs, match):
    args = {"image_embeds": IMAGES, "text_embeds": TEXTS, "text_to_image": TEXT_TO_IMAGE, **kwargs}
    with pytest.raises(ValueError, match=match):
        retrieval_ranks(**args)
    with pytest.raises(ValueError, match=match):
        retrieval_ranks_full(**args)


@pytest.mark.parametrize(("num_queries", "chunk_size", "k"), [(37, 5, 7), (10, 64, 3), (8, 3, 50)])
def test_chunked_topk_equals_full_topk(num_queries, chunk_size, k):
    gen = torch.Generator().manual_seed(4)
    # integer embeddings in a wide range: exact dot products whatever the summation order
    queries = torch.randint(-50, 51, (num_queries, 8), generator=gen).float()
    gallery = torch.randint(-50, 51, (29, 8), generator=gen).float()
    scores, indices = chunked_topk_similarity(queries, gallery, k, chunk_size, normalize=False)
    full = queries @ gallery.T
    expected = full.topk(min(k, 29), dim=1)
    assert scores.shape == indices.shape == (num_queries, min(k, 29))
    assert torch.equal(scores, expected.values)
    assert torch.equal(full.gather(1, indices), scores)  # each index really has its score
    assert (indices.sort(1).values.diff(dim=1) > 0).all()  # no gallery item twice


def test_chunked_topk_normalizes_by_default():
    queries = torch.tensor([[10.0, 0.0]])
    gallery = torch.tensor([[1.0, 1.0], [0.5, 0.0]])
    scores, indices = chunked_topk_similarity(queries, gallery, k=1, chunk_size=1)
    assert indices.tolist() == [[1]] and scores.item() == pytest.approx(1.0)
    _, raw_indices = chunked_topk_similarity(queries, gallery, k=1, chunk_size=1, normalize=False)
    assert raw_indices.tolist() == [[0]]


# ------------------------------------------------------------------ one pass == the former two-pass ranks
def _tie_fixtures():
    """Adversarial cases: many exact ties (small integers), duplicated images and captions, collapsed
    embeddings, captions in shuffled order, several captions per image, images with a caption scoring far
    below the best one."""
    yield "integer", *_integer_fixture(num_images=37, dim=3, seed=4)
    yield "integer-2d", *_integer_fixture(num_images=50, dim=2, seed=5)
    gen = torch.Generator().manual_seed(6)
    base = torch.randn(6, 8, generator=gen)
    images = base[torch.randint(0, 6, (40,), generator=gen)]  # duplicated images (float, normalised)
    text_to_image = torch.arange(40).repeat_interleave(2)[torch.randperm(80, generator=gen)]
    texts = base[torch.randint(0, 6, (80,), generator=gen)]
    yield "duplicates", images, texts, text_to_image
    yield "collapsed", torch.full((30, 5), 0.3), torch.full((45, 5), 0.3), torch.arange(45) % 30
    images = torch.randint(-1, 2, (29, 4), generator=gen).float()
    text_to_image = torch.arange(29).repeat_interleave(4)
    texts = torch.cat([images, -images, images, torch.zeros_like(images)])[torch.argsort(text_to_image)]
    yield "far captions", images, texts, text_to_image


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
@pytest.mark.parametrize("case", list(_tie_fixtures()), ids=lambda case: case[0])
def test_one_pass_equals_two_pass_oracle(case, ties):
    from ._two_pass_ranks import two_pass_ranks

    _, images, texts, text_to_image = case
    normalize = case[0] in ("duplicates", "collapsed")
    oracle = two_pass_ranks(images, texts, text_to_image, chunk_size=7, max_k=3, ties=ties, normalize=normalize)
    full = retrieval_ranks_full(images, texts, text_to_image, ties=ties, normalize=normalize)
    assert torch.equal(oracle.image_to_text, full.image_to_text) and torch.equal(oracle.text_to_image, full.text_to_image)
    geometries = [(None, None), (1, None), (5, None), (None, 64), (None, 8 * 50), (3, 8 * 7), (1000, None)]
    if case[0] == "duplicates":
        # Float scores: MKL rounds a dot product differently with the operands' alignment, so single-row (GEMV-like)
        # blocks can give two copies of one image scores 1 ulp apart. Exact ties (integer-valued, collapsed
        # embeddings) are checked at every geometry; float duplicates at block geometries of several rows.
        geometries = [g for g in geometries if g[0] not in (1, 5)]
    for chunk_size, budget in geometries:
        ranks = retrieval_ranks(images, texts, text_to_image, chunk_size, max_k=3, ties=ties, normalize=normalize,
                                memory_budget=budget)
        assert torch.equal(ranks.image_to_text, oracle.image_to_text), (chunk_size, budget)
        assert torch.equal(ranks.text_to_image, oracle.text_to_image), (chunk_size, budget)
        scores = F.normalize(images, dim=-1) @ F.normalize(texts, dim=-1).T if normalize else images @ texts.T
        assert torch.equal(scores.gather(1, ranks.image_to_text_topk), scores.topk(3, dim=1).values)
        assert torch.equal(scores.T.gather(1, ranks.text_to_image_topk), scores.T.topk(3, dim=1).values)


def test_collapsed_normalised_embeddings_rank_at_chance_level():
    ranks = retrieval_ranks(torch.full((30, 5), 0.3), torch.full((45, 5), 0.3), torch.arange(45) % 30)
    assert ranks.image_to_text.tolist() == [45 - 2 + 1 if i < 15 else 45 - 1 + 1 for i in range(30)]
    assert ranks.text_to_image.tolist() == [30] * 45


@pytest.mark.parametrize("budget", [8, 8 * 10, 8 * 1000])
def test_memory_budget_bounds_the_block(budget):
    images, texts, text_to_image = _integer_fixture(num_images=60, dim=8)
    with MaxTensorSize() as probe:
        ranks = retrieval_ranks(images, texts, text_to_image, max_k=0, memory_budget=budget, normalize=False)
    # nothing larger than the inputs (their finiteness check) or one block of budget / 8 scores
    assert probe.max_numel <= max(budget // 8, texts.numel())
    assert torch.equal(ranks.text_to_image, retrieval_ranks_full(images, texts, text_to_image, normalize=False).text_to_image)
