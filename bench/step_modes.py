"""Benchmark: one training step of the tiny CLIP per precision and compile mode, and what ``precision: auto`` picks.

Commands (from the repository root):

    python bench/step_modes.py                 # quickstart-size model at batch 128, bench model at batch 256
    python bench/step_modes.py --no-compile    # precision only (compiling on a busy 2-core CPU takes minutes)
    python bench/step_modes.py --quick         # seconds

Per model size (``small``: the quickstart's towers, width 64, 48 px, patch 16, 2 layers; ``bench``: the
train_step.py model, width 192, 64 px, patch 8, 4 layers), one process, ``--threads`` torch threads:

1. ``precision: auto`` is resolved exactly as a run does (``mmzoo.train.precision.choose_precision`` on the
   model and one batch: the hardware rule, then its calibration); its choice and measurements are printed;
2. modes, timed interleaved over ``--rounds`` rounds of ``--steps`` steps after warm-up (forward, contrastive
   loss, backward, fused AdamW, zero_grad): ``fp32`` eager, ``bf16`` eager (autocast, with the attention
   implementation mmzoo trains bf16 with: "eager" on a CPU), ``bf16+sdpa`` (autocast, SDPA attention), ``fp32+compile``
   (``torch.compile`` with inductor, the backend ``training.compile: true`` uses; its compile time is reported
   apart) — the figure is the median seconds per step;
3. ratios: ``auto`` (= the mode it chose) over fp32, bf16 over fp32, compiled over fp32 (> 1: faster), from the
   medians over all steps and paired (each round's fp32 over the same round's mode, median over rounds).

The machine may be shared: the load average before and after is printed; interleaving keeps the modes'
conditions alike, medians damp the noise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import QUICK_ARCH, Arch, build_mmzoo, make_batch, make_optimizer, write_json  # noqa: E402

SIZES = {
    "small": (Arch(image_size=48, patch_size=16, width=64, layers=2, heads=2, context=32, vocab=30522,
                   projection=64), 128),
    "bench": (Arch(), 256),
}


def _step(loss_fn, optimizer, model, batch, bf16: bool, attention: str = "sdpa") -> float:
    if model.config._attn_implementation != attention:
        model.set_attn_implementation(attention)
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
        loss = loss_fn(batch)
    loss.float().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def measure(name: str, arch: Arch, batch_size: int, args) -> dict:
    from mmzoo.train.precision import attention_for, choose_precision

    torch.manual_seed(0)
    system = build_mmzoo(arch)
    model = system.model
    batch = {k: v for k, v in make_batch(arch, batch_size).items() if k != "open_clip_text"}
    choice = choose_precision("auto", model, batch)
    print(f"[{name}] {choice.summary()}", flush=True)
    optimizer = make_optimizer(model)
    # bf16 as mmzoo trains it (attention by mmzoo.train.precision.attention_for: eager on a CPU), and with SDPA
    bf16_attention = attention_for("bf16", "cpu") or "sdpa"
    modes = {"fp32": (system.loss, False, "sdpa"), "bf16": (system.loss, True, bf16_attention),
             "bf16+sdpa": (system.loss, True, "sdpa")}
    compile_seconds = None
    if args.compile:
        compiled = torch.compile(model)
        start = time.perf_counter()
        _step(lambda b: compiled(**b, return_loss=True).loss, optimizer, model, batch, False)
        compile_seconds = time.perf_counter() - start
        modes["fp32+compile"] = (lambda b: compiled(**b, return_loss=True).loss, False, "sdpa")
    for loss_fn, bf16, attention in modes.values():  # warm-up
        for _ in range(args.warmup):
            _step(loss_fn, optimizer, model, batch, bf16, attention)
    times = {mode: [] for mode in modes}
    rounds = {mode: [] for mode in modes}  # per round: the median of its steps
    for _ in range(args.rounds):
        for mode, (loss_fn, bf16, attention) in modes.items():
            steps = [_step(loss_fn, optimizer, model, batch, bf16, attention) for _ in range(args.steps)]
            times[mode] += steps
            rounds[mode].append(statistics.median(steps))
    medians = {mode: statistics.median(v) for mode, v in times.items()}
    medians["auto"] = medians[choice.precision]
    # paired: each round's fp32 time over the same round's time of the mode (seconds apart, so load drifting
    # between rounds cancels), median over rounds
    paired = {mode: statistics.median(f / m for f, m in zip(rounds["fp32"], rounds[mode])) for mode in modes}
    paired["auto"] = paired[choice.precision]
    return {
        "paired_speedup_vs_fp32": paired,
        "batch_size": batch_size, "auto_choice": choice.precision, "auto_reason": choice.reason,
        "calibration_s_per_step": choice.seconds_per_step, "compile_seconds": compile_seconds,
        "s_per_step": medians, "all_steps": times,
        "speedup_vs_fp32": {mode: medians["fp32"] / v for mode, v in medians.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = {"quick": (QUICK_ARCH, 8)} if args.quick else {k: SIZES[k] for k in args.sizes}
    if args.quick:
        args.rounds, args.steps = 2, 1
    load_before = os.getloadavg()
    results = {name: measure(name, arch, bs, args) for name, (arch, bs) in sizes.items()}
    load_after = os.getloadavg()
    print(f"\ntraining step, median s/step over {args.rounds} interleaved rounds x {args.steps} steps, "
          f"{args.threads} threads; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    modes = ["fp32", "bf16", "bf16+sdpa"] + (["fp32+compile"] if args.compile else [])
    print("| model | batch | " + " | ".join(modes) + " | auto picks | auto / fp32 speedup (medians / paired) | "
          "bf16 speedup (medians / paired) |" + (" compile speedup | compile time s |" if args.compile else ""))
    print("|" + " --- |" * (len(modes) + 5 + (2 if args.compile else 0)))
    for name, r in results.items():
        fast, paired = r["speedup_vs_fp32"], r["paired_speedup_vs_fp32"]
        row = (f"| {name} | {r['batch_size']} | " + " | ".join(f"{r['s_per_step'][m]:.3f}" for m in modes)
               + f" | {r['auto_choice']} | {fast['auto']:.2f}x / {paired['auto']:.2f}x | "
               f"{fast['bf16']:.2f}x / {paired['bf16']:.2f}x |")
        if args.compile:
            row += f" {r['speedup_vs_fp32']['fp32+compile']:.2f}x | {r['compile_seconds']:.0f} |"
        print(row)
    write_json(args.json, {"results": results, "load_average": [load_before, load_after], "threads": args.threads})


if __name__ == "__main__":
    main()
