"""Crash-safe run folders: complete-checkpoint markers, the run's status file, the final save through a
staging folder, disk-full errors and the ``output_dir`` lock.

* Every ``checkpoint-N/`` that mmzoo finishes gets ``mmzoo_checkpoint.json`` (its files and their sizes),
  written after the Trainer's last file and before older checkpoints are rotated away; ``--resume`` takes the
  newest checkpoint whose marker matches its files and says which incomplete ones it ignored.
* ``mmzoo_run.json`` says ``running`` from the first step until every final file is in place, then
  ``complete`` with the list of files mmzoo wrote (``mmzoo push`` refuses a run that is not complete;
  ``training.overwrite`` removes only mmzoo's files).
* The final model is saved into ``.mmzoo-final.tmp/`` and moved into the run folder file by file
  (``os.replace``), so a kill never leaves a truncated ``model.safetensors`` in place.

Fault points for crash tests (``MMZOO_FAULT_KILL=point[@step],...``, see
:func:`mmzoo.utils.files.fault_point`): ``checkpoint:begin``, ``checkpoint:written`` (all Trainer files,
no marker), ``checkpoint:marked`` (before rotation), ``final:staged`` (final model in the staging folder),
``final:moving`` (after the first file moved), ``final:results``, ``final:before-status``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import RecipeError
from ..utils.files import (
    CHECKPOINT_MARKER,
    RUN_STATUS,
    atomic_write_json,
    checkpoint_problem,
    fault_point,
    is_disk_full,
    safetensors_problem,
)
from ..utils.logging import get_logger
from ..version import __version__

logger = get_logger(__name__)

LOCK_FILE = ".mmzoo.lock"
STAGING = ".mmzoo-final.tmp"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
# files mmzoo writes at the top of a run folder (Trainer.save_model: model, config, processor, training args)
OWN_FILES = (
    "config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
    "training_args.bin", "processor_config.json", "preprocessor_config.json", "tokenizer.json",
    "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json",
    "merges.txt", "chat_template.jinja", "recipe.yaml", "training_log.jsonl", "eval_results.json", RUN_STATUS,
    "precision.json",  # mmzoo.train.precision.PRECISION_FILE
)
OWN_PATTERNS = (re.compile(r"^model-\d+-of-\d+\.safetensors$"),)


class DiskFullError(RecipeError, OSError):
    """The disk of the run folder is full."""


# -- checkpoints ----------------------------------------------------------------------------------------------
def mark_checkpoint(folder: Path, step: int) -> None:
    """Write ``folder``'s completeness marker (its files and their sizes), last."""
    files = {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != CHECKPOINT_MARKER}
    atomic_write_json(folder / CHECKPOINT_MARKER, {"mmzoo_version": __version__, "step": step, "files": files})


@dataclass
class CheckpointScan:
    complete: list[Path]  # by step, oldest first
    incomplete: list[tuple[Path, str]]


def scan_checkpoints(out: Path) -> CheckpointScan:
    folders = sorted((p for p in (out.iterdir() if out.is_dir() else ()) if p.is_dir() and CHECKPOINT_RE.match(p.name)),
                     key=lambda p: int(CHECKPOINT_RE.match(p.name).group(1)))
    complete, incomplete = [], []
    for folder in folders:
        problem = checkpoint_problem(folder)
        (complete.append(folder) if problem is None else incomplete.append((folder, problem)))
    return CheckpointScan(complete, incomplete)


def latest_complete_checkpoint(out: Path) -> Path:
    """The newest complete ``checkpoint-N`` of ``out``; logs which one and the incomplete ones it skipped."""
    scan = scan_checkpoints(out)
    ignored = [(f, why) for f, why in scan.incomplete if not scan.complete or _step(f) > _step(scan.complete[-1])]
    for folder, why in ignored:
        logger.warning("--resume: ignoring incomplete %s: %s", folder.name, why)
    if not scan.complete:
        found = (f"no complete checkpoint-* folder in {out} (incomplete: "
                 f"{', '.join(f.name for f, _ in scan.incomplete)})") if scan.incomplete else \
            f"no checkpoint-* folder in {out}"
        raise RecipeError(
            f"--resume: {found}; train without --resume "
            "(--set training.overwrite=true to replace the run), or point --resume at a checkpoint folder"
        )
    chosen = scan.complete[-1]
    logger.warning("--resume: resuming from %s%s", chosen,
                   f" (ignored incomplete {', '.join(f.name for f, _ in ignored)})" if ignored else "")
    return chosen


def _step(folder: Path) -> int:
    return int(CHECKPOINT_RE.match(folder.name).group(1))


def save_checkpoint(trainer, save, model, trial) -> None:
    """Run the Trainer's ``_save_checkpoint`` (``save``) so that the new folder is marked complete before
    older checkpoints are rotated, a stale incomplete folder of the same step is replaced, and a full disk
    gives a clear error (the partial folder is removed)."""
    from transformers.trainer_utils import rotate_checkpoints

    run_dir = Path(trainer._get_output_dir(trial=trial))
    folder = run_dir / f"checkpoint-{trainer.state.global_step}"
    main = trainer.args.should_save
    if main and folder.is_dir() and checkpoint_problem(folder) is not None:
        shutil.rmtree(folder)  # left by a killed run; this save replaces it
    limit = trainer.args.save_total_limit
    trainer.args.save_total_limit = None  # rotate only once the new checkpoint is marked complete
    try:
        with disk_full_errors(folder, f"checkpoint {folder.name}", remove=folder if main else None):
            fault_point("checkpoint:begin", trainer.state.global_step)
            save(model, trial)
            # every rank writes its own files (rng_state_<rank>.pth, an engine's shards): all of them must be
            # on disk before the marker says the folder is complete
            trainer.accelerator.wait_for_everyone()
            fault_point("checkpoint:written", trainer.state.global_step)
            if main:
                mark_checkpoint(folder, trainer.state.global_step)
    finally:
        trainer.args.save_total_limit = limit
    fault_point("checkpoint:marked", trainer.state.global_step)
    if main:
        rotate_checkpoints(str(run_dir), limit, trainer.state.best_model_checkpoint, use_mtime=True)


@contextlib.contextmanager
def disk_full_errors(where: Path, what: str, remove: Path | None = None) -> Iterator[None]:
    """Turn "no space left on device" (however torch / safetensors / the OS report it) into
    :class:`DiskFullError` naming the folder; ``remove`` (the partial output) is deleted first."""
    try:
        yield
    except Exception as err:
        if not is_disk_full(err):
            raise
        if remove is not None:
            shutil.rmtree(remove, ignore_errors=True)
        raise DiskFullError(
            f"no space left on device while writing {what} in {where.parent}"
            f"{' (the partial folder was removed)' if remove is not None else ''}; free space on that disk or "
            "set training.output_dir to a disk with room, then rerun with --resume to continue from the last "
            "complete checkpoint"
        ) from None


# -- the run folder -------------------------------------------------------------------------------------------
def write_run_status(out: Path, status: str, step: int | None = None, files: list[str] | None = None) -> None:
    atomic_write_json(out / RUN_STATUS, {"mmzoo_version": __version__, "status": status, "step": step,
                                         "files": sorted(files or [])})


def read_run_status(out: Path) -> dict | None:
    """The content of ``mmzoo_run.json`` (``None`` when the folder was not written by ``mmzoo train``)."""
    path = Path(out) / RUN_STATUS
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"status": "unreadable"}
    return data if isinstance(data, dict) else {"status": "unreadable"}


def save_final_model(trainer, out: Path) -> list[str]:
    """``trainer.save_model`` into a staging folder, then each file moved into ``out`` (atomic per file)."""
    staging = out / STAGING
    main = trainer.is_world_process_zero()
    if main and staging.exists():
        shutil.rmtree(staging)
    with disk_full_errors(staging, "the final model", remove=staging if main else None):
        trainer.save_model(str(staging))
        if not main:
            return []
        fault_point("final:staged")
        for path in staging.iterdir():
            if path.suffix == ".safetensors" and (problem := safetensors_problem(path)) is not None:
                raise RecipeError(f"{path}: the saved model is broken ({problem}); nothing was moved into {out}")
        names = sorted(p.name for p in staging.iterdir())
        for name in names:
            os.replace(staging / name, out / name)
            fault_point("final:moving")
        staging.rmdir()
    return names


def owned_paths(out: Path) -> list[Path]:
    """What a previous mmzoo run wrote in ``out``: its files (the status file's list plus mmzoo's fixed
    names), its ``checkpoint-N`` folders, staging folders and the log folder of trackers; nothing else."""
    if not out.is_dir():
        return []
    listed = set((read_run_status(out) or {}).get("files") or [])
    owned = []
    for path in sorted(out.iterdir()):
        name = path.name
        if name == LOCK_FILE:
            continue
        if path.is_dir():
            if CHECKPOINT_RE.match(name) or name == STAGING or (name == "runs" and _tracker_logs(path)):
                owned.append(path)
        elif name in listed or name in OWN_FILES or any(p.match(name) for p in OWN_PATTERNS) or (
            name.startswith(".") and name.endswith(".tmp")
        ):
            owned.append(path)
    return owned


def _tracker_logs(folder: Path) -> bool:
    """``runs/`` under the output dir is TrainingArguments' default logging_dir (tensorboard event files)."""
    return all(p.is_dir() or p.name.startswith("events.out.tfevents") for p in folder.rglob("*"))


# -- lock -----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out`` for the whole run (main process only). A second run into the same
    folder fails at once naming the holder's PID; a lock file left by a dead process is simply taken over
    (the OS drops ``flock`` locks with their process)."""
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
            raise RecipeError(
                f"{out} is in use by another mmzoo run (PID {holder}, lock {path}); wait for it to finish, stop "
                "it, or choose another training.output_dir"
            ) from None
        stale = os.pread(fd, 200, 0).decode(errors="replace").strip()
        if stale and stale != str(os.getpid()):
            logger.warning("%s: taking over the lock left by PID %s (no longer running)", out, stale)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
