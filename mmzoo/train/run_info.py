"""``run_info.json``: what a run (or one of its checkpoints) was in practice, for its model card.

Wall time, hardware (accelerator model and count, or the CPU), optimizer steps, samples seen, the last logged
training and evaluation losses (per objective too), where the model spec came from (preset, overrides, the
user's own description or not) and, for a checkpoint, its step. Written by the main process only.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from ._io import atomic_write_json


def hardware() -> dict[str, Any]:
    """The accelerator (name and count) or the CPU this process trains on."""
    import torch

    if torch.cuda.is_available():
        return {"accelerator": torch.cuda.get_device_name(0), "count": torch.cuda.device_count(),
                "world_size": int(os.environ.get("WORLD_SIZE", "1"))}
    return {"cpu": _cpu_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "world_size": int(os.environ.get("WORLD_SIZE", "1"))}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def model_origin(recipe) -> dict[str, Any]:
    """Where the trained spec came from; ``description_from`` is ``user`` when the user wrote the description."""
    section = recipe.model
    overrides = list(section.overrides or {})
    user = section.preset is None and section.init_from is None or "description" in overrides
    return {"preset": section.preset, "path": section.path, "init_from": section.init_from,
            "overrides": overrides, "description_from": "user" if user else "generated"}


def last_losses(log_history: list[dict[str, Any]], step: int | None = None) -> dict[str, Any]:
    """The last logged training loss and evaluation loss (and their ``/objective`` terms) up to ``step``."""
    out: dict[str, Any] = {}
    for entry in log_history:
        if step is not None and entry.get("step", 0) > step:
            continue
        if "loss" in entry:
            out["final_train_loss"] = entry["loss"]
            out["final_train_terms"] = {k.split("/", 1)[1]: v for k, v in entry.items() if k.startswith("loss/")}
        if "eval_loss" in entry:
            out["final_eval_loss"] = entry["eval_loss"]
            out["final_eval_terms"] = {k.split("/", 1)[1]: v for k, v in entry.items() if k.startswith("eval_loss/")}
            out["final_eval_step"] = entry.get("step")
        if "train_loss" in entry:
            out["mean_train_loss"] = entry["train_loss"]
    return out


def run_info(recipe, trainer, *, wall_time_s: float | None, checkpoint_step: int | None = None,
             resumed_from: str | None = None) -> dict[str, Any]:
    """The facts of ``trainer``'s run at its current step (``checkpoint_step`` for a checkpoint's copy)."""
    args, state = trainer.args, trainer.state
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * max(args.world_size, 1)
    info: dict[str, Any] = {
        "run_name": recipe.name, "wall_time_s": wall_time_s, "hardware": hardware(),
        "global_step": state.global_step, "samples_seen": state.global_step * per_step,
        "epochs": state.epoch, "model_origin": model_origin(recipe),
        **last_losses(state.log_history, checkpoint_step),
    }
    if checkpoint_step is not None:
        info["checkpoint_step"] = checkpoint_step
    if resumed_from:
        info["resumed_from"] = resumed_from
    return info


def write_run_info(folder: str | Path, info: dict[str, Any]) -> Path:
    from ..utils.files import RUN_INFO  # the card reads it; the file name has one owner

    path = Path(folder) / RUN_INFO
    atomic_write_json(path, info)
    return path
