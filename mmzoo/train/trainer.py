"""MmzooTrainer: ``transformers.Trainer`` with per-objective loss logging and a seeded, resumable data order.

Only what Trainer cannot do is overridden, so DDP / FSDP / DeepSpeed keep working through ``torchrun`` or
``accelerate launch``:

* ``compute_loss`` reads ``MmzooOutput.loss`` and stashes ``loss_terms``; ``log`` adds their means since
  the last log as ``loss/<objective>`` (averaged over ranks, like Trainer's ``loss``), evaluation adds
  ``eval_loss/<objective>``.
* ``_get_train_sampler`` returns :class:`~mmzoo.train.data.EpochSampler` (order and captions seeded by
  seed, epoch and index, so a resumed run replays the uninterrupted one).
* ``training_step`` dispatches to :meth:`MmzooTrainer.grad_cache_training_step` when
  ``grad_cache_chunk_size`` is set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedModel, Trainer

from ..errors import RecipeError
from ..utils.logging import get_logger
from ..losses._distributed import equal_batch_sizes
from .data import EpochSampler, RankStream

from .grad_cache import GRAD_CACHE_OBJECTIVES

logger = get_logger(__name__)


class MmzooTrainer(Trainer):
    """A ``Trainer`` for :class:`~mmzoo.MmzooModel` (batches from :class:`~mmzoo.train.data.TrainCollator`).

    Args:
        grad_cache_chunk_size: encode each batch in chunks of this many pairs with gradient caching
            (dual encoders with contrastive / sigmoid objectives only); ``None`` for the plain path.
        *args, **kwargs: as for ``transformers.Trainer``.
    """

    loss_is_scaled_for_ga = False  # our loss is a per-batch mean: Trainer divides it by the accumulation steps
    # set by mmzoo.train.train: model -> results of the recipe's evaluation tasks (every rank, each evaluate())
    evaluation_hook: Callable[[Any], dict[str, Any] | None] | None = None
    last_evaluation: dict[str, Any] | None = None

    def __init__(self, *args, grad_cache_chunk_size: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False  # never pass num_items_in_batch into the model
        # batches carry tensors only (no `return_loss` flag): compute_loss asks the model for its loss, so Trainer's
        # prediction_step must know an evaluation batch has one (it inspects forward's default, None, otherwise)
        self.can_return_loss = True
        check_engine_is_applied(self)
        if self.is_deepspeed_enabled:
            gather_zero3_weights_on_save(self.accelerator.state.deepspeed_plugin.deepspeed_config)
        self.grad_cache_chunk_size = grad_cache_chunk_size
        if grad_cache_chunk_size:
            check_grad_cache_support(self.accelerator.unwrap_model(self.model), self.args)
        self._terms: dict[str, torch.Tensor] = {}
        self._term_steps = 0.0  # optimizer steps the stashed terms cover
        self._eval_terms: dict[str, torch.Tensor] = {}
        self._eval_count = 0

    # -- data order -------------------------------------------------------------------------------------------
    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if dataset is None or isinstance(dataset, torch.utils.data.IterableDataset):
            return None
        self._epoch_sampler = EpochSampler(len(dataset), seed=self.args.seed)
        return self._epoch_sampler

    def get_train_dataloader(self):
        """A :class:`~mmzoo.train.data.RankStream` is already this rank's part of the stream: it gets a loader
        that accelerate neither dispatches from rank 0 nor shards again (only places batches on the device)."""
        if not isinstance(self.train_dataset, RankStream):
            return super().get_train_dataloader()
        from accelerate.data_loader import prepare_data_loader

        args = self.args
        loader = torch.utils.data.DataLoader(
            self.train_dataset, batch_size=self._train_batch_size, collate_fn=self.data_collator,
            num_workers=args.dataloader_num_workers, pin_memory=args.dataloader_pin_memory,
            persistent_workers=args.dataloader_persistent_workers and args.dataloader_num_workers > 0,
            prefetch_factor=args.dataloader_prefetch_factor if args.dataloader_num_workers > 0 else None,
            drop_last=True,
        )
        return prepare_data_loader(loader, device=args.device, num_processes=1, process_index=0,
                                   put_on_device=True, dispatch_batches=False)

    def _run_epoch(self, *args, **kwargs):
        """Set the epoch of the sample order directly: on resume, accelerate wraps the batch sampler in a
        batch-skipping sampler that does not pass ``set_epoch`` on, and the rest of the interrupted epoch
        would replay epoch 0's order on every rank."""
        epoch = kwargs.get("epoch")
        if epoch is not None:
            for target in (getattr(self, "_epoch_sampler", None), self.train_dataset):
                if hasattr(target, "set_epoch"):
                    target.set_epoch(epoch)
        return super()._run_epoch(*args, **kwargs)

    # -- checkpoints ------------------------------------------------------------------------------------------
    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """Trainer loads ``model.safetensors`` with a raw ``load_state_dict(strict=False)``, but
        ``save_pretrained`` writes some towers (e.g. ViT) under their legacy parameter names, which that raw
        load silently skips. Load through ``from_pretrained`` (which converts them) and copy strictly."""
        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        if self.is_fsdp_enabled or self.is_deepspeed_enabled or not isinstance(target, PreTrainedModel):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        loaded = type(target).from_pretrained(resume_from_checkpoint, config=target.config, dtype=target.dtype)
        target.load_state_dict(loaded.state_dict(), strict=True)
        return None

    def _save_checkpoint(self, model, trial) -> None:
        """Trainer's checkpoint, marked complete before older ones rotate (see :mod:`mmzoo.train.checkpoints`)."""
        from .checkpoints import save_checkpoint

        save_checkpoint(self, super()._save_checkpoint, model, trial)

    def _load_best_model(self) -> None:
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            return super()._load_best_model()
        self._load_from_checkpoint(self.state.best_model_checkpoint)
        return None

    # -- loss -------------------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch=None):
        with equal_batch_sizes():  # accelerate's loaders give every rank full, equal batches: no size exchange
            outputs = model(**inputs, **({} if "labels" in inputs else {"return_loss": True}))
        if outputs.get("loss") is None:
            raise RecipeError(
                f"the model returned no loss (outputs: {list(outputs.keys())}); batches need paired images and "
                "texts (or labels)"
            )
        # objective scalars (keys "<objective>/<name>", e.g. itm/accuracy) are averaged and logged like the terms
        terms = {**(outputs.get("loss_terms") or {}), **(outputs.get("objective_metrics") or {})}
        self._stash_terms(terms, inputs, training=model.training)
        return (outputs["loss"], outputs) if return_outputs else outputs["loss"]

    def _stash_terms(self, terms: dict[str, torch.Tensor], inputs: dict[str, Any], training: bool) -> None:
        if training:  # mirrors Trainer's tr_loss: per micro-batch loss / accumulation steps, summed
            share = 1.0 / self.current_gradient_accumulation_steps
            for tag, value in terms.items():
                self._terms[tag] = self._terms.get(tag, 0.0) + value.detach().float() * share
            self._term_steps += share
            return
        n = _batch_size(inputs)  # eval: sample-weighted, as Trainer's eval_loss
        for tag, value in terms.items():
            self._eval_terms[tag] = self._eval_terms.get(tag, 0.0) + value.detach().float() * n
        self._eval_count += n

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.grad_cache_chunk_size:
            return self.grad_cache_training_step(model, inputs)
        return super().training_step(model, inputs, num_items_in_batch)

    # -- logging ----------------------------------------------------------------------------------------------
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._terms:
            for tag, total in sorted(self._terms.items()):
                name = tag if "/" in tag else f"loss/{tag}"
                logs[name] = self._mean_over_ranks(total).item() / max(self._term_steps, 1e-12)
            self._terms, self._term_steps = {}, 0.0
        super().log(logs, start_time)

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix: str = "eval"):
        self._eval_terms, self._eval_count = {}, 0
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        if self._eval_terms:
            count = self._sum_over_ranks(torch.tensor(float(self._eval_count), device=self.args.device))
            for tag, total in sorted(self._eval_terms.items()):
                name = f"{metric_key_prefix}_{tag}" if "/" in tag else f"{metric_key_prefix}_loss/{tag}"
                output.metrics[name] = (self._sum_over_ranks(total) / count).item()
        return output

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """Trainer's evaluation (eval loss and its terms), then the recipe's evaluation tasks, logged as
        ``<prefix>_<task>/<metric>``."""
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        task_metrics = self.run_evaluation_hook(metric_key_prefix)
        metrics.update(task_metrics)
        return metrics

    def run_evaluation_hook(self, metric_key_prefix: str = "eval") -> dict[str, float]:
        """The recipe's evaluation tasks, on every rank: each embeds / scores its shard of the data and the
        results are gathered (:mod:`mmzoo.eval.embed`), so FSDP and ZeRO-3 forwards (collective) match up and
        no rank idles in its next all-reduce while rank 0 evaluates alone."""
        if self.evaluation_hook is None:
            return {}
        self.last_evaluation = self.evaluation_hook(self.model)
        flat = flatten_task_metrics(self.last_evaluation, metric_key_prefix)
        if flat:
            self.log(flat)
        return flat

    def _mean_over_ranks(self, value: torch.Tensor) -> torch.Tensor:
        value = torch.as_tensor(value, device=self.args.device, dtype=torch.float32)
        return self.accelerator.reduce(value, reduction="mean") if self.args.world_size > 1 else value

    def _sum_over_ranks(self, value: torch.Tensor) -> torch.Tensor:
        value = torch.as_tensor(value, device=self.args.device, dtype=torch.float32)
        return self.accelerator.reduce(value, reduction="sum") if self.args.world_size > 1 else value

    # -- gradient caching ------------------------------------------------------------------------------------
    def grad_cache_training_step(self, model, inputs: dict[str, Any]) -> torch.Tensor:
        """One micro-batch with gradient caching (:func:`mmzoo.train.grad_cache.grad_cache_model_step`), under
        the engine's autocast (bf16 towers under ``precision: bf16``). The last pair of chunks runs through
        ``model`` (the DDP wrapper), so DDP reduces the gradients in its buckets; Trainer's ``no_sync`` around
        non-final accumulation micro-batches applies as for the plain step."""
        from .grad_cache import grad_cache_model_step

        model.train()
        inputs = self._prepare_inputs(inputs)
        core = self.accelerator.unwrap_model(model)
        with self.compute_loss_context_manager(), self.accelerator.autocast(), equal_batch_sizes():
            loss = grad_cache_model_step(
                core, inputs, self.grad_cache_chunk_size, loss_scale=1.0 / self.current_gradient_accumulation_steps,
                on_terms=lambda terms: self._stash_terms(terms, inputs, training=True), wrapped=model,
            )
        return loss


@dataclass(frozen=True)
class BatchPlan:
    """How a run's batches are formed: the per-device batch the loader delivers, the accumulation steps and
    the gradient-cache chunk (``None``: plain forward)."""

    per_device_batch: int
    accumulation: int
    grad_cache_chunk_size: int | None
    note: str | None = None  # why it differs from the recipe (logged)

    def trainer_args(self) -> dict[str, int]:
        return {"per_device_train_batch_size": self.per_device_batch,
                "gradient_accumulation_steps": self.accumulation}


def plan_batches(training, spec) -> BatchPlan:
    """Gradient accumulation with a contrastive / sigmoid loss would score each micro-batch against its own
    negatives only. A dual encoder trained only with those losses is therefore routed to the gradient cache:
    ``per_device_train_batch_size`` x ``gradient_accumulation_steps`` pairs per step, encoded in chunks of the
    per-device batch (the same memory, the same optimizer steps, negatives from the whole global batch). Other
    models with such a loss keep accumulating, with a warning naming the fix."""
    batch, steps, chunk = (training.per_device_train_batch_size, training.gradient_accumulation_steps,
                           training.grad_cache_chunk_size)
    pairwise = [o.type for o in spec.objectives if o.type in GRAD_CACHE_OBJECTIVES]
    if steps == 1 or not pairwise:
        return BatchPlan(batch, steps, chunk)
    engine = {k for k in ("deepspeed", "fsdp") if training.trainer_args.get(k)}
    cacheable = (spec.fusion.type == "dual_encoder" and len(pairwise) == len(spec.objectives)
                 and training.precision != "fp16" and not engine)
    if cacheable:
        chunk = min(chunk or batch, batch)
        note = (f"training.gradient_accumulation_steps {steps} with the {'/'.join(pairwise)} loss: routed to the "
                f"gradient cache ({batch * steps} pairs per device per step in chunks of {chunk}), so negatives "
                f"come from the whole batch, not from each micro-batch of {batch}")
        return BatchPlan(batch * steps, 1, chunk, note)
    reason = (f"fusion {spec.fusion.type!r} with objectives {[o.type for o in spec.objectives]}" if not engine and
              training.precision != "fp16" else f"{'fp16' if training.precision == 'fp16' else sorted(engine)[0]}")
    logger.warning(
        "training.gradient_accumulation_steps %d: the %s loss sees only the negatives of each micro-batch of %d per "
        "device, not of the accumulated batch (gradient caching cannot serve %s). Raise "
        "training.per_device_train_batch_size (with gradient_checkpointing: true to fit it) to get more negatives.",
        steps, "/".join(pairwise), batch, reason)
    return BatchPlan(batch, steps, chunk)


def check_engine_is_applied(trainer) -> None:
    """FSDP asked for (``training.trainer_args.fsdp``, ``accelerate launch --use_fsdp``) where accelerate cannot
    apply it (CPU / gloo processes) would silently train with plain DDP: refuse instead."""
    import os

    requested = bool(trainer.args.fsdp) or os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true")
    if requested and not trainer.is_fsdp_enabled:
        where = f"training.trainer_args.fsdp={trainer.args.fsdp!r}" if trainer.args.fsdp else "ACCELERATE_USE_FSDP=true"
        raise RecipeError(
            f"FSDP was requested ({where}) but accelerate runs this job as "
            f"{trainer.accelerator.distributed_type.value} ({trainer.args.world_size} process(es) on "
            f"{trainer.args.device.type}): accelerate applies FSDP only on GPUs and other accelerators, so the run "
            "would silently be plain DDP. Launch on GPUs, or remove the FSDP setting to train with DDP knowingly "
            "(see the README's scaling guide)"
        )


GATHER_ON_SAVE = "stage3_gather_16bit_weights_on_model_save"


def gather_zero3_weights_on_save(config: dict) -> None:
    """ZeRO-3 keeps every parameter sharded; without ``stage3_gather_16bit_weights_on_model_save`` the run
    folder would end without ``model.safetensors``. mmzoo sets it (and warns when a config turned it off), so
    the final model is full and loadable whatever the engine; the optimizer state stays in DeepSpeed's format
    in the checkpoints."""
    zero = config.setdefault("zero_optimization", {})
    if zero.get("stage") != 3 or zero.get(GATHER_ON_SAVE) is True:
        return
    if zero.get(GATHER_ON_SAVE) is False:
        logger.warning("deepspeed config: zero_optimization.%s is false; mmzoo sets it to true so that the run "
                       "folder gets a full model.safetensors (weights gathered on save)", GATHER_ON_SAVE)
    zero[GATHER_ON_SAVE] = True


def check_grad_cache_support(model, args) -> None:
    """Gradient caching needs objectives that see only the two embeddings, and a plain (DDP) engine."""
    spec = model.config.model_spec()
    others = [o.type for o in spec.objectives if o.type not in GRAD_CACHE_OBJECTIVES]
    if spec.fusion.type != "dual_encoder" or others:
        raise RecipeError(
            f"training.grad_cache_chunk_size: gradient caching needs a dual encoder trained only with "
            f"{sorted(GRAD_CACHE_OBJECTIVES)} (model {spec.name!r} has fusion {spec.fusion.type!r}, objectives "
            f"{[o.type for o in spec.objectives]}); remove grad_cache_chunk_size"
        )
    if args.fp16 or args.deepspeed or args.fsdp:
        raise RecipeError(
            "training.grad_cache_chunk_size: gradient caching runs its own backward passes, so it works with "
            "fp32/bf16 and single-process or DDP training only (not fp16 loss scaling, FSDP or DeepSpeed)"
        )


def flatten_task_metrics(results: dict[str, Any] | None, prefix: str = "eval") -> dict[str, float]:
    """``{"results": [{"task": t, "metrics": {m: v}}]}`` -> ``{"<prefix>_<t>/<m>": v}`` (numbers only)."""
    flat = {}
    for result in (results or {}).get("results", []) if isinstance(results, dict) else []:
        for metric, value in (result.get("metrics") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                flat[f"{prefix}_{result.get('task', 'task')}/{metric}"] = float(value)
    return flat


def _batch_size(inputs: dict[str, Any]) -> int:
    for key in ("pixel_values", "input_ids"):
        if isinstance(inputs.get(key), torch.Tensor):
            return int(inputs[key].shape[0])
    return 1
