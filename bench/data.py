"""Benchmark: samples/s of mmzoo's training data pipeline (JPEG decode by ``datasets`` + ``MmzooProcessor`` +
``TrainCollator``, in a ``DataLoader`` with workers) against what the tiny-CLIP training step consumes.

Commands (from the repository root):

    python bench/data.py                       # 256 px JPEGs, batch 64, workers 0 1 2, 2 threads
    python bench/data.py --image-px 512 --workers 0 2 --batches 6
    python bench/data.py --quick               # seconds: tiny sizes, for the smoke test

The data: ``(batches + 1) * batch`` synthetic photos-like images (smooth colour fields with shapes), JPEG
quality 90, in a ``datasets.Dataset`` with an ``Image`` column (decoded on access, as mmzoo's sources load),
three captions each. Reported, all measured in this run:

* stage costs in the main process, samples/s (median of 3 after a warm-up): decode (``datasets`` row access +
  RGB), image processor, tokenizer, and the collate of decoded rows (processor on images and texts);
* the full pipeline (``PairDataset`` -> ``DataLoader(num_workers=w)`` -> ``TrainCollator``): samples/s after the
  first batch (worker start-up is reported apart);
* the mmzoo training step alone (forward, loss, backward, AdamW) at the same batch: samples/s;
* supply / demand = pipeline samples/s over step samples/s (>= 1: the loader keeps up), and end-to-end loops
  (the step fed by the loader with each of ``--e2e-workers``): samples/s, over the step alone, and the share of
  the loop spent waiting for the next batch. On a 2-core machine the workers and the 2-thread step share the
  cores, which the end-to-end figures show.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import QUICK_ARCH, Arch, arch_dict, write_json, build_mmzoo, make_optimizer, mmzoo_spec, versions  # noqa: E402

WORDS = {"color": ["red", "green", "blue", "yellow", "purple", "orange"],
         "shape": ["circle", "square", "triangle", "ring"], "place": ["top left", "center", "bottom right", "edge"]}


def make_dataset(n: int, px: int, seed: int = 0):
    """``n`` JPEG images of ``px`` x ``px`` pixels with three captions each, as a ``datasets.Dataset``."""
    import datasets
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    rows = {"image": [], "captions": []}
    for i in range(n):
        field = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        image = Image.fromarray(field).resize((px, px), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(image)
        x, y, r = (int(v) for v in rng.integers(px // 8, px - px // 8, 3))
        color, shape, place = (WORDS[k][int(rng.integers(len(WORDS[k])))] for k in ("color", "shape", "place"))
        draw.ellipse((x - r // 2, y - r // 2, x + r // 2, y + r // 2), fill=color)
        noise = rng.normal(0, 6, (px, px, 3))
        image = Image.fromarray(np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        rows["image"].append({"bytes": buffer.getvalue(), "path": None})
        rows["captions"].append([f"a {color} {shape} at the {place}", f"photo {i}: {shape}, {color}",
                                 f"the {place} holds a {color} {shape} on a blurred background"])
    features = datasets.Features({"image": datasets.Image(), "captions": datasets.Sequence(datasets.Value("string"))})
    return datasets.Dataset.from_dict(rows, features=features)


def rate(samples: int, seconds: float) -> float:
    return samples / max(seconds, 1e-9)


def stage_costs(ds, processor, collate, batch: int, repeats: int) -> dict:
    """Main-process samples/s of each stage on one batch of rows: median of ``repeats`` runs after a warm-up."""
    rows = [ds[i] for i in range(batch)]
    images = [r["image"].convert("RGB") for r in rows]
    texts = [r["captions"][0] for r in rows]
    pairs = [{"image": image, "captions": [text]} for image, text in zip(images, texts)]

    def decode():
        for image in (ds[i]["image"].convert("RGB") for i in range(batch)):
            image.load()

    stages = {
        "decode": decode,
        "image_processor": lambda: processor.image_processor(images=images, return_tensors="pt"),
        "tokenizer": lambda: processor.tokenizer(texts, padding="max_length", truncation=True, max_length=32,
                                                 return_tensors="pt"),
        "collate (processor on decoded rows)": lambda: collate(pairs),
    }
    out = {}
    for name, fn in stages.items():
        fn()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        out[name] = rate(batch, statistics.median(times))
    return out


def loader(ds, collate, batch: int, workers: int):
    from mmzoo.train.data import PairDataset

    return torch.utils.data.DataLoader(PairDataset(ds, seed=0), batch_size=batch, num_workers=workers,
                                       collate_fn=collate, shuffle=False, drop_last=True)


def pipeline_rate(ds, collate, batch: int, workers: int, batches: int) -> dict:
    start = time.perf_counter()
    it = iter(loader(ds, collate, batch, workers))
    next(it)
    first = time.perf_counter() - start
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return {"workers": workers, "first_batch_s": first, "samples_per_s": rate(batches * batch, time.perf_counter() - t)}


def step_rate(model, optimizer, batch: dict, steps: int) -> float:
    inputs = {k: v for k, v in batch.items() if k != "return_loss"}
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        model(**inputs, return_loss=True).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i:  # the first step allocates the optimizer state
            times.append(time.perf_counter() - t)
    return rate(inputs["pixel_values"].shape[0], statistics.median(times))


def end_to_end(model, optimizer, ds, collate, batch: int, workers: int, batches: int) -> dict:
    """The step fed by the loader: samples/s and the share of the loop spent waiting for data (``next``), which,
    measured in the same loop as the steps, does not depend on how loaded the machine is at that moment."""
    it = iter(loader(ds, collate, batch, workers))
    step_batch = next(it)
    model(**step_batch, return_loss=True).loss.backward()
    optimizer.zero_grad(set_to_none=True)
    wait = 0.0
    start = time.perf_counter()
    for _ in range(batches):
        t = time.perf_counter()
        step_batch = next(it)
        wait += time.perf_counter() - t
        model(**step_batch, return_loss=True).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    total = time.perf_counter() - start
    return {"samples_per_s": rate(batches * batch, total), "data_wait_share": wait / total}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image-px", type=int, default=256, help="side of the stored JPEGs")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--batches", type=int, default=8, help="timed batches per measurement")
    p.add_argument("--workers", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--e2e-workers", nargs="+", type=int, default=[0, 1],
                   help="DataLoader workers of the end-to-end loops")
    p.add_argument("--steps", type=int, default=4, help="timed training steps (end-to-end loops: steps + 2)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="tiny model, 64 px, batch 8, 2 batches, workers 0 1")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    if args.quick:
        args.image_px, args.batch, args.batches, args.workers, args.steps = 64, 8, 2, [0, 1], 1
    return args


def main(argv=None) -> dict:
    import mmzoo
    from mmzoo.train.data import TrainCollator

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    arch = QUICK_ARCH if args.quick else Arch()
    ds = make_dataset((args.batches + 1) * args.batch, args.image_px)
    processor = mmzoo.build_processor(mmzoo_spec(arch), max_length=arch.context)
    collate = TrainCollator(processor, max_length=arch.context)
    stages = stage_costs(ds, processor, collate, args.batch, repeats=3)
    pipelines = [pipeline_rate(ds, collate, args.batch, w, args.batches) for w in args.workers]
    torch.manual_seed(0)
    model = build_mmzoo(arch).model
    optimizer = make_optimizer(model)
    consume = step_rate(model, optimizer, collate([ds[i] for i in range(args.batch)]), args.steps)
    e2e = {w: end_to_end(model, optimizer, ds, collate, args.batch, w, min(args.batches, args.steps + 2))
           for w in args.e2e_workers}
    lines = [f"# data: {args.image_px} px JPEGs -> {arch.image_size} px, batch {args.batch}, "
             f"{args.threads} threads for the step", "", f"versions: {versions()}", "",
             "| stage (main process) | samples/s |", "| --- | --- |"]
    lines += [f"| {name} | {value:.0f} |" for name, value in stages.items()]
    lines += ["", "| pipeline | samples/s | first batch (s) | supply / step demand |", "| --- | --- | --- | --- |"]
    lines += [f"| DataLoader, {p['workers']} workers | {p['samples_per_s']:.0f} | {p['first_batch_s']:.2f} "
              f"| {p['samples_per_s'] / consume:.2f} |" for p in pipelines]
    lines += ["", f"training step alone (tiny CLIP, fp32): {consume:.1f} samples/s", "",
              "| end to end: step fed by a DataLoader with | samples/s | of the step alone | time waiting for data |",
              "| --- | --- | --- | --- |"]
    lines += [f"| {w} workers | {r['samples_per_s']:.1f} | {r['samples_per_s'] / consume:.2f} "
              f"| {r['data_wait_share']:.1%} |" for w, r in e2e.items()]
    print("\n".join(lines))
    out = {"arch": arch_dict(arch), "image_px": args.image_px, "batch": args.batch, "stages": stages,
           "pipelines": pipelines, "step_samples_per_s": consume,
           "end_to_end": {str(w): r for w, r in e2e.items()}}
    write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
