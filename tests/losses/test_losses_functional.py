"""Functional losses against hand-computed references (explicit python loops over ``math``)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmzoo.losses._distributed import gather_with_grad, world_info
from mmzoo.losses.functional import (
    adversarial_modality_loss,
    contrastive_loss,
    distillation_cosine,
    distillation_kl,
    grad_reverse,
    itm_loss,
    mask_tokens,
    sample_hard_negatives,
    sigmoid_loss,
)


def _embeds(n: int = 4, dim: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(n, dim, generator=g, dtype=torch.float64), dim=-1)
    txt = F.normalize(torch.randn(n, dim, generator=g, dtype=torch.float64), dim=-1)
    return img, txt


def _dot(a, b) -> float:
    return sum(x * y for x, y in zip(a, b))


def ref_infonce(img, txt, scale: float, eps: float = 0.0) -> float:
    img, txt, n = img.tolist(), txt.tolist(), len(img)
    sim = [[scale * _dot(img[i], txt[j]) for j in range(n)] for i in range(n)]
    total = 0.0
    for rows in (sim, [list(col) for col in zip(*sim)]):  # image->text rows, then text->image rows
        for i, row in enumerate(rows):
            lse = math.log(sum(math.exp(v) for v in row))
            target = [(1 - eps) * (j == i) + eps / n for j in range(n)]
            total += sum(q * (lse - v) for q, v in zip(target, row)) / n
    return total / 2


def ref_siglip(img, txt, scale: float, bias: float) -> float:
    img, txt, n = img.tolist(), txt.tolist(), len(img)
    total = 0.0
    for i in range(n):
        for j in range(n):
            z = 1.0 if i == j else -1.0
            total += math.log(1.0 / (1.0 + math.exp(-z * (scale * _dot(img[i], txt[j]) + bias))))
    return -total / n


def test_world_info_and_gather_are_noops_without_process_group():
    x = torch.randn(3, 2, requires_grad=True)
    assert world_info() == (0, 1)
    assert gather_with_grad(x) is x


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_contrastive_matches_formula(eps):
    img, txt = _embeds()
    loss, lpi, lpt = contrastive_loss(img, txt, 3.0, label_smoothing=eps)
    assert loss.item() == pytest.approx(ref_infonce(img, txt, 3.0, eps), abs=1e-12)
    torch.testing.assert_close(lpt, lpi.t())
    torch.testing.assert_close(lpi, 3.0 * img @ txt.t())


def test_contrastive_label_smoothing_direction():
    # Perfectly aligned pairs with a large scale: smoothing adds a penalty on a confident prediction.
    img = torch.eye(4, dtype=torch.float64)
    plain = contrastive_loss(img, img, 20.0)[0]
    smooth = contrastive_loss(img, img, 20.0, label_smoothing=0.2)[0]
    assert plain.item() < 1e-6 and smooth.item() > 0.1
    # eps=1 targets the uniform distribution, whose loss on uniform logits is exactly log N.
    uniform = contrastive_loss(img, img, 0.0, label_smoothing=1.0)[0]
    assert uniform.item() == pytest.approx(math.log(4), abs=1e-12)


def test_contrastive_gradient_matches_loop_reference():
    img, txt = _embeds(seed=1)
    img.requires_grad_(True)
    scale = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    contrastive_loss(img, txt, scale)[0].backward()
    got_img, got_scale = img.grad.clone(), scale.grad.clone()

    img2, scale2 = img.detach().clone().requires_grad_(True), scale.detach().clone().requires_grad_(True)
    n, total = 4, 0.0
    for i in range(n):  # the same formula written with scalar torch ops
        row = [scale2 * (img2[i] * txt[j]).sum() for j in range(n)]
        col = [scale2 * (img2[j] * txt[i]).sum() for j in range(n)]
        total = total - (row[i] - torch.log(sum(torch.exp(v) for v in row))) / (2 * n)
        total = total - (col[i] - torch.log(sum(torch.exp(v) for v in col))) / (2 * n)
    total.backward()
    torch.testing.assert_close(got_img, img2.grad, atol=1e-12, rtol=0)
    torch.testing.assert_close(got_scale, scale2.grad, atol=1e-12, rtol=0)


def test_sigmoid_matches_formula():
    img, txt = _embeds(n=5, dim=4, seed=2)
    loss, lpi, lpt = sigmoid_loss(img, txt, 10.0, -2.0)
    assert loss.item() == pytest.approx(ref_siglip(img, txt, 10.0, -2.0), abs=1e-12)
    torch.testing.assert_close(lpi, 10.0 * img @ txt.t() - 2.0)
    torch.testing.assert_close(lpt, lpi.t())


def test_losses_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        contrastive_loss(torch.randn(3, 4), torch.randn(2, 4), 1.0)
    with pytest.raises(ValueError, match="2-D"):
        sigmoid_loss(torch.randn(3), torch.randn(3), 1.0, 0.0)


@pytest.mark.parametrize(
    "similarity",
    [
        torch.tensor([[5.0, -3.0], [1.0, 9.0]]),  # B=2: the only negative
        torch.zeros(4, 4),  # all ties
        torch.tensor([[1.0, 2.0, 3.0]] * 3),  # duplicate rows
        torch.tensor([[0.0, float("-inf"), float("-inf")], [float("-inf")] * 3, [1.0, float("nan"), 1.0]]),
        torch.tensor([[9.0, float("inf"), 0.0], [float("inf"), float("inf"), 5.0], [0.0, 0.0, 100.0]]),
        torch.eye(3) * 1e4,  # positive dominates by far
    ],
)
def test_hard_negatives_never_return_the_positive(similarity):
    size = similarity.shape[0]
    for seed in range(100):
        idx = sample_hard_negatives(similarity, generator=torch.Generator().manual_seed(seed))
        assert idx.dtype == torch.long and idx.shape == (size,)
        assert (idx != torch.arange(size)).all(), (seed, idx)
        assert ((idx >= 0) & (idx < size)).all()


def test_hard_negatives_special_rows():
    sim = torch.tensor([[0.0, float("inf"), 3.0, float("inf")], [0.0] * 4, [0.0] * 4, [0.0] * 4])
    draws = torch.stack([sample_hard_negatives(sim, torch.Generator().manual_seed(s)) for s in range(200)])
    assert set(draws[:, 0].tolist()) == {1, 3}  # uniform among +inf entries
    sim = torch.tensor([[0.0, float("-inf"), float("-inf")], [0.0] * 3, [0.0] * 3])
    draws = torch.stack([sample_hard_negatives(sim, torch.Generator().manual_seed(s)) for s in range(200)])
    assert set(draws[:, 0].tolist()) == {1, 2}  # all -inf: uniform over the negatives


def test_hard_negatives_follow_softmax():
    # Row i puts logit a on column i+1 and 0 on the other B-2 negatives: p(i+1) = e^a / (e^a + B - 2) = 0.75.
    size = 1001
    sim = torch.zeros(size, size, dtype=torch.float64)
    sim[torch.arange(size), (torch.arange(size) + 1) % size] = math.log(3.0 * (size - 2))
    g = torch.Generator().manual_seed(0)
    hits = [(sample_hard_negatives(sim, g) == (torch.arange(size) + 1) % size).double().mean() for _ in range(4)]
    assert torch.stack(hits).mean().item() == pytest.approx(0.75, abs=0.025)


def test_hard_negatives_exclude_mask_and_errors():
    sim = torch.zeros(3, 3)
    exclude = torch.tensor([[False, True, False], [False, False, False], [False, False, False]])
    for seed in range(50):
        assert sample_hard_negatives(sim, torch.Generator().manual_seed(seed), exclude_mask=exclude)[0] == 2
    with pytest.raises(ValueError, match="at least 2"):
        sample_hard_negatives(torch.zeros(1, 1))
    with pytest.raises(ValueError, match="square"):
        sample_hard_negatives(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"rows \[0\]"):
        sample_hard_negatives(sim, exclude_mask=torch.tensor([[False, True, True], [False] * 3, [False] * 3]))


MASK_ID, VOCAB = 3, 30000


def _mlm_batch(rows: int = 200, length: int = 64):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(10, VOCAB, (rows, length), generator=g)
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True
    attention = torch.ones_like(ids)
    attention[::2, 40:] = 0  # half the rows are padded
    return ids, attention, special


def test_mask_tokens_respects_special_padding_and_80_10_10():
    ids, attention, special = _mlm_batch()
    masked, labels = mask_tokens(ids, attention, special, MASK_ID, VOCAB, 0.15, torch.Generator().manual_seed(0))
    protected = special | (attention == 0)
    assert (labels[protected] == -100).all() and torch.equal(masked[protected], ids[protected])
    selected = labels != -100
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(masked[~selected], ids[~selected])
    rate = selected.sum().item() / (~protected).sum().item()
    assert rate == pytest.approx(0.15, abs=0.01)
    to_mask = (masked[selected] == MASK_ID).float().mean().item()
    kept = (masked[selected] == ids[selected]).float().mean().item()
    assert to_mask == pytest.approx(0.8, abs=0.03)
    assert kept == pytest.approx(0.1, abs=0.02)
    assert 1 - to_mask - kept == pytest.approx(0.1, abs=0.02)  # random replacement


def test_mask_tokens_is_seeded_and_guarantees_one_target():
    ids, attention, special = _mlm_batch(rows=50, length=8)
    special[0, :] = True  # a row with nothing maskable
    def run(seed):
        return mask_tokens(ids, attention, special, MASK_ID, VOCAB, 1e-6, torch.Generator().manual_seed(seed))

    masked, labels = run(5)
    masked2, labels2 = run(5)
    assert torch.equal(masked, masked2) and torch.equal(labels, labels2)
    per_row = (labels != -100).sum(dim=1)
    assert per_row[0] == 0 and (per_row[1:] == 1).all()
    assert not torch.equal(labels, run(6)[1])
    with pytest.raises(ValueError, match="mlm_probability"):
        mask_tokens(ids, None, None, MASK_ID, VOCAB, 0.0)


@pytest.mark.parametrize("lam", [1.0, 0.25])
def test_gradient_reversal(lam):
    x = torch.randn(3, 2, requires_grad=True)
    weight = torch.randn(3, 2)
    y = grad_reverse(x, lam)
    torch.testing.assert_close(y, x)
    (y * weight).sum().backward()
    torch.testing.assert_close(x.grad, -lam * weight)


def test_distillation_kl_hand_example():
    sa = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64, requires_grad=True)
    sb = torch.tensor([[1.0, 1.0], [0.0, 1.0]], dtype=torch.float64)
    ta = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    tb = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    temp = 0.5
    s = [[1 / math.sqrt(2), 0.0], [1 / math.sqrt(2), 1.0]]  # cosine(student_a_i, student_b_j)
    t = [[1.0, 0.0], [0.0, 0.0]]

    def kl_rows(student, teacher):
        out = 0.0
        for srow, trow in zip(student, teacher):
            ps = [math.exp(v / temp) / sum(math.exp(u / temp) for u in srow) for v in srow]
            pt = [math.exp(v / temp) / sum(math.exp(u / temp) for u in trow) for v in trow]
            out += sum(q * math.log(q / p) for q, p in zip(pt, ps))
        return out / len(student)

    transpose = lambda m: [list(c) for c in zip(*m)]  # noqa: E731
    expected = 0.5 * (kl_rows(s, t) + kl_rows(transpose(s), transpose(t)))
    loss = distillation_kl(sa, sb, ta, tb, temp)
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    loss.backward()
    assert ta.grad is None and sa.grad is not None  # teacher detached
    assert distillation_kl(ta, tb, ta * 3, tb, temp).item() == pytest.approx(0.0, abs=1e-12)


def test_distillation_cosine_hand_example():
    student = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    teacher = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    assert distillation_cosine(student, teacher).item() == pytest.approx((1 + 1 - 1 / math.sqrt(2)) / 2)
    with pytest.raises(ValueError, match="same shape"):
        distillation_cosine(student, torch.zeros(2, 3))


def test_itm_and_adversarial_losses():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    expected = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(-1.0))) / 2
    assert itm_loss(logits, torch.tensor([0, 1])).item() == pytest.approx(expected, abs=1e-6)
    assert adversarial_modality_loss(logits, torch.tensor([0, 1])).item() == pytest.approx(expected, abs=1e-6)
    binary = adversarial_modality_loss(torch.tensor([[0.0], [math.log(3.0)]]), torch.tensor([1, 0]))
    assert binary.item() == pytest.approx((math.log(2.0) + math.log(4.0)) / 2, abs=1e-6)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        itm_loss(torch.zeros(2, 3), torch.tensor([0, 1]))
