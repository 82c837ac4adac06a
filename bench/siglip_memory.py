"""Transient memory of distributed SigLIP: all-gather vs ring (neighbour exchange), on CPU processes (gloo).

    python bench/siglip_memory.py                 # 2 processes, 2048 pairs per rank, width 768
    python bench/siglip_memory.py --quick         # 256 pairs per rank, seconds

Each rank runs forward + backward of ``mmzoo.losses.sigmoid_loss`` on its local embeddings (leaf tensors) with
``exchange="all_gather"`` and ``exchange="ring"``. Transient memory is the peak of the live bytes of the tensors
created during the call (a ``TorchDispatchMode`` sees every op's outputs, a finaliser sees each storage freed), so
it counts the gathered embeddings, the logits, everything autograd saves and the gradients. Also printed: the
loss and the largest gradient difference between the two variants (they compute the same function). Measured,
never asserted.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MIB = 2**20


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--world", type=int, default=2, help="processes")
    p.add_argument("--batch", type=int, default=2048, help="pairs per rank")
    p.add_argument("--dim", type=int, default=768, help="embedding width")
    p.add_argument("--quick", action="store_true", help="256 pairs per rank, width 128")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.dim = 256, 128
    return args


class LiveBytes:
    """Live CPU storage bytes created inside the block (every op's outputs, freed when their storage dies)."""

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode
        from torch.utils._pytree import tree_flatten

        tracker = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                for t in tree_flatten(out)[0]:
                    if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                        tracker.add(t.untyped_storage())
                return out

        self.mode, self.live, self.peak, self.seen = Mode(), 0, 0, set()

    def add(self, storage) -> None:
        import weakref

        key, size = storage.data_ptr(), storage.nbytes()
        if size == 0 or key in self.seen:
            return
        self.seen.add(key)
        self.live += size
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self.free, key, size)

    def free(self, key, size) -> None:
        self.seen.discard(key)
        self.live -= size


def peak_transient_bytes(fn) -> tuple[int, object]:
    """(peak live CPU bytes allocated during ``fn`` (forward and backward), fn's result)."""
    tracker = LiveBytes()
    with tracker.mode:
        result = fn()
    return tracker.peak, result


def _worker(rank: int, port: int, args, out_dir: str) -> None:
    from mmzoo.losses import sigmoid_loss

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=args.world, timeout=timedelta(seconds=300))
    g = torch.Generator().manual_seed(rank)
    image = F.normalize(torch.randn(args.batch, args.dim, generator=g), dim=-1)
    text = F.normalize(torch.randn(args.batch, args.dim, generator=g), dim=-1)
    scale, bias = torch.tensor(10.0), torch.tensor(-10.0)
    out = {}
    for exchange in ("all_gather", "ring"):
        leaves = [x.clone().requires_grad_(True) for x in (image, text, scale, bias)]

        def step():
            loss = sigmoid_loss(*leaves, exchange=exchange)[0]
            loss.backward()
            return loss.detach()

        dist.barrier()
        peak, loss = peak_transient_bytes(step)
        out[exchange] = {"peak": peak, "loss": loss, "grads": [x.grad for x in leaves]}
    if rank == 0:
        torch.save(out, Path(out_dir) / "rank0.pt")
    dist.destroy_process_group()


def main(argv=None) -> None:
    import tempfile

    args = parse_args(argv)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        mp.start_processes(_worker, args=(port, args, tmp), nprocs=args.world, start_method="fork")
        out = torch.load(Path(tmp) / "rank0.pt")
    n, total = args.batch, args.batch * args.world
    ring, gather = out["ring"], out["all_gather"]
    grad_diff = max((a - b).abs().max().item() for a, b in zip(ring["grads"], gather["grads"]))
    print(f"# distributed SigLIP, {args.world} processes x {n} pairs (global {total}), width {args.dim}, fp32, rank 0")
    print()
    print("| exchange | transient MiB | n x N logits MiB | loss |")
    print("| --- | --- | --- | --- |")
    for name, r in (("all_gather", gather), ("ring", ring)):
        print(f"| {name} | {r['peak'] / MIB:.1f} | {n * total * 4 / MIB:.1f} | {r['loss'].item():.6f} |")
    print()
    print(f"ring / all_gather transient memory: {ring['peak'] / max(gather['peak'], 1):.2f}; "
          f"largest gradient difference: {grad_diff:.2e}")


if __name__ == "__main__":
    main()
