"""The real training path on a GPU: recipe -> ``mmzoo.train`` -> ``MmzooTrainer`` (``transformers.Trainer``), in
bf16 with TF32 matmuls, fused AdamW, ``dataloader_num_workers`` > 0 and pinned memory, under ``torchrun``.

    torchrun --standalone --nproc_per_node 1 bench/gpu_train.py            # what bench/gpu.sh runs
    torchrun --standalone --nproc_per_node 1 bench/gpu_train.py --quick    # tiny preset, seconds (also on CPU)

Reports samples/s over the steps after ``--warmup`` (timed by a Trainer callback, global batch = per-device batch
x world size) and MFU = measured samples/s x training FLOPs per sample (``mmzoo train --dry-run``'s estimate:
3 x the forward FLOPs counted by torch's FlopCounterMode) / (world size x dense bf16 peak of the GPU). The data
is the built-in ``shapes`` set generated at the preset's image size, so the data path (decode, processor,
collate in worker processes) is the one users run; measured, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SPEC_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0}  # dense bf16 tensor-core peaks


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="mm-clip", help="model preset (default mm-clip: ViT-B/16 + BERT-base)")
    p.add_argument("--batch", type=int, default=128, help="per-device batch size")
    p.add_argument("--steps", type=int, default=40, help="optimizer steps in all")
    p.add_argument("--warmup", type=int, default=10, help="steps not timed (compilation, cudnn autotune, workers)")
    p.add_argument("--samples", type=int, default=4096, help="rows of the generated dataset")
    p.add_argument("--workers", type=int, default=8, help="dataloader_num_workers")
    p.add_argument("--peak-tflops", type=float, help="dense peak for MFU (default: from the GPU's name)")
    p.add_argument("--quick", action="store_true", help="tiny preset and sizes (a smoke run, CPU too)")
    p.add_argument("--json", type=Path, help="also write the measurements here")
    args = p.parse_args(argv)
    if args.quick:
        args.preset, args.batch, args.steps, args.warmup, args.samples, args.workers = "mm-clip-tiny", 8, 6, 2, 64, 2
    return args


def recipe_for(args, out: Path):
    import torch

    from mmzoo import load_spec
    from mmzoo.builder import tower_config
    from mmzoo.recipe import load_recipe

    spec = load_spec(args.preset)
    size = getattr(tower_config(spec.encoder("image"), "encoders.image"), "image_size", 224)
    size = size[0] if isinstance(size, (list, tuple)) else size
    gpu = torch.cuda.is_available()
    text = f"""
name: gpu-train-bench
model: {{preset: {args.preset}}}
data:
  train: {{source: builtin, name: shapes, split: train, image_size: {size}, max_length: 32,
          params: {{num_samples: {args.samples}}}}}
training:
  max_steps: {args.steps}
  per_device_train_batch_size: {args.batch}
  learning_rate: 1.0e-4
  precision: {"bf16" if gpu else "fp32"}
  logging_steps: {max(args.steps // 4, 1)}
  save_steps: null
  dataloader_num_workers: {args.workers}
  output_dir: {out}
  trainer_args: {{tf32: {str(gpu).lower()}, optim: adamw_torch_fused, dataloader_pin_memory: {str(gpu).lower()},
                 dataloader_persistent_workers: true}}
"""
    path = out.parent / "bench-recipe.yaml"  # not in the run folder: a recipe.yaml there reads as an old run
    path.write_text(text)
    return load_recipe(path)


def main(argv=None) -> dict:
    import torch
    from transformers import TrainerCallback

    from mmzoo.train import dry_run, train

    args = parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))

    class Clock(TrainerCallback):
        def __init__(self) -> None:
            self.start = self.end = None

        def on_step_end(self, targs, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if state.global_step == args.warmup:
                self.start = time.perf_counter()
            elif state.global_step == args.steps:
                self.end = time.perf_counter()

    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        recipe = recipe_for(args, Path(tmp) / "run")
        flops = dry_run(recipe, world_size=world).train_flops_per_sample
        train(recipe, progress=False, callbacks=(clock,))
    steps = args.steps - args.warmup
    samples_per_s = steps * args.batch * world / (clock.end - clock.start)
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    peak = args.peak_tflops or next((v for k, v in SPEC_TFLOPS.items() if k in name), None)
    mfu = samples_per_s * flops / (world * peak * 1e12) if peak else None
    out = {"device": name, "world_size": world, "preset": args.preset, "per_device_batch": args.batch,
           "timed_steps": steps, "samples_per_s": samples_per_s, "train_flops_per_sample": flops,
           "peak_tflops_spec": peak, "mfu": mfu,
           "path": "recipe -> mmzoo.train -> Trainer; bf16, tf32, adamw_torch_fused, workers, pin_memory"}
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"| device | preset | global batch | samples/s | MFU (spec {peak or 'unknown'} TFLOP/s) |")
        print("| --- | --- | --- | --- | --- |")
        print(f"| {name} x {world} | {args.preset} | {args.batch * world} | {samples_per_s:.1f} | "
              f"{f'{mfu:.1%}' if mfu is not None else 'n/a'} |")
        if args.json:
            args.json.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
