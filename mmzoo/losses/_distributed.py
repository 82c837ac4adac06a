"""Cross-rank helpers for the alignment losses (the only place where losses touch ``torch.distributed``).

Gradient convention (used by every loss in :mod:`mmzoo.losses.functional`)
-------------------------------------------------------------------------
DDP and FSDP *average* parameter gradients over ranks. The losses therefore return, on each rank, a
per-rank loss ``loss_r`` whose mean over ranks is the single-process loss ``L`` on the concatenated global
batch, and :func:`gather_with_grad` *sums* the gradients that all ranks send back to a rank's slice.
Then, on rank ``r``, the gradient of a local tensor ``x_r`` is ``world_size * dL/dx_r`` and, after DDP's
averaging, every parameter gradient equals ``dL/dtheta`` of the single-process run. Do **not** multiply
the loss by ``world_size``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["average_gradients", "gather_with_grad", "gather_with_offset", "world_info"]


def world_info() -> tuple[int, int]:
    """Return ``(rank, world_size)`` of the default process group, ``(0, 1)`` when it is not initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


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
        return torch.cat([part[:n] for part, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        grad = grad.contiguous().clone()  # all_reduce works in place; never write into autograd's buffer
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.offset : ctx.offset + ctx.size], None, None


def gather_with_offset(x: Tensor) -> tuple[Tensor, int]:
    """Gather ``x`` from all ranks with gradients; also return where the local rows start.

    Args:
        x: ``(n_r, ...)`` local tensor; ``n_r`` may differ between ranks (one extra size exchange).

    Returns:
        ``(gathered, offset)``: ``gathered`` is ``(sum_r n_r, ...)`` in rank order and
        ``gathered[offset : offset + n_r]`` holds this rank's rows. Single process: ``(x, 0)``.
    """
    rank, world_size = world_info()
    if world_size == 1:
        return x, 0
    local = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    all_sizes = [torch.empty_like(local) for _ in range(world_size)]
    dist.all_gather(all_sizes, local)
    sizes = [int(s.item()) for s in all_sizes]
    return _GatherWithGrad.apply(x, sizes, rank), sum(sizes[:rank])


def gather_with_grad(x: Tensor) -> Tensor:
    """All-gather ``x`` (``(n_r, ...)``) over the default process group, keeping gradients.

    Forward: concatenation of every rank's ``x`` along dim 0 (rank order). Backward: the incoming
    gradients of all ranks are summed (``all_reduce``) and each rank keeps the slice of its own rows, so
    the gradient of ``x`` is the gradient of ``sum_r loss_r`` (see the module docstring for why that
    matches single-process training under DDP/FSDP averaging). No-op when not distributed.
    """
    return gather_with_offset(x)[0]


@torch.no_grad()
def average_gradients(parameters) -> None:
    """Average ``.grad`` of ``parameters`` over ranks in place (DDP's reduction, done by hand).

    Use it after :func:`mmzoo.losses.grad_cache.grad_cache_step` run under ``ddp_model.no_sync()``.
    Parameters without a gradient are skipped; every rank must hold gradients for the same parameters
    (otherwise the collectives do not match up).
    No-op when not distributed.
    """
    _, world_size = world_info()
    if world_size == 1:
        return
    for p in parameters:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(world_size)
