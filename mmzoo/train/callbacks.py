"""Trainer callbacks of mmzoo runs: the run folder's ``training_log.jsonl`` and checkpoint pushes."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..utils.logging import get_logger
from ._io import atomic_write_text, jsonl

logger = get_logger(__name__)

TRAINING_LOG = "training_log.jsonl"


class TrainingLogCallback(TrainerCallback):
    """Keeps ``<run>/training_log.jsonl`` equal to the Trainer's ``log_history``, one JSON object per line.

    Each log entry is appended as it comes; at train begin (after a resume: the checkpoint's history) and
    train end the file is rewritten atomically from ``state.log_history``, so entries of a killed run that
    came after the checkpoint it resumes from are dropped. Written by the main process only.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / TRAINING_LOG

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            atomic_write_text(self.path, jsonl(state.log_history))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and state.log_history:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(state.log_history[-1], default=str) + "\n")

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            atomic_write_text(self.path, jsonl(state.log_history))


def readable_logs(logs: dict) -> dict:
    """Logged values as numbers rounded to 4 significant digits (transformers prints them as strings)."""
    out = {}
    for key, value in logs.items():
        if key == "total_flos":
            continue
        out[key] = float(f"{value:.4g}") if isinstance(value, float) else value
    return out


class NumberProgressCallback(ProgressCallback):
    """transformers' progress bars, with log lines showing numbers (``{'loss': 2.751}``, not ``'2.751'``)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None:
            self.training_bar.write(str(readable_logs(logs or {})))


class NumberPrinterCallback(PrinterCallback):
    """transformers' log printer (progress bars off), printing numbers as numbers."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_local_process_zero and logs is not None:
            print(readable_logs(logs))


def use_number_printers(trainer) -> None:
    """Swap the Trainer's progress / printer callbacks for the ones above (same behaviour otherwise)."""
    for old, new in ((ProgressCallback, NumberProgressCallback), (PrinterCallback, NumberPrinterCallback)):
        if trainer.pop_callback(old) is not None:
            trainer.add_callback(new)


class HubCheckpointCallback(TrainerCallback):
    """Pushes each saved checkpoint to the branch ``step-<N>`` of ``hub.repo_id`` (``hub.push_checkpoints``)
    through ``publish(folder, hub, revision=..., commit_message=None, checkpoint=True)``, with that checkpoint's
    own evaluation, and prints the repo URL and branch of each push.

    Before the push the checkpoint folder gets ``eval_results.json`` measured on its weights (the recipe's
    evaluation, run now unless the Trainer just evaluated this step), ``recipe.yaml`` and ``run_info.json``. A
    recipe with nothing to evaluate pushes no results, and the branch's card says the checkpoint was not
    evaluated. A push that still fails after the client's retries is logged as a warning and training goes on
    (the final push, done by the run itself, fails loudly). ``trainer`` is set by :func:`mmzoo.train.train`.
    """

    def __init__(self, hub, publish, *, recipe_yaml: str | None = None, recipe=None,
                 started: float | None = None) -> None:
        self.hub, self.publish = hub, publish
        self.recipe_yaml, self.recipe, self.started = recipe_yaml, recipe, started
        self.trainer = None
        self.failed: list[int] = []  # steps whose checkpoint could not be pushed

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from ..errors import MmzooError
        from .run import report_push

        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        self.write_checkpoint_material(checkpoint, state)
        try:
            result = self.publish(checkpoint, self.hub, revision=f"step-{state.global_step}", commit_message=None,
                                  checkpoint=True)
        except MmzooError as err:
            self.failed.append(state.global_step)
            logger.warning("checkpoint push of step %d failed; training goes on (the checkpoint stays in %s): %s",
                           state.global_step, checkpoint, err)
            return
        report_push(checkpoint.name, result)

    def write_checkpoint_material(self, checkpoint: Path, state) -> None:
        """The checkpoint's own ``eval_results.json`` (or none), ``run_info.json`` and ``recipe.yaml``."""
        import time

        from .run import evaluated_at
        from .run_info import run_info, write_run_info

        trainer, step = self.trainer, state.global_step
        results_file = checkpoint / "eval_results.json"
        results_file.unlink(missing_ok=True)  # never another step's results
        if trainer is not None:
            metrics = evaluated_at(state.log_history, step)
            if metrics is None or (trainer.evaluation_hook is not None and trainer.last_evaluation is None):
                metrics = trainer.evaluate() if trainer.eval_dataset is not None else trainer.run_evaluation_hook()
            if metrics or trainer.last_evaluation:
                results = {**(trainer.last_evaluation or {}), "trainer_metrics": metrics or {},
                           "evaluated_step": step}
                results.setdefault("results", [])
                atomic_write_text(results_file, json.dumps(results, indent=2, default=str))
            if self.recipe is not None:
                wall = time.monotonic() - self.started if self.started is not None else None
                write_run_info(checkpoint, run_info(self.recipe, trainer, wall_time_s=wall, checkpoint_step=step))
        if self.recipe_yaml:
            atomic_write_text(checkpoint / "recipe.yaml", self.recipe_yaml)
