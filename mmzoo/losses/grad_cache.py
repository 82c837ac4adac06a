"""Gradient caching for large-batch contrastive training in bounded memory (Gao et al. 2021, "Scaling Deep
Contrastive Learning Batch Size under Memory Limited Setup").

The loss couples the whole batch only through the embeddings, so: (1) embed every chunk without a graph,
(2) compute the loss on the concatenated embeddings as leaf tensors and backprop to get ``dL/d(embedding)``
(and the gradients of loss parameters such as ``logit_scale``), (3) re-encode each chunk with a graph and
backprop its cached embedding gradient. Peak activation memory is one chunk; the parameter gradients equal
those of one backward through the full graph with the same chunking (dropout masks are replayed by
restoring the RNG state per chunk).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = ["grad_cache_step"]

Inputs = Tensor | Mapping[str, Any]


def _split(inputs: Inputs, chunk_size: int, name: str) -> list[Inputs]:
    """Split a tensor, or every tensor value of a mapping, along dim 0 into chunks of ``chunk_size``."""
    if isinstance(inputs, Tensor):
        return list(inputs.split(chunk_size))
    if not isinstance(inputs, Mapping):
        kind = type(inputs).__name__
        raise TypeError(f"grad_cache_step: {name} must be a Tensor or a mapping of tensors, got {kind}.")
    sizes = {k: v.shape[0] for k, v in inputs.items() if isinstance(v, Tensor)}
    if not sizes or len(set(sizes.values())) != 1:
        raise ValueError(f"grad_cache_step: {name} needs tensors with one common batch size, got sizes {sizes}.")
    batch = next(iter(sizes.values()))
    return [
        {k: v[start : start + chunk_size] if k in sizes else v for k, v in inputs.items()}
        for start in range(0, batch, chunk_size)
    ]


def _get_rng() -> tuple[Tensor, list[Tensor] | None]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _set_rng(state: tuple[Tensor, list[Tensor] | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])


def _embed(encode: Callable[[Inputs], Tensor], chunks: list[Inputs], states: list) -> Tensor:
    """Graph-free pass; records the RNG state before each chunk."""
    embeds = []
    for chunk in chunks:
        states.append(_get_rng())
        embeds.append(encode(chunk))
    return torch.cat(embeds)


def _replay(encode: Callable[[Inputs], Tensor], chunks: list[Inputs], states: list, grad: Tensor | None) -> None:
    """Re-encode each chunk with a graph (same RNG state) and backprop its slice of the cached gradient."""
    if grad is None:  # the loss did not depend on this modality
        return
    start = 0
    for chunk, state in zip(chunks, states):
        _set_rng(state)
        embeds = encode(chunk)
        embeds.backward(grad[start : start + embeds.shape[0]])
        start += embeds.shape[0]


def grad_cache_step(
    encode_image: Callable[[Inputs], Tensor],
    encode_text: Callable[[Inputs], Tensor],
    image_inputs: Inputs,
    text_inputs: Inputs,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    chunk_size: int,
) -> Tensor:
    """Compute ``loss_fn(encode_image(images), encode_text(texts))`` and accumulate its parameter gradients
    into ``.grad`` with at most ``chunk_size`` examples' activations alive at a time.

    Args:
        encode_image: maps one chunk of ``image_inputs`` to ``(chunk, D)`` embeddings.
        encode_text: maps one chunk of ``text_inputs`` to ``(chunk, D)`` embeddings.
        image_inputs: ``(B, ...)`` tensor, or a mapping (e.g. ``{"pixel_values": ...}``) whose tensor values
            share batch size ``B``; non-tensor values are passed to every chunk unchanged.
        text_inputs: same for the texts (e.g. ``{"input_ids": ..., "attention_mask": ...}``).
        loss_fn: ``(image_embeds (B, D), text_embeds (B, D)) -> scalar``; may use learnable parameters
            (``logit_scale``, ``logit_bias``) and distributed gathers, which get their gradients here.
        chunk_size: examples per encoder call (> 0).

    Returns:
        The loss, detached. Gradients are accumulated (added) into ``.grad``; call ``optimizer.step()`` next.

    The global RNG is left as after one plain forward, so later random ops match the plain path. Each
    chunk's forward runs twice, so running statistics (BatchNorm) are updated twice. Under DDP, call it in
    ``with ddp_model.no_sync():`` and then :func:`mmzoo.losses._distributed.average_gradients`, since the
    per-chunk backwards do not fit DDP's one-forward-one-backward hooks. Only CPU and CUDA RNG are replayed.
    """
    if not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"grad_cache_step: chunk_size must be a positive int, got {chunk_size!r}.")
    image_chunks = _split(image_inputs, chunk_size, "image_inputs")
    text_chunks = _split(text_inputs, chunk_size, "text_inputs")
    image_states: list = []
    text_states: list = []
    with torch.no_grad():
        image_embeds = _embed(encode_image, image_chunks, image_states)
        text_embeds = _embed(encode_text, text_chunks, text_states)
    rng_after_forward = _get_rng()

    image_embeds.requires_grad_(True)
    text_embeds.requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(image_embeds, text_embeds)
        loss.backward()
        _replay(encode_image, image_chunks, image_states, image_embeds.grad)
        _replay(encode_text, text_chunks, text_states, text_embeds.grad)
    _set_rng(rng_after_forward)
    return loss.detach()
