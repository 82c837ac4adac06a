"""Map a recipe's ``training:`` section onto ``transformers.TrainingArguments``."""

from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path
from typing import Any

from ..errors import RecipeError


def run_dir(recipe) -> Path:
    """The run folder. Like every relative path in a recipe, a relative ``training.output_dir`` is relative to
    the recipe file's folder (``base_dir``); unset, the run goes to ``runs/<recipe name>`` in the working
    directory."""
    if recipe.training.output_dir is None:
        return Path("runs") / (recipe.name or "run")
    path = Path(recipe.training.output_dir).expanduser()
    return path if path.is_absolute() or not recipe.base_dir else Path(recipe.base_dir) / path


# report_to tracker -> (module it needs, mmzoo extra that installs it)
TRACKER_PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", None),
                    "mlflow": ("mlflow", None), "comet_ml": ("comet_ml", None)}


def check_trackers(report_to) -> None:
    """A ``training.report_to`` tracker whose package is missing fails now, with the install command."""
    import importlib.util

    for tracker in report_to:
        module, extra = TRACKER_PACKAGES.get(tracker, (None, None))
        if module is not None and importlib.util.find_spec(module) is None:
            install = f"pip install 'mmzoo[{extra}]'" if extra else f"pip install {module}"
            raise RecipeError(f"training.report_to: {tracker!r} needs the {module} package, which is not "
                              f"installed; {install}, or remove {tracker!r} from report_to")


def training_arguments(recipe, output_dir: str | Path | None = None, *, precision: str | None = None, **extra: Any):
    """``TrainingArguments`` for ``recipe`` (``extra`` overrides individual fields, e.g. in tests).

    ``precision``: the resolved ``training.precision`` (``mmzoo.train.precision.choose_precision``; the run
    resolves ``auto`` on the model before calling this); ``auto`` left unresolved means fp32. fp32 on a GPU
    enables TF32 matmuls.
    """
    import torch
    from transformers import TrainingArguments
    from transformers.utils import is_torch_tf32_available

    t = recipe.training
    precision = precision or t.precision
    if precision == "auto":
        precision = "fp32"
    if precision == "fp16" and not torch.cuda.is_available():
        raise RecipeError("training.precision: fp16 needs a CUDA GPU; use bf16 or fp32 on this machine")
    known = {f.name for f in dataclasses.fields(TrainingArguments)}
    for key in t.trainer_args:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise RecipeError(
                f"training.trainer_args.{key}: not a transformers.TrainingArguments field{hint}"
            )
    check_trackers(t.report_to)
    cpu = not torch.cuda.is_available()
    multi_process = int(os.environ.get("WORLD_SIZE", "1")) > 1  # torchrun / accelerate launch
    kwargs: dict[str, Any] = {
        "output_dir": str(output_dir or run_dir(recipe)),
        "max_steps": t.max_steps if t.max_steps is not None else -1,
        "num_train_epochs": t.epochs if t.epochs is not None else 1.0,
        "per_device_train_batch_size": t.per_device_train_batch_size,
        "per_device_eval_batch_size": t.per_device_eval_batch_size or t.per_device_train_batch_size,
        "learning_rate": t.learning_rate,
        "lr_scheduler_type": t.lr_scheduler_type,
        "lr_scheduler_kwargs": dict(t.lr_scheduler_kwargs),
        "warmup_steps": t.warmup_steps if t.warmup_steps < 1 else int(t.warmup_steps),
        "weight_decay": t.weight_decay,
        "max_grad_norm": t.max_grad_norm,
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        "tf32": True if precision == "fp32" and torch.cuda.is_available() and is_torch_tf32_available() else None,
        "torch_compile": t.compile,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "activation_checkpointing": t.gradient_checkpointing,
        "seed": t.seed,
        "logging_steps": t.logging_steps,
        "logging_first_step": True,
        "eval_strategy": "steps" if t.eval_steps and recipe.data.eval is not None else "no",
        "eval_steps": t.eval_steps,
        "save_strategy": "steps" if t.save_steps else "no",
        "save_steps": t.save_steps or 500,
        "save_total_limit": t.save_total_limit,
        "report_to": list(t.report_to),
        "dataloader_num_workers": t.dataloader_num_workers,
        "dataloader_drop_last": t.drop_last,
        "remove_unused_columns": False,
        "prediction_loss_only": True,
        "ddp_backend": "gloo" if cpu and multi_process else None,
        # every trainable parameter of an mmzoo model gets a gradient (the model freezes what its loss never
        # reaches), so DDP skips the unused-parameter scan; a custom model that leaves some unused sets
        # training.trainer_args.ddp_find_unused_parameters: true
        "ddp_find_unused_parameters": False,
        "use_cpu": cpu,
        **t.trainer_args,
        **extra,
    }
    try:
        return TrainingArguments(**kwargs)
    except (ValueError, TypeError) as err:
        raise RecipeError(f"training: transformers.TrainingArguments rejected the settings: {err}") from None
