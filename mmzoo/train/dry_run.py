"""``mmzoo train --dry-run``: the resolved recipe, parameter counts and a FLOPs estimate, without training."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_CAPTION = "a large red circle at the top left and a small blue square in the center"


@dataclass
class DryRunReport:
    """Args:
        recipe_yaml: the resolved recipe (full model spec).
        trainable / frozen: parameter counts.
        forward_flops: FLOPs of one training forward (objectives included) per sample, measured with
            ``torch.utils.flop_counter.FlopCounterMode`` on a batch of two synthetic samples.
        image_size / seq_len: the synthetic sample's size (text padded to the maximum length: a worst case).
        global_batch / max_steps: to scale the estimate to the whole run (``max_steps`` may be ``None``);
            ``global_batch`` = per-device batch x accumulation steps x ``world_size`` processes.
        data_checks: one line per file-based data source: read, and its first rows decoded (see
            :func:`check_data`).
    """

    recipe_yaml: str
    trainable: int
    frozen: int
    forward_flops: float
    image_size: int
    seq_len: int
    global_batch: int
    max_steps: int | None
    world_size: int = 1
    data_checks: list[str] = field(default_factory=list)  # one line per data source: found, first rows decoded
    sample: str | None = None  # the synthetic non-text input when it is not an image (e.g. "1.00 s audio clip")

    @property
    def train_flops_per_sample(self) -> float:
        """Forward x 3: the usual estimate of forward + backward (the backward costs about twice the forward)."""
        return 3 * self.forward_flops

    def render(self) -> str:
        total = self.trainable + self.frozen
        lines = [
            self.recipe_yaml.rstrip(),
            "---",
            f"parameters: {total:,} total, {self.trainable:,} trainable, {self.frozen:,} frozen",
            f"FLOPs per training sample: {_si(self.train_flops_per_sample)} (forward {_si(self.forward_flops)} "
            f"measured with torch FlopCounterMode on a {self.sample or f'{self.image_size}px image'} and a "
            f"{self.seq_len}-token text, "
            "x3 for forward + backward)",
        ]
        lines += self.data_checks
        if self.max_steps:
            run = self.train_flops_per_sample * self.global_batch * self.max_steps
            lines.append(f"whole run: ~{_si(run)} ({self.max_steps:,} steps x global batch {self.global_batch} "
                         f"over {self.world_size} process{'es' if self.world_size > 1 else ''})")
        lines += self.data_checks
        return "\n".join(lines)


def dry_run(recipe, world_size: int | None = None) -> DryRunReport:
    """Build the recipe's model (no data, no training) and measure it. ``world_size``: processes the run will
    use (default ``WORLD_SIZE`` from ``torchrun`` / ``accelerate launch``, else 1)."""
    import os

    import numpy as np
    import torch
    from PIL import Image
    from torch.utils.flop_counter import FlopCounterMode

    from ..builder import build_processor, image_size_of
    from ..recipe import resolve_model_spec
    from .model import build_run_model
    from .run import check_image_size, resolved_recipe_yaml

    spec = resolve_model_spec(recipe)
    check_image_size(recipe, spec)
    data_checks = check_data(recipe)
    vqa = recipe.model.head == "vqa"
    vocab = [f"answer {i}" for i in range(recipe.model.num_answers)] if vqa else None
    model = build_run_model(recipe, spec, vocab)
    processor = build_processor(spec, max_length=recipe.data.train.max_length)
    seq_len = processor.max_length
    text = " ".join([_CAPTION] * (seq_len // 8 + 1))
    sample = None
    if getattr(processor, "modality", "image") == "audio":  # one second of silence per clip
        size, rate = 0, processor.sampling_rate
        batch = processor(text=[text, text], audio=[np.zeros(rate, dtype=np.float32)] * 2, sampling_rate=rate,
                          padding="max_length", truncation=True, max_length=seq_len)
        sample = "1.00 s audio clip"
    else:
        size = image_size_of(spec)
        batch = processor(text=[text, text], images=[Image.new("RGB", (size, size))] * 2, padding="max_length",
                          truncation=True, max_length=seq_len)
    inputs = {**batch, "labels": torch.zeros(2, len(vocab))} if vqa else {**batch, "return_loss": True}
    if any(getattr(objective, "caption_negatives", False) for objective in spec.objectives):
        # the training batches carry a negative caption per image (objectives.itm.caption_negatives)
        inputs.update(negative_input_ids=batch["input_ids"], negative_attention_mask=batch["attention_mask"])
    model.train()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(**inputs)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    t = recipe.training
    world = world_size or int(os.environ.get("WORLD_SIZE", "1"))
    return DryRunReport(
        recipe_yaml=resolved_recipe_yaml(recipe, spec), trainable=trainable, frozen=frozen,
        forward_flops=counter.get_total_flops() / 2, image_size=size, seq_len=int(batch["input_ids"].shape[1]),
        global_batch=t.per_device_train_batch_size * t.gradient_accumulation_steps * world, max_steps=t.max_steps,
        world_size=world, data_checks=data_checks, sample=sample,
    )


CHECKED_ROWS = 2


def check_data(recipe) -> list[str]:
    """:func:`check_data_source` of each data source the recipe names."""
    return [check_data_source(recipe, role) for role in ("train", "eval") if getattr(recipe.data, role) is not None]


def check_data_source(recipe, role: str) -> str:
    """``data.<role>`` exists and its first rows decode: read (streamed) and describe them; a missing file,
    unknown column or unreadable image raises the data layer's error naming the source and the fix. Built-in
    datasets are generated on first use, so only their params are checked here."""
    from ..data import load_source

    spec = getattr(recipe.data, role)
    note = spec.check_without_reading()  # generated sources (built-ins) are not read here
    if note is not None:
        return f"data.{role}: {note}"
    stream = spec.model_copy(update={"streaming": True})
    rows = list(load_source(stream, recipe.base_dir or ".").take(CHECKED_ROWS))
    if not rows:
        from ..data import DataError

        raise DataError(f"data.{role}: the source has no rows (split {spec.split!r}); point it at data")
    return (f"data.{role}: {spec.source} source readable, first {len(rows)} row(s) decoded: "
            f"{_describe_row(rows[0])}")


def _describe_row(row: dict[str, Any]) -> str:
    parts = []
    for key, value in row.items():
        if hasattr(value, "size") and hasattr(value, "mode"):
            parts.append(f"{key} {value.size[0]}x{value.size[1]} {value.mode}")
        elif isinstance(value, list):
            parts.append(f"{key} [{len(value)}]")
        elif isinstance(value, str):
            parts.append(f"{key} {value[:40]!r}")
    return ", ".join(parts)


def _si(flops: float) -> str:
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if flops >= scale:
            return f"{flops / scale:.3g} {unit}"
    return f"{flops:.3g} FLOP"
