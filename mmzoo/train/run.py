"""``train(recipe)``: build, train, evaluate and save one run; the engine behind ``mmzoo train``.

The run folder (``training.output_dir``, default ``runs/<name>``) ends with: ``config.json`` +
``model.safetensors``, the processor files, ``recipe.yaml`` (resolved: full model spec, absolute base_dir),
``training_log.jsonl`` (Trainer log history), ``eval_results.json`` and the Trainer's resumable
``checkpoint-*/`` folders.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RecipeError
from ..utils.logging import get_logger, progress_bars_disabled
from ..version import __version__
from ._io import atomic_write_json, atomic_write_text, jsonl
from .args import run_dir, training_arguments
from .callbacks import TRAINING_LOG, HubCheckpointCallback, TrainingLogCallback

logger = get_logger(__name__)

RUN_FILES = ("config.json", "model.safetensors", "recipe.yaml", TRAINING_LOG, "eval_results.json")


@dataclass
class TrainResult:
    """What a run produced. ``eval_results`` is the content of ``eval_results.json``."""

    run_dir: Path
    global_step: int
    train_loss: float | None
    eval_results: dict[str, Any]
    skipped: dict[str, dict[str, Any]] = field(default_factory=dict)  # bad samples dropped, per data role


def train(recipe, *, resume: bool | str | None = None, output_dir: str | Path | None = None,
          progress: bool | None = None, callbacks: tuple = (), **trainer_args: Any) -> TrainResult:
    """Train ``recipe`` (a :class:`~mmzoo.recipe.RecipeSpec`, e.g. from :func:`~mmzoo.recipe.load_recipe`).

    Args:
        resume: ``True`` continues from the latest ``checkpoint-*`` in the run folder, a path from that
            checkpoint; ``None`` uses ``training.resume``.
        output_dir: run folder; default ``training.output_dir`` or ``runs/<recipe name>``.
        progress: show progress bars; default on unless ``MMZOO_DISABLE_PROGRESS_BARS`` is set.
        callbacks: extra ``TrainerCallback`` instances.
        **trainer_args: ``TrainingArguments`` fields that override the recipe (tests, notebooks).

    Returns:
        :class:`TrainResult`.
    """
    from ..recipe import resolve_model_spec

    out = Path(output_dir or run_dir(recipe))
    checkpoint = resolve_checkpoint(out, recipe.training.resume if resume is None else resume)
    if checkpoint is None:
        _prepare_fresh_run_dir(out, recipe.training.overwrite)
    spec = resolve_model_spec(recipe)
    check_image_size(recipe, spec)
    with cpu_threads(recipe.training.cpu_threads):
        return _train(recipe, spec, out, checkpoint, progress, callbacks, trainer_args)


def _train(recipe, spec, out: Path, checkpoint: Path | None, progress, callbacks, trainer_args) -> TrainResult:
    from transformers import set_seed

    from ..builder import build_processor
    from .data import load_run_data
    from .model import build_run_model
    from .trainer import MmzooTrainer

    seed = recipe.training.seed
    set_seed(seed)
    processor = build_processor(spec, max_length=recipe.data.train.max_length)
    data = load_run_data(recipe)
    for role, report in data.skipped.items():
        logger.warning("data.%s: skipped %d bad sample(s) (on_bad_sample: skip), e.g. %s", role,
                       report["skipped"], report["examples"][:1])
    train_ds, eval_ds, collator, answer_vocab = training_views(recipe, data, processor)
    set_seed(seed)  # the model's initialisation does not depend on how much randomness data loading used
    model = build_run_model(recipe, spec, answer_vocab)
    show = (not progress_bars_disabled()) if progress is None else progress
    precision = resolve_run_precision(recipe, model, train_ds, collator, out, resuming=checkpoint is not None)
    args = training_arguments(recipe, out, disable_tqdm=not show, precision=precision, **trainer_args)
    all_callbacks = [TrainingLogCallback(out), *callbacks]
    if recipe.hub.repo_id and recipe.hub.push_checkpoints:
        all_callbacks.append(HubCheckpointCallback(recipe.hub))
    trainer = MmzooTrainer(
        model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, data_collator=collator,
        processing_class=processor, callbacks=all_callbacks,
        grad_cache_chunk_size=recipe.training.grad_cache_chunk_size,
    )
    trainer.evaluation_hook = evaluation_hook(recipe, processor, data.eval, out)
    output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    return finalize_run(trainer, recipe, spec, out, data.skipped, eval_ds, output.training_loss)


def resolve_run_precision(recipe, model, train_ds, collator, out: Path, resuming: bool = False) -> str:
    """``training.precision`` resolved (``auto`` calibrates on one training batch), printed and written to
    ``<out>/precision.json`` (see mmzoo.train.precision). A resumed run keeps the choice it made first."""
    from .precision import calibration_batch, choose_precision, read_choice, write_choice

    requested = recipe.training.precision
    previous = read_choice(out) if resuming and requested == "auto" else None
    if previous is not None:
        print(f"[mmzoo] precision: auto -> {previous.precision} (kept from the run being resumed)", flush=True)
        return previous.precision
    batch = None
    if requested == "auto":
        batch = calibration_batch(train_ds, collator, recipe.training.per_device_train_batch_size)
    choice = choose_precision(requested, model, batch)
    if os.environ.get("RANK", "0") == "0":
        write_choice(choice, out)
        print(f"[mmzoo] {choice.summary()}", flush=True)
    return choice.precision


def training_views(recipe, data, processor):
    """``(train_dataset, eval_dataset, collator, answer_vocab)`` the Trainer iterates: (image, one caption)
    pairs for pretraining, (image, question, answers) items for the vqa head."""
    from .data import TrainCollator, VqaCollator, VqaDataset, answer_vocabulary

    seed, max_length = recipe.training.seed, recipe.data.train.max_length
    if recipe.model.head == "vqa":
        train_ds = VqaDataset(data.train, "data.train")
        eval_ds = None if data.eval is None else VqaDataset(data.eval, "data.eval")
        vocab = answer_vocabulary(train_ds, recipe.model.num_answers)
        return train_ds, eval_ds, VqaCollator(processor, vocab, max_length), vocab
    train_ds = pair_view(data.train, seed, recipe.data.train.streaming, "hash", "data.train")
    eval_ds = None
    if data.eval is not None:
        eval_ds = pair_view(data.eval, seed, recipe.data.eval.streaming, "first", "data.eval")
    return train_ds, eval_ds, TrainCollator(processor, max_length), None


def pair_view(dataset, seed: int, streaming: bool, pick: str, key: str):
    """The (image, one caption) view of a loaded source; captions picked by ``pick`` ("hash" / "first")."""
    from .data import PairDataset, pair_columns, streaming_pairs

    dataset = pair_columns(dataset, key)
    return streaming_pairs(dataset, seed) if streaming else PairDataset(dataset, seed, pick=pick)


def finalize_run(trainer, recipe, spec, out: Path, skipped: dict, eval_ds, train_loss: float | None) -> TrainResult:
    """Final evaluation and the run folder's files (model, processor, recipe, log, results); hub push."""
    if eval_ds is not None:
        metrics = trainer.evaluate()
    else:
        metrics = trainer.run_evaluation_hook()
    trainer.save_model(str(out))  # config.json, model.safetensors and the processor (processing_class)
    results: dict[str, Any] = {"results": []}
    if trainer.is_world_process_zero():
        results = {**(trainer.last_evaluation or {}), "trainer_metrics": metrics, "bad_samples": skipped}
        results.setdefault("results", [])
        atomic_write_json(out / "eval_results.json", results)
        atomic_write_text(out / "recipe.yaml", resolved_recipe_yaml(recipe, spec))
        atomic_write_text(out / TRAINING_LOG, jsonl(trainer.state.log_history))
        if recipe.hub.repo_id:
            push_to_hub(out, recipe.hub)
    return TrainResult(out, trainer.state.global_step, train_loss, results, skipped)


def evaluation_hook(recipe, processor, eval_dataset, out: Path):
    """``model -> mmzoo.eval.run_evaluation(model, processor, recipe.evaluation, eval_dataset, out)``, or
    ``None`` when the recipe has no evaluation tasks or that function is not available."""
    if not recipe.evaluation:
        return None
    run_evaluation = _optional("mmzoo.eval", "run_evaluation")
    if run_evaluation is None:
        logger.warning("evaluation: tasks %s skipped: mmzoo.eval.run_evaluation is not available in this "
                       "install", [t.task for t in recipe.evaluation])
        return None

    accepted = inspect.signature(run_evaluation).parameters
    extra = {k: v for k, v in (("eval_source", recipe.data.eval), ("base_dir", recipe.base_dir)) if k in accepted}

    def hook(model):
        was_training = model.training
        model.eval()
        try:
            return run_evaluation(model, processor, recipe.evaluation, eval_dataset, str(out), **extra)
        finally:
            model.train(was_training)

    return hook


def push_to_hub(out: Path, hub) -> None:
    push_run = _optional("mmzoo.hub.push", "push_run")
    if push_run is None:
        raise RecipeError("hub.repo_id is set but mmzoo.hub.push is not available; remove hub.repo_id")
    push_run(out, hub.repo_id, private=hub.private, revision=hub.revision, commit_message=hub.commit_message,
             overwrite_card=hub.overwrite_card, remote_code=hub.remote_code, license=hub.license,
             tags=tuple(hub.tags))


def resolved_recipe_yaml(recipe, spec) -> str:
    """The recipe as run: the model's preset / path / overrides replaced by the full resolved spec (a model
    started ``init_from`` saved weights keeps that source, as an absolute path: its spec is in its config)."""
    section = recipe.model
    if section.init_from is not None:
        origin = f"init_from {section.init_from}"
        folder = (Path(recipe.base_dir or ".") / section.init_from).resolve()
        model = section.model_copy(update={"init_from": str(folder)})
    else:
        origin = section.preset or section.path or "inline spec"
        model = section.model_copy(update={"spec": spec, "preset": None, "path": None, "overrides": {}})
    overrides = f" + overrides {', '.join(section.overrides)}" if section.overrides else ""
    header = f"# Resolved by mmzoo {__version__} from model {origin}{overrides}\n"
    return header + recipe.model_copy(update={"model": model}).to_yaml()


def resolve_checkpoint(out: Path, resume: bool | str) -> Path | None:
    """``None`` (fresh run), the latest ``checkpoint-*`` of ``out`` (``resume=True``) or the given folder."""
    from transformers.trainer_utils import get_last_checkpoint

    if resume is False or resume is None:
        return None
    if resume is True:
        last = get_last_checkpoint(str(out)) if out.is_dir() else None
        if last is None:
            raise RecipeError(
                f"--resume: no checkpoint-* folder in {out}; train without --resume, or point --resume at a "
                "checkpoint folder"
            )
        return Path(last)
    path = Path(resume)
    if not (path / "trainer_state.json").is_file():
        raise RecipeError(f"--resume {path}: not a Trainer checkpoint folder (no trainer_state.json)")
    return path


def _prepare_fresh_run_dir(out: Path, overwrite: bool) -> None:
    previous = sorted(out.glob("checkpoint-*")) + [out / f for f in RUN_FILES if (out / f).exists()]
    if not previous:
        return
    if not overwrite:
        raise RecipeError(
            f"{out} already holds a run ({previous[0].name}...); pass --resume to continue it, "
            "--set training.overwrite=true to replace it, or choose another training.output_dir"
        )
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        for path in previous:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


@contextlib.contextmanager
def cpu_threads(threads: int | None):
    """``training.cpu_threads``: torch's intra-op threads while training without a GPU, restored afterwards
    (with a busy or small CPU, fewer threads than cores, leaving one to the data loader, are often several
    times faster)."""
    import torch

    if threads is None or torch.cuda.is_available():
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def check_image_size(recipe, spec) -> None:
    """``data.*.image_size``, when set, must be the vision tower's input size (the processor resizes to it)."""
    from ..builder import tower_config

    wanted = {role: s.image_size for role in ("train", "eval")
              if (s := getattr(recipe.data, role)) is not None and s.image_size is not None}
    if not wanted:
        return
    size = getattr(tower_config(spec.encoder("image"), "encoders.image"), "image_size", None)
    size = size[0] if isinstance(size, (list, tuple)) else size
    for role, value in wanted.items():
        if size is not None and value != size:
            raise RecipeError(
                f"data.{role}.image_size is {value} but the model's vision tower takes {size} px images; set "
                f"data.{role}.image_size: {size}, or model.overrides encoders.image.config.image_size: {value}"
            )


def _optional(module: str, attr: str):
    try:
        return getattr(importlib.import_module(module), attr, None)
    except ModuleNotFoundError as err:
        if err.name and module.startswith(err.name):
            return None
        raise
