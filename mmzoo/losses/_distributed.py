"""Cross-rank helpers for the alignment losses (the only place where losses touch ``torch.distributed``).

Gradient convention (used by every loss in :mod:`mmzoo.losses.functional`)
-------------------------------------------------------------------------
DDP and FSDP *average* parameter gradients over ranks. The losses therefore return, on each rank, a
per-rank loss ``loss_r`` whose mean over ranks is the single-process loss ``L`` on the concatenated global
batch, and :func:`gather_with_grad` (and :func:`neighbour_exchange`) *sum* the gradients that all ranks send
back to a rank's rows. Then, on rank ``r``, the gradient of a local tensor ``x_r`` is ``world_size * dL/dx_r``
and, after DDP's averaging, every parameter gradient equals ``dL/dtheta`` of the single-process run. Do **not**
multiply the loss by ``world_size``.

Batch sizes
-----------
When every rank holds the same number of rows (what ``transformers.Trainer`` / accelerate deliver: even
batches by default, or ``drop_last``), the gather needs no size exchange and no host synchronisation. Code
that guarantees it runs the losses inside :func:`equal_batch_sizes` (``MmzooTrainer`` does); elsewhere the
local sizes are exchanged first (one small collective and a device-to-host copy), so uneven batches work.
"""

from __future__ import annotations

import contextlib
import threading

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["equal_batch_sizes", "gather_rows", "gather_with_grad", "gather_with_offset", "neighbour_exchange",
           "single_process", "world_info"]

_STATE = threading.local()


def world_info() -> tuple[int, int]:
    """Return ``(rank, world_size)`` of the default process group, ``(0, 1)`` when it is not initialised or
    inside :func:`single_process`."""
    if dist.is_available() and dist.is_initialized() and not getattr(_STATE, "local", False):
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@contextlib.contextmanager
def _flag(name: str, value: bool):
    """Set one of this thread's loss flags for the block, restoring the previous value after it."""
    previous = getattr(_STATE, name, False)
    setattr(_STATE, name, value)
    try:
        yield
    finally:
        setattr(_STATE, name, previous)


@contextlib.contextmanager
def single_process():
    """The losses inside this block see only this rank's rows (no collective), as in a one-process run: for
    work one rank does alone while the others wait (e.g. ``precision: auto``'s calibration on rank 0)."""
    with _flag("local", True):
        yield


@contextlib.contextmanager
def equal_batch_sizes(enabled: bool = True):
    """Promise that every rank passes tensors with the same first dimension to the gathers inside this block,
    so they skip the size exchange (no host sync). Breaking the promise makes the collective fail or hang."""
    with _flag("equal", enabled):
        yield


def _assume_equal(equal_sizes: bool | None) -> bool:
    return getattr(_STATE, "equal", False) if equal_sizes is None else equal_sizes


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 (local sizes may differ); backward all-reduces (SUM) and keeps the local slice."""

    @staticmethod
    def forward(ctx, x: Tensor, sizes: list[int], rank: int) -> Tensor:  # type: ignore[override]
        ctx.offset, ctx.size = sum(sizes[:rank]), sizes[rank]
        max_size = max(sizes)
        x = x.contiguous()
        if x.shape[0] < max_size:  # pad: all_gather needs equal shapes
            x = torch.cat([x, x.new_zeros((max_size - x.shape[0], *x.shape[1:]))])
        parts = [torch.empty_like(x) for _ in sizes]
        dist.all_gather(parts, x)
        if all(n == max_size for n in sizes):
            return torch.cat(parts)
        return torch.cat([part[:n] for part, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        grad = grad.contiguous().clone()  # all_reduce works in place; never write into autograd's buffer
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.offset : ctx.offset + ctx.size], None, None


def _sizes(x: Tensor, world_size: int, equal_sizes: bool | None) -> list[int]:
    if _assume_equal(equal_sizes):
        return [x.shape[0]] * world_size
    local = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    all_sizes = [torch.empty_like(local) for _ in range(world_size)]
    dist.all_gather(all_sizes, local)
    return torch.cat(all_sizes).tolist()  # one device-to-host copy


def gather_with_offset(x: Tensor, equal_sizes: bool | None = None) -> tuple[Tensor, int]:
    """Gather ``x`` from all ranks with gradients; also return where the local rows start.

    Args:
        x: ``(n_r, ...)`` local tensor; ``n_r`` may differ between ranks unless ``equal_sizes``.
        equal_sizes: ``True``: every rank has the same ``n_r`` (no size exchange, no host sync); ``False``:
            exchange the sizes; ``None``: ``True`` inside :func:`equal_batch_sizes`, else ``False``.

    Returns:
        ``(gathered, offset)``: ``gathered`` is ``(sum_r n_r, ...)`` in rank order and
        ``gathered[offset : offset + n_r]`` holds this rank's rows. Single process: ``(x, 0)``.
    """
    rank, world_size = world_info()
    if world_size == 1:
        return x, 0
    sizes = _sizes(x, world_size, equal_sizes)
    return _GatherWithGrad.apply(x, sizes, rank), sum(sizes[:rank])


def gather_with_grad(x: Tensor, equal_sizes: bool | None = None) -> Tensor:
    """All-gather ``x`` (``(n_r, ...)``) over the default process group, keeping gradients.

    Forward: concatenation of every rank's ``x`` along dim 0 (rank order). Backward: the incoming
    gradients of all ranks are summed (``all_reduce``) and each rank keeps the slice of its own rows, so
    the gradient of ``x`` is the gradient of ``sum_r loss_r`` (see the module docstring for why that
    matches single-process training under DDP/FSDP averaging). No-op when not distributed.
    """
    return gather_with_offset(x, equal_sizes)[0]


@torch.no_grad()
def gather_rows(x: Tensor) -> Tensor:
    """All-gather ``x`` (``(n_r, ...)``, sizes may differ) without gradients, in rank order (evaluation)."""
    rank, world_size = world_info()
    if world_size == 1:
        return x
    return _GatherWithGrad.apply(x, _sizes(x, world_size, False), rank)


class _NeighbourExchange(torch.autograd.Function):
    """Send ``x`` to rank ``to``, receive the same-shaped tensor from rank ``source``; backward sends the
    gradient back the other way (so it reaches the rows' owner)."""

    @staticmethod
    def forward(ctx, x: Tensor, to: int, source: int) -> Tensor:  # type: ignore[override]
        ctx.to, ctx.source = to, source
        return _exchange(x, to, source)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        return _exchange(grad, ctx.source, ctx.to), None, None


def _exchange(x: Tensor, to: int, source: int) -> Tensor:
    x = x.contiguous()
    received = torch.empty_like(x)
    ops = [dist.P2POp(dist.isend, x, to), dist.P2POp(dist.irecv, received, source)]
    for request in dist.batch_isend_irecv(ops):
        request.wait()
    return received


def neighbour_exchange(x: Tensor, to: int, source: int) -> Tensor:
    """Ring step with gradients: this rank's ``x`` goes to rank ``to``; returns what rank ``source`` sent.

    Every rank must call it with tensors of one shape (the ring SigLIP loss passes texts of equal batches).
    """
    return _NeighbourExchange.apply(x, to, source)
