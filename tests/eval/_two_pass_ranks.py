"""The two-pass exact ranks mmzoo shipped before the one-pass kernel: the reference oracle of the tests.

Kept verbatim (renamed) so that the one-pass ranks can be compared with what ``retrieval_ranks`` returned before.
"""

from __future__ import annotations

import torch

from mmzoo.eval.retrieval import RetrievalRanks, Ties, _check_inputs

def _count(mask: torch.Tensor) -> torch.Tensor:
    """Row-wise count of a (chunk, N) bool mask; an int32 sum is about twice as fast as the default int64 one."""
    return mask.sum(1, dtype=torch.int32).long()


@torch.inference_mode()
def two_pass_ranks(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    text_to_image: torch.Tensor,
    chunk_size: int = 1024,
    max_k: int = 10,
    *,
    ties: Ties = "pessimistic",
    normalize: bool = True,
) -> RetrievalRanks:
    """``retrieval_ranks`` as it was: one pass per direction, each comparing whole blocks to thresholds."""
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


