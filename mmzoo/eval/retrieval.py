"""Scalable image-text retrieval: exact per-query ranks and top-k without an N x N similarity matrix.

Similarity is the dot product of the embeddings (cosine similarity with ``normalize=True``, the default).
Scores are computed in float32 at least (half-precision embeddings are upcast so that rounding does not create ties).

Rank definition (1-based), exact for every query:

* text -> image: the gallery is all images, the one correct item is the caption's image.
* image -> text: the gallery is all texts, the correct items are the image's captions; the rank is that of the
  best-scoring caption (an image is retrieved at K when ANY of its captions is in the top K).

``rank = 1 + #{incorrect gallery items g : s(g) > s*}`` with ``ties="optimistic"``, or
``rank = 1 + #{incorrect gallery items g : s(g) >= s*}`` with ``ties="pessimistic"`` (the default), where ``s*`` is
the best score among the correct items. Pessimistic is the default because a collapsed model (all embeddings equal)
must score chance level, not a perfect recall; with continuous scores the two rules agree.

``retrieval_ranks`` walks the queries in chunks, so memory is O(chunk_size x gallery size); it scores every pair
twice (once per direction), the price of exact ranks without a stored matrix. Its counts equal those of the
full-matrix reference ``retrieval_ranks_full`` (tested on integer-valued embeddings, whose dot products are exact
whatever the BLAS summation order; with float embeddings a BLAS may round a score of a chunk differently from the
same score in the full matrix, which can only matter for near-exact ties).

Feed ``RetrievalRanks.metric_inputs()`` to the ``retrieval_recall`` metric
(``mmzoo.eval.metrics.load_metric("retrieval_recall")``) for recall@K and mean/median rank.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

Ties = Literal["pessimistic", "optimistic"]
_TIES = ("pessimistic", "optimistic")


@dataclass(frozen=True)
class RetrievalRanks:
    """Exact 1-based ranks of the first correct item for every query.

    Attributes:
        image_to_text: LongTensor of shape ``(num_images,)``; rank of each image's best caption among all texts.
        text_to_image: LongTensor of shape ``(num_texts,)``; rank of each caption's image among all images.
        image_to_text_topk: LongTensor ``(num_images, min(max_k, num_texts))``, indices of the best-scoring texts
            per image, best first (``None`` when ``max_k=0``). The order among equal scores is unspecified.
        text_to_image_topk: LongTensor ``(num_texts, min(max_k, num_images))``, likewise (``None`` when ``max_k=0``).
    """

    image_to_text: torch.Tensor
    text_to_image: torch.Tensor
    image_to_text_topk: torch.Tensor | None = None
    text_to_image_topk: torch.Tensor | None = None

    def metric_inputs(self) -> dict[str, list]:
        """Inputs of the ``retrieval_recall`` metric (default ``ranks`` config): one row per query.

        Example:
            >>> ranks = RetrievalRanks(torch.tensor([1, 3]), torch.tensor([2, 1, 1]))
            >>> ranks.metric_inputs()["directions"]
            ['image_to_text', 'image_to_text', 'text_to_image', 'text_to_image', 'text_to_image']
        """
        i2t, t2i = self.image_to_text.tolist(), self.text_to_image.tolist()
        return {
            "ranks": i2t + t2i,
            "directions": ["image_to_text"] * len(i2t) + ["text_to_image"] * len(t2i),
        }


def _prepare_embeds(embeds: torch.Tensor, name: str, normalize: bool) -> torch.Tensor:
    if not isinstance(embeds, torch.Tensor) or embeds.ndim != 2:
        shape = tuple(embeds.shape) if isinstance(embeds, torch.Tensor) else type(embeds).__name__
        raise ValueError(f"{name} must be a 2-D tensor (num_items, dim), got {shape}.")
    if not embeds.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {embeds.dtype}.")
    if embeds.dtype in (torch.float16, torch.bfloat16):
        embeds = embeds.float()
    if not torch.isfinite(embeds).all():
        raise ValueError(f"{name} contains NaN or infinite values; ranks would be meaningless.")
    return F.normalize(embeds, dim=-1) if normalize else embeds


def _check_inputs(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, text_to_image: torch.Tensor, ties: str, normalize: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if ties not in _TIES:
        raise ValueError(f"ties={ties!r} is not one of {_TIES}.")
    images = _prepare_embeds(image_embeds, "image_embeds", normalize)
    texts = _prepare_embeds(text_embeds, "text_embeds", normalize)
    if images.shape[1] != texts.shape[1] or images.dtype != texts.dtype:
        raise ValueError(
            f"image_embeds {tuple(images.shape)} {images.dtype} and text_embeds {tuple(texts.shape)} {texts.dtype} "
            "must share the embedding size and dtype; project both towers to the same space first."
        )
    if (
        not isinstance(text_to_image, torch.Tensor)
        or text_to_image.dtype != torch.long
        or text_to_image.shape != (texts.shape[0],)
    ):
        got = (
            f"{text_to_image.dtype} {tuple(text_to_image.shape)}"
            if isinstance(text_to_image, torch.Tensor)
            else type(text_to_image).__name__
        )
        raise ValueError(
            f"text_to_image must be a LongTensor of shape ({texts.shape[0]},) giving each text's image index, "
            f"got {got}."
        )
    text_to_image = text_to_image.to(images.device)
    num_images = images.shape[0]
    if text_to_image.numel() and (text_to_image.min() < 0 or text_to_image.max() >= num_images):
        raise ValueError(f"text_to_image values must lie in [0, {num_images}) (the number of images).")
    uncaptioned = (torch.bincount(text_to_image, minlength=num_images) == 0).nonzero().flatten()
    if uncaptioned.numel():
        raise ValueError(
            f"{uncaptioned.numel()} image(s) have no caption in text_to_image (first: {uncaptioned[:5].tolist()}); "
            "image->text retrieval needs at least one caption per image. Drop those images."
        )
    return images, texts, text_to_image


def _count(mask: torch.Tensor) -> torch.Tensor:
    """Row-wise count of a (chunk, N) bool mask; an int32 sum is about twice as fast as the default int64 one."""
    return mask.sum(1, dtype=torch.int32).long()


@torch.inference_mode()
def retrieval_ranks(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    text_to_image: torch.Tensor,
    chunk_size: int = 1024,
    max_k: int = 10,
    *,
    ties: Ties = "pessimistic",
    normalize: bool = True,
) -> RetrievalRanks:
    """Exact image->text and text->image ranks, computed chunk by chunk (memory O(chunk_size x N)).

    Peak extra memory is about 10 bytes x chunk_size x max(num_images, num_texts) (measured on CPU: 513 MiB at
    chunk_size 1024 and 50,000 pairs, where the full matrix would need ~30 GiB; see bench/retrieval_eval.py).

    Args:
        image_embeds: ``(num_images, dim)`` float tensor.
        text_embeds: ``(num_texts, dim)`` float tensor, on the same device.
        text_to_image: ``(num_texts,)`` LongTensor, the image index of each caption (several captions per image
            allowed; every image needs at least one).
        chunk_size: queries scored per step (default 1024).
        max_k: also return the indices of the top ``max_k`` gallery items per query (0 disables; default 10).
        ties: tie rule, ``"pessimistic"`` (default) or ``"optimistic"`` (see the module docstring).
        normalize: L2-normalise the embeddings first, i.e. rank by cosine similarity (default True).

    Returns:
        RetrievalRanks with ranks on the embeddings' device.

    Example:
        >>> images = torch.eye(3)
        >>> texts = torch.eye(3)[[0, 0, 1, 2]]  # image 0 has two captions
        >>> retrieval_ranks(images, texts, torch.tensor([0, 0, 1, 2])).text_to_image.tolist()
        [1, 1, 1, 1]
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    images, texts, text_to_image = _check_inputs(image_embeds, text_embeds, text_to_image, ties, normalize)
    i2t, i2t_topk = _image_to_text_ranks(images, texts, text_to_image, chunk_size, max_k, ties)
    t2i, t2i_topk = _text_to_image_ranks(images, texts, text_to_image, chunk_size, max_k, ties)
    return RetrievalRanks(i2t, t2i, i2t_topk, t2i_topk)


def _image_to_text_ranks(images, texts, text_to_image, chunk_size, max_k, ties):
    num_images, num_texts = images.shape[0], texts.shape[0]
    # Captions grouped by image: those of images [a, b) are by_image[offsets[a]:offsets[b]].
    by_image = torch.argsort(text_to_image, stable=True)
    offsets = torch.zeros(num_images + 1, dtype=torch.long, device=images.device)
    offsets[1:] = torch.cumsum(torch.bincount(text_to_image, minlength=num_images), 0)
    offsets = offsets.tolist()
    ranks, topk = [], []
    for start in range(0, num_images, chunk_size):
        stop = min(start + chunk_size, num_images)
        scores = images[start:stop] @ texts.T  # (chunk, num_texts)
        captions = by_image[offsets[start] : offsets[stop]]
        owners = text_to_image[captions] - start
        correct = scores[owners, captions]
        best = torch.full((stop - start,), float("-inf"), dtype=scores.dtype, device=scores.device)
        best = best.scatter_reduce(0, owners, correct, reduce="amax")
        if ties == "pessimistic":  # items >= the best correct score, minus the correct ones among them
            beaten = _count(scores >= best[:, None])
            beaten -= torch.zeros_like(beaten).scatter_add_(0, owners, (correct >= best[owners]).to(beaten.dtype))
        else:  # no correct caption scores above the best one
            beaten = _count(scores > best[:, None])
        ranks.append(1 + beaten)
        if max_k > 0:
            topk.append(scores.topk(min(max_k, num_texts), dim=1).indices)
    return torch.cat(ranks), (torch.cat(topk) if max_k > 0 else None)


def _text_to_image_ranks(images, texts, text_to_image, chunk_size, max_k, ties):
    num_images, num_texts = images.shape[0], texts.shape[0]
    ranks, topk = [], []
    for start in range(0, num_texts, chunk_size):
        stop = min(start + chunk_size, num_texts)
        scores = texts[start:stop] @ images.T  # (chunk, num_images)
        rows = torch.arange(stop - start, device=scores.device)
        correct = scores[rows, text_to_image[start:stop]]
        if ties == "pessimistic":  # the count of images >= the correct score includes the correct one: the rank
            ranks.append(_count(scores >= correct[:, None]))
        else:
            ranks.append(1 + _count(scores > correct[:, None]))
        if max_k > 0:
            topk.append(scores.topk(min(max_k, num_images), dim=1).indices)
    return torch.cat(ranks), (torch.cat(topk) if max_k > 0 else None)


@torch.inference_mode()
def retrieval_ranks_full(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    text_to_image: torch.Tensor,
    max_k: int = 10,
    *,
    ties: Ties = "pessimistic",
    normalize: bool = True,
) -> RetrievalRanks:
    """Reference implementation of :func:`retrieval_ranks` on the full ``(num_images, num_texts)`` matrix.

    Memory is O(num_images x num_texts): use it for tests and small sets only. Arguments as in ``retrieval_ranks``.
    """
    images, texts, text_to_image = _check_inputs(image_embeds, text_embeds, text_to_image, ties, normalize)
    scores = images @ texts.T  # (num_images, num_texts)
    is_caption = text_to_image[None, :] == torch.arange(images.shape[0], device=scores.device)[:, None]
    best = scores.masked_fill(~is_caption, float("-inf")).amax(dim=1, keepdim=True)
    compare = (scores >= best) if ties == "pessimistic" else (scores > best)
    i2t = 1 + _count(compare & ~is_caption)

    correct = scores.T.gather(1, text_to_image[:, None])  # (num_texts, 1)
    compare = (scores.T >= correct) if ties == "pessimistic" else (scores.T > correct)
    t2i = _count(compare) + (0 if ties == "pessimistic" else 1)  # pessimistic counts the correct image itself

    if max_k <= 0:
        return RetrievalRanks(i2t, t2i)
    i2t_topk = scores.topk(min(max_k, scores.shape[1]), dim=1).indices
    t2i_topk = scores.T.topk(min(max_k, scores.shape[0]), dim=1).indices
    return RetrievalRanks(i2t, t2i, i2t_topk, t2i_topk)


@torch.inference_mode()
def chunked_topk_similarity(
    query_embeds: torch.Tensor,
    gallery_embeds: torch.Tensor,
    k: int,
    chunk_size: int = 1024,
    *,
    normalize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` gallery items per query with a running top-k over gallery chunks (memory O(chunk_size^2 + Q k)).

    Args:
        query_embeds: ``(num_queries, dim)`` float tensor.
        gallery_embeds: ``(num_gallery, dim)`` float tensor.
        k: items kept per query; capped at ``num_gallery``.
        chunk_size: queries and gallery items per block (default 1024).
        normalize: L2-normalise both sides first (cosine similarity; default True).

    Returns:
        ``(scores, indices)``, both ``(num_queries, min(k, num_gallery))``, best first. Scores are exact; the order
        among equal scores is unspecified.

    Example:
        >>> scores, indices = chunked_topk_similarity(torch.eye(2), torch.eye(2)[[1, 0, 0]], k=2, chunk_size=1)
        >>> indices[0].tolist() in ([1, 2], [2, 1])
        True
    """
    if k < 1 or chunk_size < 1:
        raise ValueError(f"k and chunk_size must be >= 1, got k={k}, chunk_size={chunk_size}.")
    queries = _prepare_embeds(query_embeds, "query_embeds", normalize)
    gallery = _prepare_embeds(gallery_embeds, "gallery_embeds", normalize)
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"query_embeds {tuple(queries.shape)} and gallery_embeds {tuple(gallery.shape)} differ in embedding size."
        )
    k = min(k, gallery.shape[0])
    all_scores, all_indices = [], []
    for q_start in range(0, queries.shape[0], chunk_size):
        block = queries[q_start : q_start + chunk_size]
        best_scores = block.new_empty((block.shape[0], 0))
        best_indices = torch.empty((block.shape[0], 0), dtype=torch.long, device=block.device)
        for g_start in range(0, gallery.shape[0], chunk_size):
            scores = block @ gallery[g_start : g_start + chunk_size].T
            indices = torch.arange(g_start, g_start + scores.shape[1], device=block.device).expand_as(scores)
            candidates = torch.cat([best_scores, scores], dim=1)
            top = candidates.topk(min(k, candidates.shape[1]), dim=1)
            best_scores = top.values
            best_indices = torch.cat([best_indices, indices], dim=1).gather(1, top.indices)
        all_scores.append(best_scores)
        all_indices.append(best_indices)
    return torch.cat(all_scores), torch.cat(all_indices)
