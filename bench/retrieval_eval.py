"""Benchmark: chunked vs full-matrix retrieval ranks (mmzoo.eval.retrieval) on random 128-d image-text pairs.

Command (from the repository root):

    python bench/retrieval_eval.py                       # sizes 5000 20000 50000, dim 128, chunk 1024, cap 8 GiB
    python bench/retrieval_eval.py --sizes 2000 --chunk-size 256 --full-mem-cap-gib 1

For N pairs (N images, N captions, one caption per image), each case (size, method) runs in a fresh subprocess:
it builds the embeddings, runs a tiny warm-up, reads its RSS, times one call (wall and CPU seconds) of
``retrieval_ranks`` (chunked) or ``retrieval_ranks_full`` (full matrix), and reports the peak RSS growth =
peak RSS (``VmHWM``) after the call - RSS before it (this sees torch's native allocations, which tracemalloc does not).
The machine may be shared: CPU seconds are steadier than wall seconds then. The full-matrix path is skipped when its
estimated peak (``FULL_BYTES_PER_PAIR`` bytes per image-text pair) exceeds ``--full-mem-cap-gib``; the table says so.
The "same ranks" column compares the ranks of both paths via a hash. Ratios are full / chunked, measured in one run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# retrieval_ranks_full holds the float32 scores (4 B), a bool caption mask and its negation (2 B), a masked float32
# copy (4 B) and bool comparisons at once; measured 12.4 bytes per image-text pair at N=5000, rounded up.
FULL_BYTES_PER_PAIR = 13
GIB, MIB = 1024**3, 1024**2


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    """VmHWM: this process's own peak RSS (ru_maxrss survives exec and can report the parent's peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_case(size: int, method: str, dim: int, chunk_size: int, seed: int) -> dict:
    """Worker: one measurement in this (fresh) process."""
    import torch

    from mmzoo.eval.retrieval import retrieval_ranks, retrieval_ranks_full

    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(size, dim, generator=gen)
    texts = torch.randn(size, dim, generator=gen)
    text_to_image = torch.arange(size)
    fn = {
        "chunked": lambda i, t, m: retrieval_ranks(i, t, m, chunk_size=chunk_size),
        "full": lambda i, t, m: retrieval_ranks_full(i, t, m),
    }[method]
    fn(images[:64], texts[:64], text_to_image[:64])  # warm-up: thread pools, kernels

    rss_before, cpu_before = _rss_bytes(), _cpu_seconds()
    start = time.perf_counter()
    ranks = fn(images, texts, text_to_image)
    seconds, cpu_seconds = time.perf_counter() - start, _cpu_seconds() - cpu_before
    peak = _peak_rss_bytes()
    digest = hashlib.sha256(ranks.image_to_text.numpy().tobytes() + ranks.text_to_image.numpy().tobytes())
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "peak_growth_mib": (peak - rss_before) / MIB,
        "ranks_sha": digest.hexdigest()[:16],
        "i2t_recall_at_10": (ranks.image_to_text <= 10).float().mean().item(),
        "threads": torch.get_num_threads(),
    }


def _secs(result: dict) -> str:
    return f"{result['seconds']:>7.2f} ({result['cpu_seconds']:>5.1f})"


def measure(size: int, method: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--worker", method, "--sizes", str(size), "--dim", str(args.dim),
           "--chunk-size", str(args.chunk_size), "--seed", str(args.seed)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {method} N={size} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000, 50000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--full-mem-cap-gib", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=["chunked", "full"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_case(args.sizes[0], args.worker, args.dim, args.chunk_size, args.seed)))
        return

    print(f"retrieval ranks, random {args.dim}-d pairs, chunk_size={args.chunk_size}, cpus={os.cpu_count()}, "
          f"full matrix skipped above {args.full_mem_cap_gib:g} GiB est. ({FULL_BYTES_PER_PAIR} B/pair)")  # fmt: skip
    header = (f"{'N':>6} | {'chunked s (cpu)':>15} | {'chunked MiB':>11} | {'full s (cpu)':>15} | {'full MiB':>8} | "
              f"{'time full/chk':>13} | {'mem full/chk':>12} | same ranks")  # fmt: skip
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        chunked = measure(size, "chunked", args)
        estimate = FULL_BYTES_PER_PAIR * size * size
        row = f"{size:>6} | {_secs(chunked)} | {chunked['peak_growth_mib']:>11.0f} | "
        if estimate > args.full_mem_cap_gib * GIB:
            row += f"skipped: full matrix est. {estimate / GIB:.1f} GiB > cap {args.full_mem_cap_gib:g} GiB"
        else:
            full = measure(size, "full", args)
            row += (f"{_secs(full)} | {full['peak_growth_mib']:>8.0f} | "
                    f"{full['seconds'] / chunked['seconds']:>13.2f} | "
                    f"{full['peak_growth_mib'] / max(chunked['peak_growth_mib'], 1e-9):>12.1f} | "
                    f"{'yes' if full['ranks_sha'] == chunked['ranks_sha'] else 'NO'}")  # fmt: skip
        print(row, flush=True)
    print(f"torch threads: {chunked['threads']}; s = wall seconds (cpu = user + sys seconds of the worker); "
          "MiB = peak RSS growth over the call; fresh process per cell")  # fmt: skip


if __name__ == "__main__":
    main()
