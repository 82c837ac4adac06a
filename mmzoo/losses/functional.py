"""Pure-torch math of mmzoo's alignment objectives (the functional twins of the loss modules).

Shapes: ``n`` = local batch on this rank, ``N`` = global batch (sum of ``n`` over ranks; ``N == n`` in a
single process), ``D`` = embedding width. Distributed losses follow the gradient convention documented in
:mod:`mmzoo.losses._distributed`: each rank returns a per-rank loss whose mean over ranks is the
single-process loss on the global batch, so after DDP/FSDP gradient averaging the parameter gradients equal
those of the single-process run. Never multiply these losses by ``world_size``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mmzoo.losses._distributed import gather_with_offset, neighbour_exchange, world_info

__all__ = [
    "GradientReversal",
    "adversarial_modality_loss",
    "contrastive_loss",
    "distillation_cosine",
    "distillation_kl",
    "grad_reverse",
    "itm_loss",
    "mask_tokens",
    "sample_hard_negatives",
    "sigmoid_loss",
]


def _upcast(x: Tensor) -> Tensor:
    """Half-precision logits to float32 for the loss; float32/float64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _check_pairs(image_embeds: Tensor, text_embeds: Tensor, fn: str) -> None:
    if image_embeds.ndim != 2 or text_embeds.ndim != 2:
        raise ValueError(
            f"{fn}: expected 2-D (batch, dim) embeddings, got image_embeds {tuple(image_embeds.shape)} and "
            f"text_embeds {tuple(text_embeds.shape)}; pool/project the tower outputs first."
        )
    if image_embeds.shape != text_embeds.shape:
        raise ValueError(
            f"{fn}: image_embeds {tuple(image_embeds.shape)} and text_embeds {tuple(text_embeds.shape)} must "
            "have the same shape (one text per image, same projection width)."
        )


def _gather_pairs(image_embeds: Tensor, text_embeds: Tensor, gather: bool) -> tuple[Tensor, Tensor, int, int]:
    """Return ``(all_images, all_texts, offset, world_size)``; the local rows start at ``offset``."""
    world_size = world_info()[1] if gather else 1
    if world_size == 1:
        return image_embeds, text_embeds, 0, 1
    all_images, offset = gather_with_offset(image_embeds)
    all_texts, _ = gather_with_offset(text_embeds)
    return all_images, all_texts, offset, world_size


def contrastive_loss(
    image_embeds: Tensor,
    text_embeds: Tensor,
    logit_scale: Tensor | float,
    label_smoothing: float = 0.0,
    gather: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """Symmetric InfoNCE / CLIP loss (Radford et al. 2021, "Learning Transferable Visual Models From
    Natural Language Supervision"; van den Oord et al. 2018).

    With ``s = logit_scale = 1/tau`` and ``sim = dot product`` of L2-normalised embeddings::

        L_i2t(i) = -log( exp(s*sim(i, t_i)) / sum_j exp(s*sim(i, t_j)) )
        L_t2i(j) = -log( exp(s*sim(t_j, i_j)) / sum_i exp(s*sim(t_j, i_i)) )
        L = 1/2 * ( mean_i L_i2t(i) + mean_j L_t2i(j) )      over the GLOBAL batch

    ``label_smoothing`` is passed to ``F.cross_entropy`` (target ``1-eps`` on the positive plus ``eps/N``
    spread uniformly over all ``N`` columns). Distributed (``gather=True`` and an initialised process
    group): images and texts are all-gathered with gradients, each rank scores its ``n`` local rows against
    all ``N`` columns (labels offset by the number of rows on earlier ranks) and returns
    ``world_size/N * sum(local row losses)``, whose mean over ranks is ``L``. ``gather=False`` uses
    in-rank negatives only.

    Args:
        image_embeds: ``(n, D)`` L2-normalised image embeddings.
        text_embeds: ``(n, D)`` L2-normalised text embeddings; row ``i`` pairs with image row ``i``.
        logit_scale: scalar ``1/tau``, already exponentiated and clamped by the caller.
        label_smoothing: in ``[0, 1)``.
        gather: use negatives from all ranks when distributed.

    Returns:
        ``(loss, logits_per_image, logits_per_text)``: scalar loss; ``(n, N)`` local images vs all texts;
        ``(n, N)`` local texts vs all images. In a single process ``logits_per_text == logits_per_image.T``.
    """
    _check_pairs(image_embeds, text_embeds, "contrastive_loss")
    all_images, all_texts, offset, world_size = _gather_pairs(image_embeds, text_embeds, gather)
    logits_per_image = logit_scale * image_embeds @ all_texts.t()
    logits_per_text = logit_scale * text_embeds @ all_images.t()
    labels = torch.arange(offset, offset + image_embeds.shape[0], device=image_embeds.device)
    summed = sum(
        F.cross_entropy(_upcast(logits), labels, reduction="sum", label_smoothing=label_smoothing)
        for logits in (logits_per_image, logits_per_text)
    )
    loss = summed * (world_size / (2 * all_texts.shape[0]))
    return loss, logits_per_image, logits_per_text


SIGMOID_EXCHANGES = ("all_gather", "ring")


def sigmoid_loss(
    image_embeds: Tensor,
    text_embeds: Tensor,
    logit_scale: Tensor | float,
    logit_bias: Tensor | float,
    gather: bool = True,
    exchange: str = "all_gather",
) -> tuple[Tensor, Tensor, Tensor]:
    """Pairwise sigmoid loss of SigLIP (Zhai et al. 2023, "Sigmoid Loss for Language Image Pre-Training").

    With ``t = logit_scale``, ``b = logit_bias`` and ``z_ij = +1`` if ``i == j`` else ``-1``::

        L = -1/N * sum_{i=1..N} sum_{j=1..N} log sigmoid( z_ij * (t * x_i . y_j + b) )

    normalised by the GLOBAL batch size ``N`` as in the paper. Each rank scores its ``n`` local images against
    all ``N`` texts (every pair is scored exactly once across ranks) and returns ``-world_size/N * sum(local
    terms)``, whose mean over ranks is ``L``. The terms are summed as ``softplus(logits)`` over all pairs with
    the positives corrected (``-log sigmoid(x) = softplus(-x)``), so no ``(n, N)`` sign matrix is built.

    ``exchange`` picks how the texts of other ranks are reached when distributed:

    * ``"all_gather"``: texts (and images) are all-gathered with gradients; returns ``(n, N)`` logits in both
      directions (memory ``O(n*N)``, two logits matrices);
    * ``"ring"``: the paper's neighbour exchange: the local texts travel around the ring of ranks in
      ``world_size - 1`` steps and each step scores one ``(n, n)`` block, so no ``(n, N)`` matrix is ever
      materialised at once and the images are never gathered. Same loss and gradients as ``"all_gather"``;
      every rank needs the same ``n``. The returned logits are the local ``(n, n)`` block and its transpose.

    Args:
        image_embeds: ``(n, D)`` L2-normalised image embeddings.
        text_embeds: ``(n, D)`` L2-normalised text embeddings; row ``i`` pairs with image row ``i``.
        logit_scale: scalar ``t`` (already exponentiated by the caller).
        logit_bias: scalar ``b`` (the paper initialises it to -10).
        gather: use pairs from all ranks when distributed.
        exchange: ``"all_gather"`` or ``"ring"`` (see above).

    Returns:
        ``(loss, logits_per_image, logits_per_text)``, logits including the bias.
    """
    _check_pairs(image_embeds, text_embeds, "sigmoid_loss")
    if exchange not in SIGMOID_EXCHANGES:
        raise ValueError(f"sigmoid_loss: exchange must be one of {SIGMOID_EXCHANGES}, got {exchange!r}.")
    if exchange == "ring" and gather and world_info()[1] > 1:
        return _sigmoid_ring(image_embeds, text_embeds, logit_scale, logit_bias)
    all_images, all_texts, offset, world_size = _gather_pairs(image_embeds, text_embeds, gather)
    n, total = image_embeds.shape[0], all_texts.shape[0]
    logits_per_image = logit_scale * image_embeds @ all_texts.t() + logit_bias
    if world_size == 1:
        logits_per_text = logits_per_image.t()
    else:
        logits_per_text = logit_scale * text_embeds @ all_images.t() + logit_bias
    rows = torch.arange(n, device=image_embeds.device)
    summed = _sigmoid_block_sum(logits_per_image, _upcast(logits_per_image[rows, rows + offset]))
    return summed * (world_size / total), logits_per_image, logits_per_text


def _sigmoid_block_sum(logits: Tensor, positives: Tensor | None) -> Tensor:
    """``sum -log sigmoid(z * logits)`` with ``z = -1`` everywhere except at ``positives`` (their logits)."""
    summed = F.softplus(_upcast(logits)).sum()
    if positives is not None:
        summed = summed - F.softplus(positives).sum() + F.softplus(-positives).sum()
    return summed


def _sigmoid_ring(image_embeds: Tensor, text_embeds: Tensor, logit_scale, logit_bias):
    rank, world_size = world_info()
    n = image_embeds.shape[0]
    local = logit_scale * image_embeds @ text_embeds.t() + logit_bias
    summed = _sigmoid_block_sum(local, _upcast(local.diagonal()))
    texts, to, source = text_embeds, (rank + 1) % world_size, (rank - 1) % world_size
    for _ in range(world_size - 1):  # texts of rank r - k arrive at step k: negatives only
        texts = neighbour_exchange(texts, to, source)
        summed = summed + _sigmoid_block_sum(logit_scale * image_embeds @ texts.t() + logit_bias, None)
    return summed * (1.0 / n), local, local.t()


def sample_hard_negatives(
    similarity: Tensor, generator: torch.Generator | None = None, exclude_mask: Tensor | None = None
) -> Tensor:
    """Sample one hard negative per row from ``softmax(similarity[i])`` with the positive excluded (ALBEF,
    Li et al. 2021, "Align before Fuse", Sec. 3.2: ITM hard negatives, used in both directions).

    ``p(j | i) = exp(sim_ij) / sum_{k != i, k not excluded} exp(sim_ik)`` for ``j != i``, ``p(i | i) = 0``.
    Robust to ties, duplicate rows and ``-inf``/``+inf``/NaN scores: NaN counts as ``-inf``; a row whose
    allowed scores contain ``+inf`` samples uniformly among those; a row whose allowed scores are all
    ``-inf`` samples uniformly among the allowed columns. No gradient flows through the sampling.

    Args:
        similarity: ``(B, B)`` scores; row ``i``'s positive is column ``i``.
        generator: optional ``torch.Generator`` on ``similarity``'s device, for reproducible draws.
        exclude_mask: optional ``(B, B)`` bool, True = never sample (e.g. other captions of the same image).

    Returns:
        ``(B,)`` long tensor of column indices, never equal to the row index.

    Raises:
        ValueError: ``B < 2`` (ITM needs at least 2 pairs), a non-square matrix, or a row with nothing left.
    """
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1]:
        raise ValueError(f"sample_hard_negatives: expected a square (B, B) matrix, got {tuple(similarity.shape)}.")
    size = similarity.shape[0]
    if size < 2:
        raise ValueError(
            f"sample_hard_negatives: batch size {size} has no negative; ITM hard negatives need at least 2 "
            "image-text pairs per batch (raise the per-device batch size)."
        )
    allowed = ~torch.eye(size, dtype=torch.bool, device=similarity.device)
    if exclude_mask is not None:
        allowed &= ~exclude_mask.to(device=similarity.device, dtype=torch.bool)
        empty = ~allowed.any(dim=1)
        if empty.any():
            raise ValueError(
                f"sample_hard_negatives: exclude_mask leaves rows {empty.nonzero().flatten().tolist()} with no "
                "negative; exclude fewer columns or drop those rows."
            )
    scores = similarity.detach().float().nan_to_num(nan=float("-inf"), posinf=float("inf"), neginf=float("-inf"))
    scores = scores.masked_fill(~allowed, float("-inf"))
    has_posinf = torch.isposinf(scores).any(dim=1, keepdim=True)
    all_neginf = torch.isneginf(scores).all(dim=1, keepdim=True)
    uniform_over = torch.where(has_posinf, torch.isposinf(scores), allowed)
    scores = torch.where(has_posinf | all_neginf, torch.where(uniform_over, 0.0, float("-inf")), scores)
    weights = torch.softmax(scores, dim=1)
    return torch.multinomial(weights, 1, generator=generator).squeeze(1)


def mask_tokens(
    input_ids: Tensor,
    attention_mask: Tensor | None,
    special_tokens_mask: Tensor | None,
    mask_token_id: int,
    vocab_size: int,
    mlm_probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """BERT masked-language-model corruption (Devlin et al. 2019, Sec. 3.1), as in
    ``transformers.DataCollatorForLanguageModeling.torch_mask_tokens``.

    Each maskable token (attention 1 and not special) is selected with probability ``mlm_probability``;
    a selected token becomes ``mask_token_id`` with prob. 0.8, a uniform random id in ``[0, vocab_size)``
    with prob. 0.1, and stays unchanged with prob. 0.1. Special and padding tokens are never selected.
    Guarantee: every sequence with at least one maskable token gets at least one selected token (if the
    draw selected none, one maskable position is picked uniformly), so the MLM loss is never NaN; this
    raises the masking rate slightly for very short sequences.

    Args:
        input_ids: ``(B, L)`` token ids (not modified).
        attention_mask: ``(B, L)``, 0 = padding; ``None`` = no padding.
        special_tokens_mask: ``(B, L)``, 1/True = special token ([CLS], [SEP], ...); ``None`` = none.
        mask_token_id: id of the mask token.
        vocab_size: random replacement ids are drawn from ``[0, vocab_size)``.
        mlm_probability: selection probability in ``(0, 1]``.
        generator: optional ``torch.Generator`` on ``input_ids``' device.

    Returns:
        ``(masked_input_ids, labels)``, both ``(B, L)`` long; ``labels`` is the original id at selected
        positions and -100 elsewhere.
    """
    if not 0.0 < mlm_probability <= 1.0:
        raise ValueError(f"mask_tokens: mlm_probability must be in (0, 1], got {mlm_probability}.")
    if input_ids.ndim != 2:
        raise ValueError(f"mask_tokens: expected (batch, length) input_ids, got {tuple(input_ids.shape)}.")
    device = input_ids.device
    maskable = torch.ones_like(input_ids, dtype=torch.bool)
    if attention_mask is not None:
        maskable &= attention_mask.to(device).bool()
    if special_tokens_mask is not None:
        maskable &= ~special_tokens_mask.to(device).bool()

    rand = lambda: torch.rand(input_ids.shape, generator=generator, device=device)  # noqa: E731
    selected = (rand() < mlm_probability) & maskable
    missing = maskable.any(dim=1) & ~selected.any(dim=1)
    forced = rand().masked_fill(~maskable, -1.0).argmax(dim=1)  # a uniform maskable position per row
    selected[missing, forced[missing]] = True

    labels = input_ids.masked_fill(~selected, -100)
    action = rand()
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator, device=device)
    masked = input_ids.masked_fill(selected & (action < 0.8), mask_token_id)
    to_random = selected & (action >= 0.8) & (action < 0.9)
    masked = torch.where(to_random, random_ids.to(input_ids.dtype), masked)
    return masked, labels


class GradientReversal(torch.autograd.Function):
    """Gradient reversal layer (Ganin & Lempitsky 2015, "Unsupervised Domain Adaptation by Backpropagation").

    Forward ``y = x``; backward ``dL/dx = -lambda * dL/dy``. Use via :func:`grad_reverse`.
    """

    @staticmethod
    def forward(ctx, x: Tensor, lambda_: float) -> Tensor:  # type: ignore[override]
        ctx.lambda_ = float(lambda_)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad_output * -ctx.lambda_, None


def grad_reverse(x: Tensor, lambda_: float = 1.0) -> Tensor:
    """Identity on ``x`` (any shape) whose backward multiplies the gradient by ``-lambda_``."""
    return GradientReversal.apply(x, lambda_)


def _relational_kl(student_sim: Tensor, teacher_sim: Tensor) -> Tensor:
    """Mean over rows of ``KL(softmax(teacher_row) || softmax(student_row))``."""
    return F.kl_div(
        F.log_softmax(student_sim, dim=1), F.log_softmax(teacher_sim, dim=1), reduction="batchmean", log_target=True
    )


def distillation_kl(
    student_a: Tensor, student_b: Tensor, teacher_a: Tensor, teacher_b: Tensor, temperature: float = 1.0
) -> Tensor:
    """Relational (similarity-distribution) distillation, as in CLIP-KD (Yang et al. 2024) and
    ALBEF's momentum distillation: match the student's in-batch similarity rows to the teacher's.

    With ``S = cos(student_a, student_b) / T`` and ``R = cos(teacher_a, teacher_b) / T`` (``(B_a, B_b)``
    cosine-similarity matrices, so student and teacher widths may differ)::

        L = 1/2 * ( mean_i KL(softmax(R_i.) || softmax(S_i.)) + mean_j KL(softmax(R_.j) || softmax(S_.j)) )

    i.e. both retrieval directions. No ``T**2`` factor is applied. The teacher is detached.

    Args:
        student_a, student_b: ``(B_a, D_s)`` and ``(B_b, D_s)`` student embeddings (normalised inside).
        teacher_a, teacher_b: ``(B_a, D_t)`` and ``(B_b, D_t)`` teacher embeddings (normalised inside).
        temperature: ``T > 0``.

    Returns:
        Scalar loss.
    """
    if temperature <= 0:
        raise ValueError(f"distillation_kl: temperature must be > 0, got {temperature}.")
    if student_a.shape[0] != teacher_a.shape[0] or student_b.shape[0] != teacher_b.shape[0]:
        raise ValueError(
            "distillation_kl: student and teacher batches differ: student_a/teacher_a "
            f"{student_a.shape[0]}/{teacher_a.shape[0]}, student_b/teacher_b {student_b.shape[0]}/{teacher_b.shape[0]}."
        )
    sim = lambda a, b: F.normalize(_upcast(a), dim=-1) @ F.normalize(_upcast(b), dim=-1).t() / temperature  # noqa: E731
    student = sim(student_a, student_b)
    teacher = sim(teacher_a.detach(), teacher_b.detach())
    return 0.5 * (_relational_kl(student, teacher) + _relational_kl(student.t(), teacher.t()))


def distillation_cosine(student: Tensor, teacher: Tensor) -> Tensor:
    """Feature distillation ``L = mean_i (1 - cos(student_i, teacher_i))``; the teacher is detached.

    Args:
        student: ``(B, D)`` student embeddings.
        teacher: ``(B, D)`` teacher embeddings (project the student first if widths differ).
    """
    if student.shape != teacher.shape:
        raise ValueError(
            f"distillation_cosine: student {tuple(student.shape)} and teacher {tuple(teacher.shape)} must have "
            "the same shape; add a projection to the teacher width."
        )
    return (1.0 - F.cosine_similarity(_upcast(student), _upcast(teacher.detach()), dim=-1)).mean()


def itm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Image-text matching loss (ALBEF/BLIP): cross-entropy of ``(N, 2)`` logits against ``(N,)`` labels
    (1 = matched pair, 0 = negative)."""
    if logits.ndim != 2 or logits.shape[1] != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"itm_loss: expected logits (N, 2) and labels (N,), got {tuple(logits.shape)} and {tuple(labels.shape)}."
        )
    return F.cross_entropy(_upcast(logits), labels.long())


def adversarial_modality_loss(disc_logits: Tensor, modality_labels: Tensor) -> Tensor:
    """Modality-discriminator loss for adversarial alignment (Ganin & Lempitsky 2015): the discriminator
    sees ``grad_reverse(features)`` and predicts the modality, so minimising this loss trains the
    discriminator while the reversed gradient pushes the encoders towards modality-invariant features.

    Args:
        disc_logits: ``(N,)`` or ``(N, 1)`` binary logits (binary cross-entropy), or ``(N, C)`` class logits
            (cross-entropy over ``C`` modalities).
        modality_labels: ``(N,)`` modality index (0/1 for the binary case).
    """
    if disc_logits.ndim == 1 or (disc_logits.ndim == 2 and disc_logits.shape[1] == 1):
        logits = _upcast(disc_logits.reshape(-1))
        if logits.shape != modality_labels.shape:
            raise ValueError(
                f"adversarial_modality_loss: binary logits {tuple(disc_logits.shape)} do not match labels "
                f"{tuple(modality_labels.shape)}; expected (N,) or (N, 1) logits with (N,) labels."
            )
        return F.binary_cross_entropy_with_logits(logits, modality_labels.to(logits.dtype))
    if disc_logits.ndim != 2 or modality_labels.shape != disc_logits.shape[:1]:
        raise ValueError(
            f"adversarial_modality_loss: expected (N, C) logits and (N,) labels, got {tuple(disc_logits.shape)} "
            f"and {tuple(modality_labels.shape)}."
        )
    return F.cross_entropy(_upcast(disc_logits), modality_labels.long())
