"""``train(recipe)``: build, train, evaluate and save one run; the engine behind ``mmzoo train``.

The run folder (``training.output_dir``, default ``runs/<name>``) ends with: ``config.json`` +
``model.safetensors``, the processor files, ``recipe.yaml`` (resolved: full model spec, paths relative to
the recipe), ``training_log.jsonl`` (Trainer log history), ``eval_results.json``, ``mmzoo_run.json`` (status:
running / complete) and the Trainer's resumable ``checkpoint-*/`` folders (each marked complete by
``mmzoo_checkpoint.json``). See :mod:`mmzoo.train.checkpoints` for what survives a crash.

What the run needs from higher layers comes in as callables: ``evaluate`` (default
:func:`mmzoo.eval.run_evaluation`), ``publish`` (default :func:`mmzoo.hub.push.publish_run`: a push with the
recipe's ``hub:`` settings) and ``illustrate``; the defaults are the services that ``import mmzoo`` provides
(:mod:`mmzoo.utils.services`), so this layer imports neither ``mmzoo.eval`` nor ``mmzoo.hub``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RecipeError
from ..utils.logging import get_logger, progress_bars_disabled
from ..version import __version__
from ..utils.files import fault_point
from ..utils.services import service
from ._io import atomic_write_json, atomic_write_text, jsonl
from .args import run_dir, training_arguments
from .callbacks import TRAINING_LOG, HubCheckpointCallback, TrainingLogCallback, use_number_printers
from .checkpoints import (
    RUN_STATUS,
    latest_complete_checkpoint,
    owned_paths,
    run_lock,
    save_final_model,
    write_run_status,
)
from .precision import use_precision_attention

logger = get_logger(__name__)

RUN_FILES = ("config.json", "model.safetensors", "recipe.yaml", TRAINING_LOG, "eval_results.json", RUN_STATUS)

Evaluate = Callable[..., dict[str, Any]]  # run_evaluation(model, processor, tasks, dataset, output_dir, *, ...)
Publish = Callable[..., Any]  # publish(folder, hub_spec, *, revision=..., commit_message=...)
Illustrate = Callable[..., list]  # write_pictures(out, log_history, model, processor, eval_data) -> paths


@dataclass
class TrainResult:
    """What a run produced. ``eval_results`` is the content of ``eval_results.json``."""

    run_dir: Path
    global_step: int
    train_loss: float | None
    eval_results: dict[str, Any]
    skipped: dict[str, dict[str, Any]] = field(default_factory=dict)  # bad samples dropped, per data role


def train(recipe, *, resume: bool | str | None = None, output_dir: str | Path | None = None,
          progress: bool | None = None, callbacks: tuple = (), evaluate: Evaluate | None = None,
          publish: Publish | None = None, illustrate: Illustrate | None = None,
          **trainer_args: Any) -> TrainResult:
    """Train ``recipe`` (a :class:`~mmzoo.recipe.RecipeSpec`, e.g. from :func:`~mmzoo.recipe.load_recipe`).

    Args:
        resume: ``True`` continues from the newest complete ``checkpoint-*`` in the run folder, a path from
            that checkpoint; ``None`` uses ``training.resume``.
        output_dir: run folder; default ``training.output_dir`` or ``runs/<recipe name>``. It is locked for
            the run: a second run into it fails at once.
        progress: show progress bars; default on unless ``MMZOO_DISABLE_PROGRESS_BARS`` is set.
        callbacks: extra ``TrainerCallback`` instances.
        evaluate: runs the recipe's ``evaluation:`` tasks, with the signature of
            :func:`mmzoo.eval.run_evaluation`; default that function.
        publish: ``publish(folder, hub_spec, revision=None, commit_message=None)`` uploads a run or
            checkpoint folder (``hub.repo_id``); default :func:`mmzoo.hub.push.publish_run`.
        illustrate: writes the run's pictures into the run folder and returns their paths, with the signature
            of :func:`mmzoo.hub.pictures.write_pictures`; default that function.
        **trainer_args: ``TrainingArguments`` fields that override the recipe (tests, notebooks).

    Returns:
        :class:`TrainResult`.
    """
    from ..recipe import resolve_model_spec

    out = Path(output_dir or run_dir(recipe))
    with run_lock(out):
        checkpoint = resolve_checkpoint(out, recipe.training.resume if resume is None else resume)
        if checkpoint is None and int(os.environ.get("RANK", "0")) == 0:  # the others would see rank 0's files
            _prepare_fresh_run_dir(out, recipe.training.overwrite)
        spec = resolve_model_spec(recipe)
        check_image_size(recipe, spec)
        check_text_tower(recipe, spec)
        check_trackers(recipe.training.report_to)
        if int(os.environ.get("RANK", "0")) == 0:
            write_run_status(out, "running")
        # the standard services come from the layers above (mmzoo.eval, mmzoo.hub), provided by `import mmzoo`
        services = (evaluate or (service("evaluate") if recipe.evaluation else None),
                    publish or (service("publish") if recipe.hub.repo_id else None),
                    illustrate or service("illustrate"))
        with cpu_threads(recipe.training.cpu_threads):
            return _train(recipe, spec, out, checkpoint, progress, callbacks, trainer_args, services)


def _train(recipe, spec, out: Path, checkpoint: Path | None, progress, callbacks, trainer_args,
           services) -> TrainResult:
    from transformers import set_seed

    from ..builder import build_processor
    from .data import EmptyStreamError, load_run_data
    from .model import build_run_model
    from .trainer import MmzooTrainer, plan_batches

    evaluate, publish, illustrate = services
    started = time.monotonic()
    seed = recipe.training.seed
    set_seed(seed)
    processor = build_processor(spec, max_length=recipe.data.train.max_length)
    data = load_run_data(recipe)
    check_not_all_bad(recipe, data)
    for role, report in data.skipped.items():
        logger.warning("data.%s: skipped %d bad sample(s) (on_bad_sample: skip), e.g. %s", role,
                       report["skipped"], report["examples"][:1])
    train_ds, eval_ds, collator, answer_vocab = training_views(recipe, data, processor)
    set_seed(seed)  # the model's initialisation does not depend on how much randomness data loading used
    model = build_run_model(recipe, spec, answer_vocab)
    show = (not progress_bars_disabled()) if progress is None else progress
    plan = plan_batches(recipe.training, spec)  # accumulation + contrastive/sigmoid -> gradient cache
    if plan.note:
        logger.info(plan.note)
    fields = {"disable_tqdm": not show, **plan.trainer_args(), **trainer_args}
    if recipe.training.precision == "auto":  # under torchrun: start the process group the choice is shared over
        training_arguments(recipe, out, precision="fp32", **{**fields, "tf32": None}).device  # noqa: B018
    precision = resolve_run_precision(recipe, model, train_ds, collator, out, resuming=checkpoint is not None)
    if (attention := use_precision_attention(model, precision)) is not None:
        logger.info("precision %s on %s: attention runs %s (see mmzoo.train.precision.BF16_ATTENTION)", precision,
                    next(model.parameters()).device.type, attention)
    args = training_arguments(recipe, out, precision=precision, **fields)
    all_callbacks = [TrainingLogCallback(out), *callbacks]
    checkpoint_pusher = None
    if recipe.hub.repo_id and recipe.hub.push_checkpoints:
        checkpoint_pusher = HubCheckpointCallback(recipe.hub, publish, recipe_yaml=resolved_recipe_yaml(recipe, spec),
                                                  recipe=recipe, started=started)
        all_callbacks.append(checkpoint_pusher)
    trainer = MmzooTrainer(
        model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds, data_collator=collator,
        processing_class=processor, callbacks=all_callbacks,
        grad_cache_chunk_size=plan.grad_cache_chunk_size,
    )
    use_number_printers(trainer)
    trainer.evaluation_hook = evaluation_hook(recipe, processor, data.eval, evaluate)
    if checkpoint_pusher is not None:
        checkpoint_pusher.trainer = trainer
    if checkpoint and trainer.is_world_process_zero():
        print(f"resuming from {checkpoint.name} (step {resumed_step(checkpoint)}) in {out}", flush=True)
    trainer.mmzoo_run_started, trainer.mmzoo_eval_data = started, data.eval
    trainer.mmzoo_resumed_from = str(checkpoint) if checkpoint else None
    try:
        output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except EmptyStreamError:  # (a ValueError too: caught first)
        if "train" not in current_skips(data):
            raise
        raise no_training_data(current_skips(data)) from None  # every row of the stream was bad
    except ValueError as err:  # accelerate, when a streamed source yields no row at all
        if "does not contain any data" not in str(err):
            raise
        raise no_training_data(current_skips(data)) from None
    return finalize_run(trainer, recipe, spec, out, data, eval_ds, output.training_loss, publish, illustrate)


def check_not_all_bad(recipe, data) -> None:
    """``on_bad_sample: skip`` that dropped every training row is an error, not an empty run."""
    from ..data import DataError

    report = data.skipped.get("train")
    if report and not recipe.data.train.streaming and len(data.train) == 0:
        raise DataError(
            f"data.train: all {report['skipped']} rows are bad (on_bad_sample: skip dropped every one), e.g. "
            f"{report['examples'][:1]}; nothing to train on. Fix the data or point data.train at another source"
        )


def current_skips(data) -> dict[str, dict[str, Any]]:
    """Bad samples dropped so far, per role; streaming sources count them while they are read, so this is
    read at the end of the run."""
    from ..data import bad_sample_report

    skipped = dict(data.skipped)
    for role in ("train", "eval"):
        report = bad_sample_report(getattr(data, role))
        if report is not None and report.skipped:
            skipped[role] = {"skipped": report.skipped, "examples": list(report.examples), "source": report.source}
    return skipped


def resolve_run_precision(recipe, model, train_ds, collator, out: Path, resuming: bool = False) -> str:
    """``training.precision`` resolved, printed and written to ``<out>/precision.json`` (see
    mmzoo.train.precision): ``auto`` is measured once on global rank 0 on one per-device training batch (or
    taken from the machine's cache of earlier measurements) and shared with every rank; a resumed run keeps the
    choice it made first."""
    from .precision import (calibration_batch, choose_precision, default_cache_dir, read_choice, shared_choice,
                            write_choice)

    requested = recipe.training.precision
    previous = read_choice(out) if resuming and requested == "auto" else None
    if previous is not None:
        print(f"[mmzoo] precision: auto -> {previous.precision} (kept from the run being resumed)", flush=True)
        return previous.precision

    def decide():
        batch = None
        if requested == "auto":
            batch = calibration_batch(train_ds, collator, recipe.training.per_device_train_batch_size)
        return choose_precision(requested, model, batch, cache_dir=default_cache_dir())

    choice = shared_choice(decide) if requested == "auto" else choose_precision(requested)
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
    modality = processor_modality(processor)
    if recipe.data.train.streaming:  # each rank reads its own part, shuffled, repeated until max_steps
        from .data import RankStream, pair_columns

        train_ds = RankStream(pair_columns(data.train, "data.train", modality), seed, recipe.data.train.shuffle_buffer)
    else:
        train_ds = pair_view(data.train, seed, False, "hash", "data.train", modality)
    eval_ds = None
    if data.eval is not None:
        eval_ds = pair_view(data.eval, seed, recipe.data.eval.streaming, "first", "data.eval", modality)
    return train_ds, eval_ds, TrainCollator(processor, max_length, modality), None


def processor_modality(processor) -> str:
    """The non-text modality a processor prepares (``MmzooProcessor.modality``; other processors: image)."""
    return getattr(processor, "modality", "image")


def pair_view(dataset, seed: int, streaming: bool, pick: str, key: str, modality: str = "image"):
    """The (image or audio, one caption) view of a loaded source; captions picked by ``pick``."""
    from .data import PairDataset, pair_columns, streaming_pairs

    dataset = pair_columns(dataset, key, modality)
    return streaming_pairs(dataset, seed) if streaming else PairDataset(dataset, seed, pick=pick)


def no_training_data(skipped: dict):
    from ..data import DataError

    bad = skipped.get("train")
    detail = (f"every row read was bad ({bad['skipped']} skipped, e.g. {bad['examples'][:1]})" if bad
              else "the training data yielded no batch")
    return DataError(f"data.train: no training step ran: {detail}; no model was saved. Fix the data or point "
                     "data.train at another source")


def finalize_run(trainer, recipe, spec, out: Path, data, eval_ds, train_loss: float | None,
                 publish: Publish | None = None, illustrate: Illustrate | None = None) -> TrainResult:
    """Final evaluation and the run folder's files (model, processor, recipe, log, results), each replaced
    atomically, then ``mmzoo_run.json`` set to complete (last); hub push."""
    skipped = current_skips(data)
    if trainer.state.global_step == 0:
        raise no_training_data(skipped)
    for role, report in skipped.items():
        if getattr(recipe.data, role).streaming:
            logger.warning("data.%s: skipped %d bad sample(s) while streaming (on_bad_sample: skip)", role,
                           report["skipped"])
    evaluated = evaluated_at(trainer.state.log_history, trainer.state.global_step)
    if evaluated is not None and (trainer.evaluation_hook is None or trainer.last_evaluation is not None):
        metrics = evaluated  # this step was just evaluated (eval_steps, a checkpoint push): not twice
    elif eval_ds is not None:
        metrics = trainer.evaluate()
    else:
        metrics = trainer.run_evaluation_hook()
    files = save_final_model(trainer, out)  # config.json, model.safetensors, processor: staged, then moved
    if recipe.training.save_adapters and trainer.is_world_process_zero():
        from ..adapters import save_adapters

        save_adapters(trainer.model, out / "adapters", trainer.processing_class)
        files.append("adapters")
    results: dict[str, Any] = {"results": []}
    if trainer.is_world_process_zero():
        results = {**(trainer.last_evaluation or {}), "trainer_metrics": metrics, "bad_samples": skipped}
        results.setdefault("results", [])
        atomic_write_json(out / "eval_results.json", results)
        fault_point("final:results")
        atomic_write_text(out / "recipe.yaml", resolved_recipe_yaml(recipe, spec, out))
        atomic_write_text(out / TRAINING_LOG, jsonl(trainer.state.log_history))
        card_files = write_card_material(trainer, recipe, out, illustrate)
        fault_point("final:before-status")
        write_run_status(out, "complete", trainer.state.global_step,
                         [*files, "eval_results.json", "recipe.yaml", TRAINING_LOG, *card_files])
        if recipe.hub.repo_id:
            report_push(out.name, publish(out, recipe.hub))
    return TrainResult(out, trainer.state.global_step, train_loss, results, skipped)


def evaluated_at(log_history: list[dict[str, Any]], step: int) -> dict[str, float] | None:
    """The evaluation metrics logged at ``step`` (``eval_*`` keys), or ``None`` when none were."""
    found: dict[str, float] = {}
    for entry in log_history:
        if entry.get("step") == step:
            found.update({k: v for k, v in entry.items() if k.startswith("eval_")})
    return found or None


def resumed_step(checkpoint: Path) -> int | str:
    """The global step a Trainer checkpoint folder holds (from its trainer_state.json)."""
    import json

    try:
        return json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]
    except (OSError, ValueError, KeyError):
        return checkpoint.name.rpartition("-")[2]


def write_card_material(trainer, recipe, out: Path, illustrate: Illustrate | None = None) -> list[str]:
    """``run_info.json`` (wall time, hardware, samples, final losses), the captioning head's
    ``generation_config.json`` and the run's pictures (with matplotlib); returns the file names written."""
    from .run_info import run_info, write_run_info

    started = getattr(trainer, "mmzoo_run_started", None)
    wall = time.monotonic() - started if started is not None else None
    written = [write_run_info(out, run_info(recipe, trainer, wall_time_s=wall,
                                            resumed_from=getattr(trainer, "mmzoo_resumed_from", None))).name]
    model = trainer.accelerator.unwrap_model(trainer.model)
    if model.config.model_spec().objective("captioning") is not None and not (out / "generation_config.json").exists():
        from ..modeling.heads import caption_generation_config  # generate() on the loaded model needs its ids

        caption_generation_config(model.config).save_pretrained(out)
        written.append("generation_config.json")
    if illustrate is not None:
        written += [p.name for p in illustrate(out, trainer.state.log_history, model, trainer.processing_class,
                                               getattr(trainer, "mmzoo_eval_data", None))]
    return written


def report_push(what: str, result) -> None:
    """Print where a push went: ``pushed <what> to <url>/tree/<branch> (repo, branch, commit)``."""
    commit_url = getattr(result, "commit_url", None)
    if commit_url is None:
        return
    repo_url = commit_url.split("/commit/")[0]
    print(f"pushed {what} to {repo_url}/tree/{result.revision} (repo {result.repo_id}, branch {result.revision}, "
          f"commit {result.commit_oid[:12]})", flush=True)


def evaluation_hook(recipe, processor, eval_dataset, evaluate: Evaluate | None):
    """``model -> evaluate(model, processor, recipe.evaluation, eval_dataset)`` (results returned, not
    written: the run's ``eval_results.json`` has one writer, :func:`finalize_run`), or ``None`` when the
    recipe has no evaluation tasks."""
    if not recipe.evaluation or evaluate is None:
        return None

    def hook(model):
        was_training = model.training
        model.eval()
        try:
            return evaluate(model, processor, recipe.evaluation, eval_dataset, None,
                            eval_source=recipe.data.eval, base_dir=recipe.base_dir)
        finally:
            model.train(was_training)

    return hook


def resolved_recipe_yaml(recipe, spec, out: Path | None = None) -> str:
    """The recipe as run: the model's preset / path / overrides replaced by the full resolved spec (a model
    started ``init_from`` saved weights keeps that source: its spec is in its config).

    No absolute local path is kept: ``base_dir`` becomes the recipe's folder relative to the run folder
    ``out`` (so the file still resolves where it lies), ``init_from`` is relative to ``base_dir`` and
    ``training.output_dir`` is dropped (the file lies in the run folder)."""
    section = recipe.model
    base = Path(recipe.base_dir or ".").resolve()
    if section.init_from is not None:
        origin = f"init_from {section.init_from}"
        model = section.model_copy(update={"init_from": os.path.relpath(base / section.init_from, base)})
    else:
        origin = section.preset or section.path or "inline spec"
        model = section.model_copy(update={"spec": spec, "preset": None, "path": None, "overrides": {}})
    overrides = f" + overrides {', '.join(section.overrides)}" if section.overrides else ""
    header = f"# Resolved by mmzoo {__version__} from model {origin}{overrides}\n"
    base_dir = os.path.relpath(base, Path(out).resolve()) if out is not None else None
    training = recipe.training.model_copy(update={"output_dir": None})  # the file lies in the run folder
    return header + recipe.model_copy(update={"model": model, "base_dir": base_dir, "training": training}).to_yaml()


def resolve_checkpoint(out: Path, resume: bool | str) -> Path | None:
    """``None`` (fresh run), the newest complete ``checkpoint-*`` of ``out`` (``resume=True``) or the given
    folder (which must be complete too)."""
    from .checkpoints import checkpoint_problem

    if resume is False or resume is None:
        return None
    if resume is True:
        return latest_complete_checkpoint(out)
    path = Path(resume)
    if not (path / "trainer_state.json").is_file():
        raise RecipeError(f"--resume {path}: not a Trainer checkpoint folder (no trainer_state.json)")
    if (problem := checkpoint_problem(path)) is not None:
        raise RecipeError(f"--resume {path}: incomplete checkpoint: {problem}; resume from an older checkpoint "
                          "(--resume without a path takes the newest complete one)")
    return path


def _prepare_fresh_run_dir(out: Path, overwrite: bool) -> None:
    """A fresh run needs a folder without a previous run; ``overwrite`` removes what mmzoo wrote there (its
    files and ``checkpoint-N`` folders), never anything else."""
    previous = owned_paths(out)
    if not [p for p in previous if p.name != RUN_STATUS]:
        return  # at most the status of a run that failed before writing anything: start over
    if not overwrite:
        raise RecipeError(
            f"{out} already holds a run ({previous[0].name}...); pass --resume to continue it, "
            "--set training.overwrite=true to replace it, or choose another training.output_dir"
        )
    if int(os.environ.get("RANK", "0")) == 0:  # global rank 0: one deleter on a shared filesystem
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


# training.report_to tracker -> (module that must be importable, pip package / mmzoo extra to install)
TRACKERS = {
    "tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"),
    "wandb": (("wandb",), "wandb"),
    "mlflow": (("mlflow",), "mlflow"),
    "comet_ml": (("comet_ml",), "comet_ml"),
    "clearml": (("clearml",), "clearml"),
    "neptune": (("neptune",), "neptune"),
    "aim": (("aim",), "aim"),
    "dvclive": (("dvclive",), "dvclive"),
    "codecarbon": (("codecarbon",), "codecarbon"),
    "swanlab": (("swanlab",), "swanlab"),
    "trackio": (("trackio",), "trackio"),
}


def check_trackers(report_to) -> None:
    """Each ``training.report_to`` tracker must be installed (Trainer would fail after loading everything)."""
    for name in report_to:
        if name in ("none", "all") or name not in TRACKERS:
            continue  # unknown names are left to TrainingArguments, which lists the valid ones
        modules, package = TRACKERS[name]
        if not any(_importable(m) for m in modules):
            raise RecipeError(
                f"training.report_to: {name} is not installed; `pip install {package}`, or remove {name!r} from "
                "training.report_to (e.g. --set 'training.report_to=[none]')"
            )


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install counts as missing
        return False


def check_text_tower(recipe, spec) -> None:
    """``data.*.max_length`` against the built text tower's position embeddings (towers from a folder too)."""
    from ..builder import tower_config
    from ..recipe.loader import check_text_length

    text = next((e for e in spec.encoders if e.modality == "text"), None)
    if text is None:
        return
    config = tower_config(text, "encoders.text")
    config = getattr(config, "text_config", None) or config
    check_text_length(recipe, getattr(config, "max_position_embeddings", None))


def check_image_size(recipe, spec) -> None:
    """``data.*.image_size``, when set, must be the vision tower's input size (the processor resizes to it)."""
    from ..builder import image_size_of

    wanted = {role: s.image_size for role in ("train", "eval")
              if (s := getattr(recipe.data, role)) is not None and s.image_size is not None}
    if not wanted:
        return
    size = image_size_of(spec, default=None)
    for role, value in wanted.items():
        if size is not None and value != size:
            raise RecipeError(
                f"data.{role}.image_size is {value} but the model's vision tower takes {size} px images; set "
                f"data.{role}.image_size: {size}, or model.overrides encoders.image.config.image_size: {value}"
            )
