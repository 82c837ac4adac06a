"""Trainer callbacks of mmzoo runs: the run folder's ``training_log.jsonl`` and checkpoint pushes."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import TrainerCallback

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


class HubCheckpointCallback(TrainerCallback):
    """Pushes each saved checkpoint to the branch ``step-<N>`` of ``hub.repo_id`` (``hub.push_checkpoints``)
    through ``publish(folder, hub, revision=..., commit_message=..., checkpoint=True)``. A push that still
    fails after the client's retries is logged as a warning and training goes on (the final push, done by
    the run itself, fails loudly)."""

    def __init__(self, hub, publish) -> None:
        self.hub, self.publish = hub, publish
        self.failed: list[int] = []  # steps whose checkpoint could not be pushed

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from ..errors import MmzooError

        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        try:
            self.publish(checkpoint, self.hub, revision=f"step-{state.global_step}",
                         commit_message=f"checkpoint at step {state.global_step}", checkpoint=True)
        except MmzooError as err:
            self.failed.append(state.global_step)
            logger.warning("checkpoint push of step %d failed; training goes on (the checkpoint stays in %s): %s",
                           state.global_step, checkpoint, err)
            return
        logger.info("pushed %s to %s@step-%d", checkpoint, self.hub.repo_id, state.global_step)
