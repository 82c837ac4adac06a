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

import contextlib
from collections.abc import Callable, Mapping, Sequence
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


def _replay(encode: Callable[[Inputs], Tensor], chunk: Inputs, state, grad: Tensor) -> None:
    """Re-encode one chunk with a graph (same RNG state) and backprop its slice of the cached gradient."""
    _set_rng(state)
    encode(chunk).backward(grad)


def grad_cache_step(
    encode_first: Callable[[Inputs], Tensor],
    encode_second: Callable[[Inputs], Tensor],
    first_inputs: Inputs,
    second_inputs: Inputs,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    chunk_size: int,
    *,
    loss_params: Sequence[Tensor] | None = None,
    encode_last: Callable[[Inputs, Inputs], tuple[Tensor, Tensor]] | None = None,
    no_sync: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> Tensor:
    """Compute ``loss_fn(encode_first(first), encode_second(second))`` and accumulate its parameter gradients
    into ``.grad`` with at most ``chunk_size`` examples' activations alive at a time.

    Args:
        encode_first: maps one chunk of ``first_inputs`` to ``(chunk, D)`` embeddings. It runs first, so pass
            the modality that the plain forward embeds first (mmzoo models: the text) to draw the same dropout.
        encode_second: the same for ``second_inputs``.
        first_inputs: ``(B, ...)`` tensor, or a mapping (e.g. ``{"input_ids": ..., "attention_mask": ...}``)
            whose tensor values share batch size ``B``; non-tensor values are passed to every chunk unchanged.
        second_inputs: the same for the other modality (same ``B``).
        loss_fn: ``(first_embeds (B, D), second_embeds (B, D)) -> scalar``; may use learnable parameters
            (``logit_scale``, ``logit_bias``) and distributed gathers.
        chunk_size: examples per encoder call (> 0).
        loss_params: the parameters ``loss_fn`` uses directly. Given, their gradients are folded into the last
            chunk's backward (so one backward, e.g. DDP's, covers every parameter); ``None``: the loss is
            backpropagated on its own and they get their gradients there.
        encode_last: ``(first_chunk, second_chunk) -> (first_embeds, second_embeds)`` for the last pair of
            chunks, e.g. one forward of the DDP-wrapped model, whose backward then all-reduces the accumulated
            gradients in DDP's buckets, overlapped with the computation. Default: the two encoders in turn.
        no_sync: a context manager factory (``ddp.no_sync``) entered for the backwards of all chunks but the last.

    Returns:
        The loss, detached. Gradients are accumulated (added) into ``.grad``; call ``optimizer.step()`` next.

    Order of the random draws: chunks ``0..k-2`` of the first modality, then of the second, then the last chunk
    of each, back to back (so one forward of a model over the last pair draws what was recorded). With one
    chunk that is exactly the plain forward's order; the global RNG is left as after it. Each chunk's forward
    runs twice, so running statistics (BatchNorm) are updated twice. Only CPU and CUDA RNG are replayed.
    """
    if not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"grad_cache_step: chunk_size must be a positive int, got {chunk_size!r}.")
    first = _split(first_inputs, chunk_size, "first_inputs")
    second = _split(second_inputs, chunk_size, "second_inputs")
    if len(first) != len(second):
        raise ValueError(f"grad_cache_step: {len(first)} chunks of first_inputs but {len(second)} of "
                         "second_inputs; both modalities need the same batch size")
    last = len(first) - 1
    order = [(0, i) for i in range(last)] + [(1, i) for i in range(last)] + [(0, last), (1, last)]
    chunks, encoders = (first, second), (encode_first, encode_second)
    states: list[list] = [[None] * len(first), [None] * len(first)]
    embeds: list[list] = [[None] * len(first), [None] * len(first)]
    with torch.no_grad():
        for side, i in order:
            states[side][i] = _get_rng()
            embeds[side][i] = encoders[side](chunks[side][i])
    rng_after_forward = _get_rng()

    leaves = [torch.cat(e).requires_grad_(True) for e in embeds]
    params = [p for p in (loss_params or ()) if p.requires_grad]
    with torch.enable_grad():
        loss = loss_fn(*leaves)
        if loss_params is None:
            loss.backward()
            grads, param_grads = [leaf.grad for leaf in leaves], ()
        else:
            found = torch.autograd.grad(loss, leaves + params, allow_unused=True)
            grads, param_grads = list(found[:2]), found[2:]
        grads = [None if g is None else g.split([e.shape[0] for e in side]) for g, side in zip(grads, embeds)]
        with no_sync() if no_sync is not None else contextlib.nullcontext():
            for side, i in order[:-2]:
                if grads[side] is not None:
                    _replay(encoders[side], chunks[side][i], states[side][i], grads[side][i])
        _set_rng(states[0][last])
        if encode_last is not None:
            outputs = encode_last(first[last], second[last])
        else:
            outputs = [encode_first(first[last])]
            _set_rng(states[1][last])
            outputs.append(encode_second(second[last]))
        surrogate = sum((out * g[last]).sum() for out, g in zip(outputs, grads) if g is not None)
        surrogate = surrogate + sum((p * g).sum() for p, g in zip(params, param_grads) if g is not None)
        if torch.is_tensor(surrogate) and surrogate.requires_grad:
            surrogate.backward()
    _set_rng(rng_after_forward)
    return loss.detach()
