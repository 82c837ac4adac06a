"""Benchmark: one-pass vs two-pass vs full-matrix retrieval ranks, and a one-pass top-k, on random 128-d pairs.

Command (from the repository root):

    python bench/retrieval_eval.py                       # sizes 5000 20000 50000, dim 128, block from the memory budget, cap 14 GiB
    python bench/retrieval_eval.py --sizes 2000 --chunk-size 256 --full-mem-cap-gib 1

For N pairs (N images, N captions, one caption per image), each case (size, method) runs in a fresh subprocess:
it builds the embeddings, runs a tiny warm-up, reads its RSS, times one call (wall and CPU seconds) of
``retrieval_ranks`` (mmzoo's one-pass exact ranks), the former two-pass implementation (kept as the tests' oracle
in ``tests/eval/_two_pass_ranks.py``), ``chunked_topk_similarity`` in both directions (top-10 only, no exact ranks:
the speed an exact method can aim at) or the naive full matrix (``naive_full_ranks`` below: one float32 N x N matrix,
compared by row bands; the library's ``retrieval_ranks_full`` reference holds ~13 B per pair and would not fit 50k in
24 GiB), and reports the peak RSS growth =
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
# naive_full_ranks holds the float32 scores (4 B per pair) plus one row band of bool comparisons.
FULL_BYTES_PER_PAIR = 4.2
NAIVE_BAND_ROWS = 32  # rows per comparison band: the fastest measured here at 50k (16: 5.3 s, 32: 3.9 s, 64: 5.3 s, 256: 20.7 s)
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


def naive_full_ranks(images, texts, text_to_image, ties: str = "pessimistic"):
    """The naive baseline as a user would write it with memory to spare: the whole (N_images x N_texts) float32
    score matrix in one product, then each direction's counts against the correct scores, a band of rows at a time
    (so the only large allocation is the matrix itself). Same rank rules as ``retrieval_ranks`` (tested equal below
    via the ranks hash)."""
    import torch
    import torch.nn.functional as F

    from mmzoo.eval.retrieval import RetrievalRanks

    with torch.inference_mode():
        images, texts = F.normalize(images, dim=-1), F.normalize(texts, dim=-1)
        beats = torch.ge if ties == "pessimistic" else torch.gt
        scores = images @ texts.T
        columns = torch.arange(texts.shape[0])
        correct = scores[text_to_image, columns]  # each caption's score with its image
        best = torch.full((images.shape[0],), float("-inf")).scatter_reduce_(0, text_to_image, correct, "amax")
        i2t = torch.zeros(images.shape[0], dtype=torch.long)
        t2i = torch.zeros(texts.shape[0], dtype=torch.long)
        for a in range(0, images.shape[0], NAIVE_BAND_ROWS):
            band = scores[a : a + NAIVE_BAND_ROWS]
            i2t[a : a + NAIVE_BAND_ROWS] = beats(band, best[a : a + NAIVE_BAND_ROWS, None]).sum(1)
            t2i += beats(band, correct[None]).sum(0)
        # take the correct items out of the counts: an image's own captions, a caption's own image
        own = torch.zeros_like(i2t).index_add_(0, text_to_image, beats(correct, best[text_to_image]).long())
        return RetrievalRanks(1 + i2t - own, 1 + t2i - beats(correct, correct).long())


def run_case(size: int, method: str, dim: int, chunk_size: int | None, seed: int, max_k: int = 0) -> dict:
    """Worker: one measurement in this (fresh) process."""
    import torch

    from mmzoo.eval.retrieval import chunked_topk_similarity, retrieval_ranks

    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(size, dim, generator=gen)
    texts = torch.randn(size, dim, generator=gen)
    text_to_image = torch.arange(size)

    def two_pass(i, t, m):  # the implementation mmzoo shipped before the one-pass ranks (kept as a test oracle)
        from tests.eval._two_pass_ranks import two_pass_ranks

        return two_pass_ranks(i, t, m, chunk_size=chunk_size or 1024, max_k=max_k)

    def topk(i, t, m):  # one-pass chunked top-k in both directions: no exact ranks, the speed to aim at
        from mmzoo.eval.retrieval import RetrievalRanks

        k = max(max_k, 10)
        i2t = chunked_topk_similarity(i, t, k, chunk_size or 1024)[1]
        t2i = chunked_topk_similarity(t, i, k, chunk_size or 1024)[1]
        hit = lambda idx, want: 1 + (idx != want[:, None]).long().cumprod(1).sum(1)  # noqa: E731 (rank or k+1)
        return RetrievalRanks(hit(i2t, torch.arange(len(i))), hit(t2i, m))

    fn = {
        "chunked": lambda i, t, m: retrieval_ranks(i, t, m, chunk_size=chunk_size, max_k=max_k),
        "two_pass": two_pass,
        "topk": topk,
        "full": lambda i, t, m: naive_full_ranks(i, t, m),
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
           "--seed", str(args.seed), "--max-k", str(args.max_k)]  # fmt: skip
    if args.chunk_size:
        cmd += ["--chunk-size", str(args.chunk_size)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker {method} N={size} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000, 50000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--chunk-size", type=int, default=None, help="image rows per block (default: from the "
                        "memory budget)")
    parser.add_argument("--max-k", type=int, default=0, help="also return top-k indices (evaluation uses 0)")
    parser.add_argument("--full-mem-cap-gib", type=float, default=14.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the raw measurements here")
    parser.add_argument("--worker", choices=["chunked", "two_pass", "topk", "full"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_case(args.sizes[0], args.worker, args.dim, args.chunk_size, args.seed, args.max_k)))
        return

    print(f"retrieval ranks, random {args.dim}-d pairs, chunk_size={args.chunk_size}, max_k={args.max_k}, "
          f"cpus={os.cpu_count()}, load average {os.getloadavg()[0]:.1f}, full matrix skipped above "
          f"{args.full_mem_cap_gib:g} GiB est. ({FULL_BYTES_PER_PAIR} B/pair)")  # fmt: skip
    print("| N | mmzoo one-pass s (cpu) | MiB | two-pass s (cpu) | MiB | top-k s (cpu) | MiB | full s (cpu) | MiB | "
          "one-pass / full time | one-pass / two-pass time | same ranks |")
    print("|" + " --- |" * 12)
    results = {}
    for size in args.sizes:
        cells = {method: measure(size, method, args) for method in ("chunked", "two_pass", "topk")}
        estimate = FULL_BYTES_PER_PAIR * size * size
        row = f"| {size} | " + " | ".join(f"{_secs(c)} | {c['peak_growth_mib']:.0f}" for c in cells.values()) + " | "
        same = cells["chunked"]["ranks_sha"] == cells["two_pass"]["ranks_sha"]
        ratio_two = cells["chunked"]["seconds"] / cells["two_pass"]["seconds"]
        if estimate > args.full_mem_cap_gib * GIB:
            row += (f"skipped: full matrix est. {estimate / GIB:.1f} GiB > cap {args.full_mem_cap_gib:g} GiB | | "
                    f"| {ratio_two:.2f} | {'yes' if same else 'NO'} |")
        else:
            cells["full"] = full = measure(size, "full", args)
            same = same and full["ranks_sha"] == cells["chunked"]["ranks_sha"]
            row += (f"{_secs(full)} | {full['peak_growth_mib']:.0f} | "
                    f"{cells['chunked']['seconds'] / full['seconds']:.2f} | {ratio_two:.2f} | "
                    f"{'yes' if same else 'NO'} |")
        results[size] = cells
        print(row, flush=True)
    print(f"torch threads: {cells['chunked']['threads']}; s = wall seconds (cpu = user + sys seconds of the worker); "
          "MiB = peak RSS growth over the call; fresh process per cell; same ranks: one-pass == two-pass (== full)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
