"""Benchmark: one training step of a tiny CLIP in mmzoo, open_clip, VisionTextDualEncoderModel and a hand-written
PyTorch floor, built to the same architecture and timed interleaved in one process.

Commands (from the repository root, in the bench environment of bench/README.md):

    python bench/train_step.py                       # batch 64 and 256, 5 rounds, 2 threads, fp32, RSS children
    python bench/train_step.py --rounds 9 --json runs/bench/train_step.json
    python bench/train_step.py --profile mmzoo floor --batch-sizes 64   # torch.profiler tables, no timing
    python bench/train_step.py --quick               # seconds: tiny sizes, for the smoke test

A step is forward + symmetric InfoNCE + backward + fused AdamW step + zero_grad. Each round runs ``--steps`` steps
of every system in a rotated order (A B C D, B C D A, ...), after ``--warmup`` steps each. Reported per system:
median [min-max] over rounds of the wall and CPU (process) seconds per step; mmzoo's ratio to each system on the
medians, on the minimums (load only ever adds time, so the fastest round is the least disturbed), and the median
[min-max] of the per-round paired ratios (robust to load that drifts between rounds).
Peak RSS comes from one fresh subprocess per system and batch size: the process peak after 2 steps and its growth
over the RSS before the first step. Systems whose package is missing are skipped with a note.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    arch_from_args, write_json,
    BUILDERS, MIB, SYSTEMS, Arch, arch_dict, make_batch, make_optimizer, peak_rss_bytes, reset_peak_rss,
    rss_bytes, summary, system_inputs, train_step, versions,
)


def available(names: list[str]) -> tuple[list[str], dict[str, str]]:
    """Systems that can be built here, and why the others cannot."""
    missing = {}
    if "open_clip" in names:
        try:
            import open_clip  # noqa: F401
        except Exception as err:  # ImportError, or torchvision's operator errors on a mismatched torch
            missing["open_clip"] = f"open_clip unavailable ({type(err).__name__}: {err}); see bench/README.md"
    return [n for n in names if n not in missing], missing


def build(names: list[str], arch: Arch) -> dict:
    systems = {}
    for name in names:
        torch.manual_seed(0)
        system = BUILDERS[name](arch)
        systems[name] = (system, make_optimizer(system.model))
    return systems


def time_steps(system, optimizer, batch: dict, steps: int) -> tuple[float, float, float]:
    """Mean wall and CPU seconds per step over ``steps`` steps, and the last loss."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        loss = train_step(system, optimizer, batch)
    return (time.perf_counter() - wall0) / steps, (time.process_time() - cpu0) / steps, loss


def run_timing(systems: dict, arch: Arch, batch_size: int, rounds: int, steps: int, warmup: int) -> dict:
    batch = make_batch(arch, batch_size)
    inputs = {name: system_inputs(name, batch) for name in systems}
    first_loss = {}
    for name, (system, opt) in systems.items():
        for _ in range(warmup):
            loss = train_step(system, opt, inputs[name])
            first_loss.setdefault(name, loss)
    names = list(systems)
    wall = {n: [] for n in names}
    cpu = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            w, c, _ = time_steps(*systems[name], inputs[name], steps)
            wall[name].append(w)
            cpu[name].append(c)
        print(f"  batch {batch_size} round {r + 1}/{rounds}: "
              + "  ".join(f"{n} {wall[n][-1]:.3f}s" for n in names), file=sys.stderr, flush=True)
    return {"batch_size": batch_size, "wall": wall, "cpu": cpu, "first_loss": first_loss}


def ratios(result: dict, base: str = "mmzoo") -> dict:
    """mmzoo / other on the medians, and the per-round paired ratios (wall and CPU)."""
    out = {}
    if base not in result["wall"]:
        return out
    for other in result["wall"]:
        if other == base:
            continue
        entry = {}
        for kind in ("wall", "cpu"):
            mine, theirs = result[kind][base], result[kind][other]
            paired = [a / b for a, b in zip(mine, theirs)]
            entry[kind] = {"of_medians": statistics.median(mine) / statistics.median(theirs),
                           "of_minimums": min(mine) / min(theirs), "paired": summary(paired)}
        out[other] = entry
    return out


# -- peak RSS, one fresh process per (system, batch) ----------------------------------------------------------
def measure_rss(name: str, arch: Arch, batch_size: int, steps: int = 2) -> dict:
    """In this process: RSS before the first step, and the peak RSS over ``steps`` steps (the peak is reset first;
    a fresh process per system keeps one system's freed memory from being reused by the next)."""
    torch.manual_seed(0)
    system = BUILDERS[name](arch)
    opt = make_optimizer(system.model)
    batch = system_inputs(name, make_batch(arch, batch_size))
    before = rss_bytes()
    reset_peak_rss()
    for _ in range(steps):
        train_step(system, opt, batch)
    peak = peak_rss_bytes()
    return {"system": name, "batch_size": batch_size, "rss_before_mib": before / MIB, "peak_rss_mib": peak / MIB,
            "step_growth_mib": max(peak - before, 0) / MIB, "parameters": system.num_parameters()}


def rss_in_subprocess(name: str, arch: Arch, batch_size: int, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--rss-child", name, "--batch-sizes", str(batch_size), "--threads", str(threads),
           "--arch-json", json.dumps(arch_dict(arch))]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"system": name, "batch_size": batch_size, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- profile ---------------------------------------------------------------------------------------------------
def profile(systems: dict, arch: Arch, batch_size: int, steps: int, rows: int) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    batch = make_batch(arch, batch_size)
    for name, (system, opt) in systems.items():
        inputs = system_inputs(name, batch)
        train_step(system, opt, inputs)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                train_step(system, opt, inputs)
        print(f"\n### {name}: batch {batch_size}, {steps} steps, top {rows} ops by self CPU time\n")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


# -- report ----------------------------------------------------------------------------------------------------
def fmt(s: dict, scale: float = 1.0, digits: int = 3) -> str:
    return f"{s['median'] * scale:.{digits}f} [{s['min'] * scale:.{digits}f}-{s['max'] * scale:.{digits}f}]"


def report(results: list[dict], rss: list[dict], params: dict, skipped: dict, args, arch: Arch) -> str:
    lines = [f"# train_step: tiny CLIP, fp32, {args.threads} threads, {args.rounds} rounds x {args.steps} steps",
             "", f"versions: {versions()}", f"architecture: {arch_dict(arch)}", ""]
    for name, why in skipped.items():
        lines.append(f"skipped {name}: {why}")
    lines += ["", "| system | parameters |", "| --- | --- |"]
    lines += [f"| {n} | {p:,} |" for n, p in params.items()]
    for res in results:
        b = res["batch_size"]
        lines += ["", f"## batch {b}", "", "| system | wall s/step median [min-max] | CPU s/step | samples/s (wall) "
                  "| loss after warm-up |", "| --- | --- | --- | --- | --- |"]
        for n in res["wall"]:
            w = summary(res["wall"][n])
            lines.append(f"| {n} | {fmt(w)} | {fmt(summary(res['cpu'][n]))} | {b / w['median']:.1f} "
                         f"| {res['first_loss'][n]:.4f} |")
        r = ratios(res)
        if r:
            lines += ["", "| mmzoo / system | wall, of medians | wall, of minimums | wall, paired per round median "
                      "[min-max] | CPU, of medians | CPU, of minimums | CPU, paired |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            for other, e in r.items():
                w, c = e["wall"], e["cpu"]
                lines.append(f"| {other} | {w['of_medians']:.3f} | {w['of_minimums']:.3f} | {fmt(w['paired'])} "
                             f"| {c['of_medians']:.3f} | {c['of_minimums']:.3f} | {fmt(c['paired'])} |")
        spread = {n: summary(res["wall"][n]) for n in res["wall"]}
        noise = max((s["max"] - s["min"]) / s["median"] for s in spread.values())
        lines.append(f"\nnoise: the widest (max-min)/median of a system's round times is {noise:.0%}")
    if rss:
        where = "one process for all (--quick)" if args.quick else "fresh process per system and batch"
        lines += ["", f"## peak RSS ({where}; MiB)", "",
                  "| system | batch | RSS before step | peak RSS | step growth |", "| --- | --- | --- | --- | --- |"]
        for m in rss:
            if "error" in m:
                lines.append(f"| {m['system']} | {m['batch_size']} | error: {m['error']} | | |")
            else:
                lines.append(f"| {m['system']} | {m['batch_size']} | {m['rss_before_mib']:.0f} "
                             f"| {m['peak_rss_mib']:.0f} | {m['step_growth_mib']:.0f} |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS)
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 256])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=2, help="steps per system per round")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per system and batch size")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-rss", action="store_true", help="skip the peak-RSS subprocesses")
    p.add_argument("--profile", nargs="*", choices=SYSTEMS, help="print torch.profiler tables instead of timing")
    p.add_argument("--profile-rows", type=int, default=25)
    p.add_argument("--quick", action="store_true", help="tiny model, batch 8, 2 rounds, RSS in-process")
    p.add_argument("--json", type=Path, help="also write the raw measurements here")
    p.add_argument("--rss-child", choices=SYSTEMS, help=argparse.SUPPRESS)
    p.add_argument("--arch-json", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.rounds, args.steps, args.warmup = [8], 2, 1, 1
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    arch = arch_from_args(args)
    if args.rss_child:
        print(json.dumps(measure_rss(args.rss_child, arch, args.batch_sizes[0])))
        return {}
    names, skipped = available(args.systems)
    systems = build(names, arch)
    if args.profile is not None:
        chosen = {n: systems[n] for n in (args.profile or names) if n in systems}
        profile(chosen, arch, args.batch_sizes[0], args.steps, args.profile_rows)
        return {}
    params = {n: s.num_parameters() for n, (s, _) in systems.items()}
    results = [run_timing(systems, arch, b, args.rounds, args.steps, args.warmup) for b in args.batch_sizes]
    del systems
    rss = []
    if not args.no_rss:
        for b in args.batch_sizes:
            for n in names:
                rss.append(measure_rss(n, arch, b) if args.quick else rss_in_subprocess(n, arch, b, args.threads))
    print(report(results, rss, params, skipped, args, arch))
    out = {"arch": arch_dict(arch), "threads": args.threads, "versions": versions(), "params": params,
           "skipped": skipped, "results": results, "ratios": {r["batch_size"]: ratios(r) for r in results},
           "rss": rss}
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
