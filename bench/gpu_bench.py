"""GPU benchmark: a ViT-B/16-class dual encoder (ViT-B/16 224 px + a 12-layer, 768-wide BERT text tower, context
77, projection 512) trained in bf16 autocast; prints samples/s, peak memory and model-FLOPs utilisation.

Run it through ``bench/gpu.sh`` (checks for a GPU and missing packages first), or directly:

    python bench/gpu_bench.py                        # batch 256, every variant, about 2-4 minutes on an H100/H200
    python bench/gpu_bench.py --variants mmzoo floor --batch 128 --steps 10
    python bench/gpu_bench.py --quick --device cpu   # seconds: tiny model on CPU (the smoke test)

Variants: ``mmzoo`` (eager), ``floor`` (hand-written PyTorch, same architecture), ``hf_dual``
(VisionTextDualEncoderModel), ``open_clip`` (when importable), ``mmzoo+ckpt`` (gradient checkpointing),
``mmzoo+gradcache`` (``grad_cache_model_step``, chunk ``--chunk-size``), ``mmzoo+compile`` (``torch.compile``).
A step is forward + symmetric InfoNCE + backward + fused AdamW, under ``torch.autocast(dtype=bfloat16)`` with
fp32 weights (what ``training.precision: bf16`` does). Model FLOPs per step are counted once with
``torch.utils.flop_counter.FlopCounterMode`` on a plain eager mmzoo step (matmuls, convolutions, attention; forward
and backward), so recomputation by checkpointing / gradient caching does not count as useful work. MFU = model
FLOPs per second / peak; the peak is the dense bf16 spec of the GPU (``--peak-tflops``, known for H100/H200/A100)
and, as a second figure, a bf16 matmul measured here.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    write_json,
    BUILDERS, MIB, QUICK_ARCH, Arch, arch_dict, make_batch, make_optimizer, system_inputs, versions,
)

B16 = Arch(image_size=224, patch_size=16, width=768, layers=12, heads=12, context=77, vocab=49408, projection=512)
SPEC_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0}  # dense bf16 tensor-core peaks
VARIANTS = ("mmzoo", "floor", "hf_dual", "open_clip", "mmzoo+ckpt", "mmzoo+gradcache", "mmzoo+compile")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, dtype: str):
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def build_variant(name: str, arch: Arch, device: torch.device, chunk_size: int):
    """(model, step function) of a variant; the step runs forward, loss and backward (not the optimizer)."""
    system_name, _, feature = name.partition("+")
    torch.manual_seed(0)
    system = BUILDERS[system_name](arch)
    model = system.model.to(device)
    if feature == "ckpt":
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()
    if feature == "gradcache":
        from mmzoo.train.grad_cache import grad_cache_model_step

        return model, lambda batch: grad_cache_model_step(model, batch, chunk_size)
    if feature == "compile":
        compiled = torch.compile(model)
        return model, lambda batch: compiled(**batch, return_loss=True).loss.backward()

    def plain(batch):
        loss = system.loss(batch)
        loss.backward()
        return loss

    return model, plain


def count_flops(arch: Arch, batch: dict, device: torch.device, dtype: str) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    model, fn = build_variant("mmzoo", arch, device, 0)
    with autocast(device, dtype):
        fn(batch)  # warm-up outside the counter
    model.zero_grad(set_to_none=True)
    counter = FlopCounterMode(display=False)
    with counter, autocast(device, dtype):
        fn(batch)
    del model
    return counter.get_total_flops()


def measured_matmul_tflops(device: torch.device, n: int) -> float:
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(device)
    reps = 10
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e12


def run_variant(name: str, arch: Arch, batch_cpu: dict, device: torch.device, args) -> dict:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    model, fn = build_variant(name, arch, device, args.chunk_size)
    optimizer = make_optimizer(model)
    batch = {k: v.to(device) for k, v in system_inputs(name.partition("+")[0], batch_cpu).items()}
    times = []
    for i in range(args.warmup + args.steps):
        sync(device)
        t = time.perf_counter()
        with autocast(device, args.dtype):
            fn(batch)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - t)
    step_s = statistics.median(times)
    out = {"variant": name, "step_s": step_s, "step_s_min": min(times), "step_s_max": max(times),
           "samples_per_s": args.batch / step_s}
    if device.type == "cuda":
        out["peak_mem_mib"] = torch.cuda.max_memory_allocated(device) / MIB
    del model, optimizer, fn
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per variant (compilation happens here)")
    p.add_argument("--chunk-size", type=int, default=64, help="mmzoo+gradcache chunk")
    p.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--peak-tflops", type=float, help="dense peak for MFU (default: from the GPU's name)")
    p.add_argument("--quick", action="store_true",
                   help="tiny model, batch 8, 1+2 steps; variants mmzoo, floor, mmzoo+ckpt, mmzoo+gradcache")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.steps, args.warmup, args.chunk_size = 8, 2, 1, 4
        args.variants = [v for v in args.variants if v in ("mmzoo", "floor", "mmzoo+ckpt", "mmzoo+gradcache")]
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.set_float32_matmul_precision("high")
    arch = QUICK_ARCH if args.quick else B16
    variants = list(args.variants)
    if "open_clip" in variants:
        try:
            import open_clip  # noqa: F401
        except Exception as err:  # noqa: BLE001 - any import failure means: not here
            print(f"skipping open_clip: {type(err).__name__}: {err}", file=sys.stderr)
            variants.remove("open_clip")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = args.peak_tflops or next((v for k, v in SPEC_TFLOPS.items() if k in name), None)
    measured_peak = measured_matmul_tflops(device, 256 if args.quick else 8192)
    batch = make_batch(arch, args.batch)
    flops = count_flops(arch, {k: v.to(device) for k, v in system_inputs("mmzoo", batch).items()}, device,
                        args.dtype)
    results = []
    for variant in variants:
        try:
            results.append(run_variant(variant, arch, batch, device, args))
        except Exception as err:  # noqa: BLE001 - report and go on with the other variants
            results.append({"variant": variant, "error": f"{type(err).__name__}: {str(err)[:300]}"})
        print(f"  {variant}: {results[-1]}", file=sys.stderr, flush=True)
    lines = [f"# gpu_bench: {'tiny (quick)' if args.quick else 'ViT-B/16 + 12-layer text'} dual encoder, {args.dtype}, "
             f"batch {args.batch}, device {name}", "", f"versions: {versions()}", f"architecture: {arch_dict(arch)}",
             f"model FLOPs per step (forward + backward, FlopCounterMode): {flops / 1e9:.4g} GFLOP",
             f"peak: spec {peak if peak else 'unknown'} TFLOP/s, measured bf16 matmul {measured_peak:.4g} TFLOP/s", "",
             "| variant | samples/s | step s median [min-max] | peak memory MiB | MFU (spec) | MFU (measured matmul) "
             "| mmzoo eager step time / variant's |", "| --- | --- | --- | --- | --- | --- | --- |"]
    base = next((r["step_s"] for r in results if r["variant"] == "mmzoo" and "error" not in r), None)
    for r in results:
        if "error" in r:
            lines.append(f"| {r['variant']} | error: {r['error']} | | | | | |")
            continue
        achieved = flops / r["step_s"] / 1e12
        r["mfu_spec"] = achieved / peak if peak else None
        r["mfu_measured"] = achieved / measured_peak
        mfu_spec = f"{r['mfu_spec']:.1%}" if peak else "n/a"
        relative = f"{base / r['step_s']:.3f}" if base else "n/a"
        lines.append(f"| {r['variant']} | {r['samples_per_s']:.1f} | {r['step_s']:.4f} [{r['step_s_min']:.4f}-"
                     f"{r['step_s_max']:.4f}] | {r.get('peak_mem_mib', float('nan')):.0f} | {mfu_spec} "
                     f"| {r['mfu_measured']:.1%} | {relative} |")
    print("\n".join(lines))
    out = {"device": name, "arch": arch_dict(arch), "batch": args.batch, "dtype": args.dtype, "flops_per_step": flops,
           "peak_tflops_spec": peak, "peak_tflops_measured": measured_peak, "results": results}
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
