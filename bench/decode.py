"""Benchmark: image decoding per worker, the former path (full JPEG decode, then the processor) vs mmzoo's.

Command (from the repository root):

    python bench/decode.py                  # 200 JPEGs of ~500 px (480-520, quality 90) -> 224 px, 5 rounds
    python bench/decode.py --quick          # seconds

Both paths run in this one process (one worker), interleaved round by round, on the same encoded JPEG bytes,
each through a ``datasets.Dataset`` row access and the model's image processor (``ViTImageProcessorPil``
resizing to 224 x 224 and normalising, as ``MmzooProcessor`` does):

* ``old``: ``datasets.Image(mode="RGB")`` (PIL decodes the whole JPEG, converts), then the processor
  (``ViTImageProcessorPil``: PIL -> numpy -> PIL -> resize -> numpy, float64 rescale, normalise, per image);
* ``new``: ``mmzoo.data._rgb_feature.RGBImage`` (a lazy JPEG) + ``prepare_image`` (``Image.draft`` to the
  smallest DCT scale >= 224 px), then ``mmzoo.data.images.image_features`` (what ``MmzooProcessor`` calls:
  the same PIL resize, and the processor's own rescale + normalise as a 256-entry table per channel);
* ``new (processor)``: the draft-decoded image through the stock processor (the previous mmzoo path).

``old decode`` / ``new decode`` stop at the 224 px RGB image (the processor's resize, same filter): the decoding
work itself. Reported: samples/s of each (median over rounds, wall clock and CPU time: CPU time is steadier on
a shared machine), the ratios new / old, and the pixel difference of the two paths' ``pixel_values`` (mean and
max absolute difference, in 0..255 units; it comes from the draft only: ``image_features`` is bitwise the
processor's on the same resized image, which the bench checks).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_jpegs(n: int, seed: int = 0) -> list[bytes]:
    """``n`` photo-like JPEGs (smooth colour fields, an ellipse, noise) of 480-520 px per side."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        w, h = (int(v) for v in rng.integers(480, 521, 2))
        image = Image.fromarray(rng.integers(0, 256, (5, 5, 3), dtype=np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(image)
        x, y, r = int(rng.integers(60, w - 60)), int(rng.integers(60, h - 60)), int(rng.integers(20, 60))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        noisy = np.clip(np.asarray(image, dtype=np.float32) + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(noisy).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", help="also write the measurements here")
    args = parser.parse_args()
    if args.quick:
        args.images, args.rounds = 8, 2

    import datasets
    import numpy as np
    import torch
    from transformers import ViTImageProcessorPil

    from mmzoo.data._rgb_feature import RGBImage
    from mmzoo.data.images import image_features, prepare_image, target_size

    torch.set_num_threads(1)
    processor = ViTImageProcessorPil(size={"height": args.size, "width": args.size})
    size = target_size(processor)
    jpegs = make_jpegs(args.images)
    table = datasets.Dataset.from_dict({"image": [{"bytes": b, "path": None} for b in jpegs]},
                                       features=datasets.Features({"image": datasets.Image(decode=False)}))
    old_ds = table.cast_column("image", datasets.Image(mode="RGB"))
    new_ds = table.cast_column("image", RGBImage())

    from PIL import Image

    resample = Image.Resampling(int(processor.resample))

    def old_decode(i):  # a 224 px RGB image, as the processor's resize makes it
        return old_ds[i]["image"].resize(size, resample)

    def new_decode(i):
        return prepare_image(new_ds[i]["image"], size).resize(size, resample)

    def old(i):
        return processor(images=[old_ds[i]["image"]], return_tensors="np")["pixel_values"][0]

    def new(i):
        return image_features(processor, [prepare_image(new_ds[i]["image"], size)], "np")["pixel_values"][0]

    def new_processor(i):
        return processor(images=[prepare_image(new_ds[i]["image"], size)], return_tensors="np")["pixel_values"][0]

    paths = {"old decode": old_decode, "new decode": new_decode, "old": old, "new (processor)": new_processor,
             "new": new}
    for fn in paths.values():
        fn(0)  # warm-up
    rates = {name: [] for name in paths}
    cpu_rates = {name: [] for name in paths}
    for _ in range(args.rounds):
        for name, fn in paths.items():
            start, cpu = time.perf_counter(), time.process_time()
            for i in range(args.images):
                fn(i)
            rates[name].append(args.images / (time.perf_counter() - start))
            cpu_rates[name].append(args.images / max(time.process_time() - cpu, 1e-9))
    same = all(np.array_equal(new(i), new_processor(i)) for i in range(min(args.images, 20)))
    std = np.asarray(processor.image_std).reshape(3, 1, 1) * 255
    diffs = np.stack([np.abs(old(i) - new(i)) * std for i in range(min(args.images, 50))])
    result = {
        "images": args.images, "size": args.size, "rounds": args.rounds,
        "samples_per_s": {k: statistics.median(v) for k, v in rates.items()},
        "cpu_samples_per_s": {k: statistics.median(v) for k, v in cpu_rates.items()},
        "all_rounds": rates, "all_rounds_cpu": cpu_rates,
        "speedup_decode": statistics.median(rates["new decode"]) / statistics.median(rates["old decode"]),
        "speedup_with_processor": statistics.median(rates["new"]) / statistics.median(rates["old"]),
        "cpu_speedup_decode": statistics.median(cpu_rates["new decode"]) / statistics.median(cpu_rates["old decode"]),
        "cpu_speedup_with_processor": statistics.median(cpu_rates["new"]) / statistics.median(cpu_rates["old"]),
        "image_features_equal_processor": same,
        "pixel_abs_diff_mean": float(diffs.mean()), "pixel_abs_diff_max": float(diffs.max()),
        "load_average": os.getloadavg(),
    }
    print(f"decode ~500 px JPEG -> {args.size} px + processor, 1 worker, 1 thread, median of {args.rounds} rounds "
          f"(load average {result['load_average'][0]:.1f})")
    print("| path | samples/s (wall) | samples/s (CPU time) |\n| --- | --- | --- |")
    for name in paths:
        print(f"| {name} | {result['samples_per_s'][name]:.0f} | {result['cpu_samples_per_s'][name]:.0f} |")
    print(f"decode to {args.size} px, new / old: {result['speedup_decode']:.2f}x wall, "
          f"{result['cpu_speedup_decode']:.2f}x CPU; the whole per-sample path to pixel_values: "
          f"{result['speedup_with_processor']:.2f}x wall, {result['cpu_speedup_with_processor']:.2f}x CPU")
    print(f"image_features == the processor on the same drafted image (bitwise): {same}")
    print(f"pixel_values difference new vs old: mean "
          f"{result['pixel_abs_diff_mean']:.2f}, max {result['pixel_abs_diff_max']:.0f} (0..255 units)")
    if args.json:
        import json

        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
