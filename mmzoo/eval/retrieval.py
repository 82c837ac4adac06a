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

``retrieval_ranks`` walks (image rows x text columns) blocks of the similarity matrix once, on the embeddings'
device, with the block size taken from a memory budget: each block serves both directions, so every pair is scored
once (plus the blocks that hold correct pairs, scored first for the thresholds). Its counts equal those of the
full-matrix reference ``retrieval_ranks_full`` and of the former two-pass implementation (tested on integer-valued
embeddings, whose dot products are exact whatever the BLAS summation order, and on collapsed and duplicated
embeddings; with float embeddings a BLAS may round a score of a block differently from the same score in another
product, which can only matter for near-exact ties).

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


def _count(mask: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Count of a bool mask along ``dim``; an int32 sum is about twice as fast as the default int64 one."""
    return mask.sum(dim, dtype=torch.int32).long()


# Bytes of working memory per element of a similarity block: the float32 scores, two bool comparisons, and slack
# for the sums' temporaries.
_BYTES_PER_SCORE = 8
# On CPU the block is also kept about L3-sized (8 M scores, 32 MiB, ~2900 x 2900): measured at 10,000 pairs on a
# 2-core EPYC, 2**21 and 2**25 scores took 1.5x the CPU time of 2**23; both comparisons then read the block from
# cache instead of streaming a (1024 x 50,000) block from memory twice.
_CPU_BLOCK_SCORES = 2**23
DEFAULT_MEMORY_BUDGET = 512 * 2**20


def block_shape(
    num_images: int, num_texts: int, device: torch.device | str, max_k: int = 0,
    chunk_size: int | None = None, memory_budget: int | None = None,
) -> tuple[int, int]:
    """``(image rows, text columns)`` of one similarity block of :func:`retrieval_ranks`.

    A block holds at most ``memory_budget / 8`` scores (default budget 512 MiB; on CPU also at most 2**23 scores, so
    that it stays about cache-sized), as square as that allows. ``chunk_size`` fixes the rows; the block then also stays
    within ``chunk_size x num_texts`` scores. The top-k merges (``2 * max_k`` rows of a block's columns) fit the
    same bound.
    """
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else memory_budget
    if budget < _BYTES_PER_SCORE:
        raise ValueError(f"memory_budget must be at least {_BYTES_PER_SCORE} bytes, got {budget}.")
    scores = budget // _BYTES_PER_SCORE
    if torch.device(device).type == "cpu":
        scores = min(scores, _CPU_BLOCK_SCORES)
    if chunk_size is None:
        rows = max(1, min(num_images, int(scores**0.5)))
    else:
        rows = max(1, min(num_images, chunk_size))
        scores = min(scores, rows * num_texts)
    cols = max(1, min(num_texts, scores // max(rows, 2 * max_k)))
    return rows, cols


@torch.inference_mode()
def retrieval_ranks(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    text_to_image: torch.Tensor,
    chunk_size: int | None = None,
    max_k: int = 10,
    *,
    ties: Ties = "pessimistic",
    normalize: bool = True,
    memory_budget: int | None = None,
) -> RetrievalRanks:
    """Exact image->text and text->image ranks in one pass over similarity blocks (memory O(block + N)).

    Each ``(image rows x text columns)`` block of scores is computed once and serves both directions: its rows
    count, per image, the texts scoring at least (pessimistic) / above (optimistic) the image's best caption score,
    and its columns count, per text, the images against the caption's correct score. Both thresholds are read up
    front from the blocks that hold correct pairs (see ``_correct_scores``); the correct pairs inside a block are
    then taken out of the counts with their in-block scores, so only incorrect items count. Everything runs on the
    embeddings' device (a GPU when they are there).

    Extra memory: one block (``memory_budget``, default 512 MiB, on CPU at most 64 MiB) plus O(N) counters and
    O(max_k x N) top-k state (see ``bench/retrieval_eval.py`` for measurements).

    Args:
        image_embeds: ``(num_images, dim)`` float tensor.
        text_embeds: ``(num_texts, dim)`` float tensor, on the same device.
        text_to_image: ``(num_texts,)`` LongTensor, the image index of each caption (several captions per image
            allowed; every image needs at least one).
        chunk_size: image rows per block (default: chosen from ``memory_budget``); when given, a block is also at
            most ``chunk_size x num_texts`` scores.
        max_k: also return the indices of the top ``max_k`` gallery items per query (0 disables; default 10).
        ties: tie rule, ``"pessimistic"`` (default) or ``"optimistic"`` (see the module docstring).
        normalize: L2-normalise the embeddings first, i.e. rank by cosine similarity (default True).
        memory_budget: bytes of working memory for one block (see :func:`block_shape`).

    Returns:
        RetrievalRanks with ranks on the embeddings' device.

    Example:
        >>> images = torch.eye(3)
        >>> texts = torch.eye(3)[[0, 0, 1, 2]]  # image 0 has two captions
        >>> retrieval_ranks(images, texts, torch.tensor([0, 0, 1, 2])).text_to_image.tolist()
        [1, 1, 1, 1]
    """
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    images, texts, text_to_image = _check_inputs(image_embeds, text_embeds, text_to_image, ties, normalize)
    num_images, num_texts = images.shape[0], texts.shape[0]
    rows, cols = block_shape(num_images, num_texts, images.device, max(max_k, 0), chunk_size, memory_budget)
    best, correct = _correct_scores(images, texts, text_to_image, rows, cols)
    beats = torch.ge if ties == "pessimistic" else torch.gt
    device = images.device
    i2t = torch.zeros(num_images, dtype=torch.long, device=device)  # incorrect texts beating each image's best
    t2i = torch.zeros(num_texts, dtype=torch.long, device=device)  # incorrect images beating each caption's image
    k_texts, k_images = min(max_k, num_texts), min(max_k, num_images)
    # one score buffer and one mask buffer for every block: a fresh block-sized tensor per product would be a fresh
    # mmap (page faults and zeroing each time) on CPU
    score_buffer = torch.empty(rows * cols, dtype=images.dtype, device=device)
    mask_buffer = torch.empty(rows * cols, dtype=torch.bool, device=device)
    texts_t = texts.T
    i2t_top: list[torch.Tensor] = []
    if max_k > 0:  # running top-k of every text's column; -inf placeholders drop out (every score is finite)
        t2i_vals = torch.full((k_images, num_texts), float("-inf"), dtype=images.dtype, device=device)
        t2i_idx = torch.zeros((k_images, num_texts), dtype=torch.long, device=device)
    for a in range(0, num_images, rows):
        b = min(a + rows, num_images)
        row_best = best[a:b, None]
        row_vals, row_idx = [], []
        for p in range(0, num_texts, cols):
            q = min(p + cols, num_texts)
            shape = (b - a, q - p)
            scores = score_buffer[: shape[0] * shape[1]].view(shape)
            mask = mask_buffer[: shape[0] * shape[1]].view(shape)
            torch.mm(images[a:b], texts_t[:, p:q], out=scores)  # the only product of this pair of ranges (the
            # thresholds come from this very call, see _correct_scores)
            i2t[a:b] += _count(beats(scores, row_best, out=mask), 1)
            t2i[p:q] += _count(beats(scores, correct[None, p:q], out=mask), 0)
            # the block's correct pairs were counted above, each against its own threshold: take them out
            owners = text_to_image[p:q]
            inside = ((owners >= a) & (owners < b)).nonzero().flatten()
            if inside.numel():
                own = owners[inside]
                value = scores[own - a, inside]
                i2t.index_add_(0, own, -beats(value, best[own]).long())
                t2i[p + inside] -= beats(value, correct[p + inside]).long()
            if max_k > 0:
                top = scores.topk(min(k_texts, q - p), dim=1)
                row_vals.append(top.values)
                row_idx.append(top.indices + p)
                top = scores.topk(min(k_images, b - a), dim=0)
                vals = torch.cat([t2i_vals[:, p:q], top.values])
                idx = torch.cat([t2i_idx[:, p:q], top.indices + a])
                merged = vals.topk(k_images, dim=0)
                t2i_vals[:, p:q] = merged.values
                t2i_idx[:, p:q] = idx.gather(0, merged.indices)
        if max_k > 0:
            vals, idx = torch.cat(row_vals, 1), torch.cat(row_idx, 1)
            i2t_top.append(idx.gather(1, vals.topk(k_texts, dim=1).indices))
    if max_k <= 0:
        return RetrievalRanks(1 + i2t, 1 + t2i)
    return RetrievalRanks(1 + i2t, 1 + t2i, torch.cat(i2t_top), t2i_idx.T.contiguous())


def _correct_scores(images, texts, text_to_image, rows, cols):
    """Per image its best caption score, per caption its correct score.

    Each is read from the very block product the main pass computes for its pair of ranges (same operands, same
    shape), so that a threshold is bitwise the score it stands for: a BLAS rounds one dot product differently in
    products of different shapes, which matters for exact ties (duplicated or collapsed embeddings). Only blocks that
    hold a correct pair are computed: a band around the diagonal when captions come grouped by image (a few % of the
    main pass), every block when they come in random order.
    """
    num_images, num_texts = images.shape[0], texts.shape[0]
    device = images.device
    best = torch.full((num_images,), float("-inf"), dtype=images.dtype, device=device)
    correct = torch.empty(num_texts, dtype=images.dtype, device=device)
    chunk_of = text_to_image // rows
    tile_of = torch.arange(num_texts, device=device) // cols
    num_tiles = -(-num_texts // cols)
    pairs = torch.unique(chunk_of * num_tiles + tile_of).tolist()  # (row chunk, column tile) holding correct pairs
    for pair in pairs:
        a, p = (pair // num_tiles) * rows, (pair % num_tiles) * cols
        b, q = min(a + rows, num_images), min(p + cols, num_texts)
        owners = text_to_image[p:q]
        inside = ((owners >= a) & (owners < b)).nonzero().flatten()
        own = owners[inside]
        block = torch.empty((b - a, q - p), dtype=images.dtype, device=device)
        value = torch.mm(images[a:b], texts.T[:, p:q], out=block)[own - a, inside]
        correct[p + inside] = value
        best.scatter_reduce_(0, own, value, reduce="amax")
    return best, correct


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


@torch.inference_mode()
def retrieval_ranks_shared_captions(
    item_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    item_captions: list[list[str]],
    texts: list[str],
    chunk_size: int = 1024,
    *,
    ties: Ties = "pessimistic",
    normalize: bool = True,
) -> RetrievalRanks:
    """Exact ranks when a gallery item is correct for EVERY text equal to one of its captions (not only for the
    texts of its own row): datasets whose captions name a class (the built-in ``tones``: "a high rising tone" for
    every such clip) make a clip of the same class as right as the caption's own clip.

    ``rank = 1 + #{incorrect items scoring >= (pessimistic) / > (optimistic) the best correct one}`` in both
    directions (text -> item over all items; item -> text over all texts), as :func:`retrieval_ranks`. Chance R@1
    of text -> item is about (#items sharing the caption) / #items. Memory: ``chunk_size x num_items`` scores.

    Args:
        item_embeds: ``(num_items, dim)``; text_embeds: ``(num_texts, dim)``.
        item_captions: each item's captions (strings); texts: the query strings, one per row of ``text_embeds``.
    """
    if ties not in _TIES:
        raise ValueError(f"ties={ties!r} is not one of {_TIES}.")
    items = _prepare_embeds(item_embeds, "item_embeds", normalize)
    queries = _prepare_embeds(text_embeds, "text_embeds", normalize)
    if len(item_captions) != items.shape[0] or len(texts) != queries.shape[0]:
        raise ValueError(f"{len(item_captions)} caption lists for {items.shape[0]} items and {len(texts)} texts for "
                         f"{queries.shape[0]} text embeddings: give one per row")
    keys = {text: k for k, text in enumerate(dict.fromkeys(texts))}
    holds = torch.zeros(len(keys), items.shape[0], dtype=torch.bool, device=items.device)  # (key, item)
    for i, captions in enumerate(item_captions):
        for caption in captions:
            if caption in keys:
                holds[keys[caption], i] = True
    text_keys = torch.tensor([keys[t] for t in texts], dtype=torch.long, device=items.device)
    beats = torch.ge if ties == "pessimistic" else torch.gt
    lowest = torch.finfo(torch.float32).min
    t2i = torch.empty(len(texts), dtype=torch.long, device=items.device)
    best_item = torch.full((items.shape[0],), lowest, device=items.device)
    for start in range(0, len(texts), chunk_size):
        scores = queries[start:start + chunk_size].float() @ items.float().t()
        relevant = holds[text_keys[start:start + chunk_size]]
        best = scores.masked_fill(~relevant, lowest).amax(dim=1)
        t2i[start:start + chunk_size] = 1 + _count(beats(scores, best[:, None]) & ~relevant)
        best_item = torch.maximum(best_item, scores.masked_fill(~relevant, lowest).amax(dim=0))
    if (best_item == lowest).any():
        missing = (best_item == lowest).nonzero().flatten()[:5].tolist()
        raise ValueError(f"items {missing} have none of their captions among the texts; give every item a caption")
    i2t = torch.zeros(items.shape[0], dtype=torch.long, device=items.device)
    for start in range(0, len(texts), chunk_size):
        scores = queries[start:start + chunk_size].float() @ items.float().t()
        relevant = holds[text_keys[start:start + chunk_size]]
        i2t += _count(beats(scores, best_item[None, :]) & ~relevant, dim=0)
    return RetrievalRanks(image_to_text=i2t + 1, text_to_image=t2i)
