"""Benchmark: the largest contrastive batch whose training step fits a fixed memory budget, plain path vs mmzoo's
gradient cache (``mmzoo.train.grad_cache.grad_cache_model_step``), for the tiny CLIP of train_step.py.

Commands (from the repository root):

    python bench/max_batch.py                          # budget 512 MiB, chunk 32, grad cache searched up to 8x
    python bench/max_batch.py --budget-mib 1024 --chunk-size 64 --max-ratio 16
    python bench/max_batch.py --quick                  # seconds: tiny model, for the smoke test

Memory is measured, not estimated. The model and fused AdamW are built once and warmed up (one step of each
path at batch 2: gradients, optimizer state and thread pools exist). Each trial (path, batch) then resets the
process's peak RSS (Linux ``/proc/self/clear_refs``), reads the RSS, builds the batch and runs one full step
(forward, loss, backward, optimizer step); its batch memory is the peak RSS (``VmHWM``) minus that RSS: inputs,
activations, logits and temporaries. glibc's mmap threshold is pinned so that freed tensors return to the OS
between trials; ``--isolate`` runs every trial in a fresh process instead. A batch fits when its batch memory is
at most the budget. The search doubles the batch until it does not fit, then bisects
to 1/16 of the batch; the gradient-cache search starts at twice the plain maximum and stops at ``--max-ratio`` times
it (reported as ">="). Finally, one process compares the gradients of both paths on a small batch.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    arch_from_args, write_json,
    MIB, Arch, arch_dict, build_mmzoo, make_batch, make_optimizer, peak_rss_bytes, reset_peak_rss,
    rss_bytes, versions,
)

MODES = ("plain", "grad_cache")


def _inputs(arch: Arch, batch_size: int, seed: int = 0) -> dict:
    batch = make_batch(arch, batch_size, seed)
    return {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")}


def step(model, optimizer, batch: dict, mode: str, chunk_size: int) -> float:
    from mmzoo.train.grad_cache import grad_cache_model_step

    if mode == "plain":
        loss = model(**batch, return_loss=True).loss
        loss.backward()
    else:
        loss = grad_cache_model_step(model, batch, chunk_size)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


class Probe:
    """Batch memory of steps in this process: peak RSS (``VmHWM``, reset through ``/proc/self/clear_refs``) minus
    the RSS before the step. glibc's mmap threshold is pinned at 128 KiB so that freed tensors go back to the OS
    and the next step starts from a true baseline (Linux only)."""

    def __init__(self, arch: Arch, chunk_size: int) -> None:
        self._libc = ctypes.CDLL("libc.so.6")
        self._libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD: fixed, no dynamic growth
        self.arch, self.chunk_size = arch, chunk_size
        torch.manual_seed(0)
        self.model = build_mmzoo(arch).model
        self.optimizer = make_optimizer(self.model)
        for mode in MODES:  # warm-up: gradients, optimizer state, thread pools
            step(self.model, self.optimizer, _inputs(arch, 2, seed=1), mode, chunk_size)

    def __call__(self, mode: str, batch_size: int) -> dict:
        gc.collect()
        self._libc.malloc_trim(0)
        reset_peak_rss()
        before = rss_bytes()
        start = time.perf_counter()
        loss = step(self.model, self.optimizer, _inputs(self.arch, batch_size), mode, self.chunk_size)
        peak = peak_rss_bytes()
        return {"mode": mode, "batch": batch_size, "batch_mib": max(peak - before, 0) / MIB, "peak_mib": peak / MIB,
                "before_mib": before / MIB, "loss": loss, "seconds": time.perf_counter() - start}


def trial_in_fresh_process(arch: Arch, mode: str, batch_size: int, args) -> dict:
    cmd = [sys.executable, __file__, "--trial", mode, str(batch_size), "--chunk-size", str(args.chunk_size),
           "--threads", str(args.threads), "--arch-json", json.dumps(arch_dict(arch))]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:  # e.g. killed by the OOM killer: it did not fit
        return {"mode": mode, "batch": batch_size, "batch_mib": float("inf"), "error": done.stderr[-500:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def search(measure, mode: str, start: int, cap: int | None, budget_mib: float, trials: list) -> tuple[int, bool]:
    """Largest fitting batch (to 1/16) from ``start`` upwards, and whether the search stopped at ``cap``."""
    def fits(b: int) -> bool:
        result = measure(mode, b)
        trials.append(result)
        print(f"  {mode:10s} batch {b:6d}: {result['batch_mib']:8.1f} MiB, {result.get('seconds', 0):.1f} s",
              file=sys.stderr, flush=True)
        return result["batch_mib"] <= budget_mib

    lo, hi = 0, None
    b = start
    while hi is None:
        if cap is not None and b >= cap:
            if fits(cap):
                return cap, True
            hi = cap
            break
        if fits(b):
            lo, b = b, 2 * b
        else:
            hi = b
    if lo == 0:  # even the first size failed: walk down
        while hi > 1 and not fits(hi // 2):
            hi //= 2
        lo = hi // 2
    while hi - lo > max(lo // 16, 1):
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo, False


def gradient_check(arch: Arch, batch_size: int, chunk_size: int) -> dict:
    """Plain vs gradient-cache gradients over all parameters: max |difference| / max |gradient| and the relative
    L2 error. (Per-tensor ratios mislead: e.g. attention key biases have a true gradient of 0, and rounding noise.)"""
    from mmzoo.train.grad_cache import grad_cache_model_step

    torch.manual_seed(0)
    model = build_mmzoo(arch).model
    batch = _inputs(arch, batch_size)
    plain_loss = model(**batch, return_loss=True).loss
    plain_loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    cached_loss = grad_cache_model_step(model, batch, chunk_size)
    cached = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    flat_plain = torch.cat([g.flatten() for g in plain.values()])
    flat_diff = torch.cat([(cached[n] - g).flatten() for n, g in plain.items()])
    return {"batch": batch_size, "chunk_size": chunk_size, "same_parameters": plain.keys() == cached.keys(),
            "loss_diff": abs(plain_loss.item() - cached_loss.item()),
            "max_abs_diff_over_max_grad": float(flat_diff.abs().max() / flat_plain.abs().max()),
            "relative_l2_error": float(flat_diff.norm() / flat_plain.norm())}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--budget-mib", type=float, default=512.0, help="batch memory budget (MiB)")
    p.add_argument("--chunk-size", type=int, default=32, help="gradient-cache chunk size")
    p.add_argument("--start", type=int, default=16, help="first batch size of the plain search")
    p.add_argument("--max-ratio", type=float, default=8.0, help="stop the grad-cache search at this x plain max")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--isolate", action="store_true", help="each trial in a fresh process (slower; a cross-check)")
    p.add_argument("--quick", action="store_true", help="tiny model, budget 4 MiB, chunk 8, ratio cap 4")
    p.add_argument("--json", type=Path, help="also write the trials here")
    p.add_argument("--trial", nargs=2, metavar=("MODE", "BATCH"), help=argparse.SUPPRESS)
    p.add_argument("--arch-json", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.budget_mib, args.chunk_size, args.start, args.max_ratio = 4.0, 8, 16, 4.0
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    arch = arch_from_args(args)
    if args.trial:
        mode, batch_size = args.trial[0], int(args.trial[1])
        print(json.dumps(Probe(arch, args.chunk_size)(mode, batch_size)))
        return {}
    if args.isolate:
        measure = lambda mode, b: trial_in_fresh_process(arch, mode, b, args)  # noqa: E731
    else:
        measure = Probe(arch, args.chunk_size)
    trials: list = []
    plain_max, _ = search(measure, "plain", args.start, None, args.budget_mib, trials)
    cap = max(int(plain_max * args.max_ratio), plain_max + 1)
    cached_max, capped = search(measure, "grad_cache", 2 * max(plain_max, 1), cap, args.budget_mib, trials)
    check = gradient_check(arch, batch_size=8 if args.quick else 32, chunk_size=3 if args.quick else 8)
    ratio = cached_max / max(plain_max, 1)
    at = {(t["mode"], t["batch"]): t for t in trials}
    lines = [
        f"# max_batch: tiny CLIP, fp32, {args.threads} threads, batch-memory budget {args.budget_mib:.0f} MiB, "
        f"grad-cache chunk {args.chunk_size}", "", f"versions: {versions()}", f"architecture: {arch_dict(arch)}", "",
        "| path | largest batch that fits | its batch memory (MiB) | its step time (s) |", "| --- | --- | --- | --- |",
        f"| plain | {plain_max} | {at[('plain', plain_max)]['batch_mib']:.0f} | "
        f"{at[('plain', plain_max)]['seconds']:.1f} |",
        f"| grad cache | {'>= ' if capped else ''}{cached_max} | {at[('grad_cache', cached_max)]['batch_mib']:.0f} | "
        f"{at[('grad_cache', cached_max)]['seconds']:.1f} |",
        "", f"ratio grad cache / plain: {'>= ' if capped else ''}{ratio:.1f}x"
        + (f" (search stopped at --max-ratio {args.max_ratio:g})" if capped else ""),
        f"gradient check (batch {check['batch']}, chunk {check['chunk_size']}): loss diff {check['loss_diff']:.2e}, "
        f"max |grad diff| / max |grad| {check['max_abs_diff_over_max_grad']:.1e}, relative L2 error "
        f"{check['relative_l2_error']:.1e}, same parameters {check['same_parameters']}",
        "", "trials (mode, batch, batch MiB): " + ", ".join(
            f"{t['mode']} {t['batch']} {t['batch_mib']:.0f}" for t in trials),
    ]
    print("\n".join(lines))
    out = {"arch": arch_dict(arch), "budget_mib": args.budget_mib, "chunk_size": args.chunk_size,
           "plain_max": plain_max, "grad_cache_max": cached_max, "capped": capped, "ratio": ratio,
           "gradient_check": check, "trials": trials}
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
