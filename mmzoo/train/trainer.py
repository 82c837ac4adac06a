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

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from transformers import PreTrainedModel, Trainer

from ..errors import RecipeError
from .data import EpochSampler

GRAD_CACHE_OBJECTIVES = {"contrastive", "sigmoid"}  # objectives that only need the two embeddings


class MmzooTrainer(Trainer):
    """A ``Trainer`` for :class:`~mmzoo.MmzooModel` (batches from :class:`~mmzoo.train.data.TrainCollator`).

    Args:
        grad_cache_chunk_size: encode each batch in chunks of this many pairs with gradient caching
            (dual encoders with contrastive / sigmoid objectives only); ``None`` for the plain path.
        *args, **kwargs: as for ``transformers.Trainer``.
    """

    loss_is_scaled_for_ga = False  # our loss is a per-batch mean: Trainer divides it by the accumulation steps
    # set by mmzoo.train.train: model -> results of the recipe's evaluation tasks (main process, each evaluate())
    evaluation_hook: Callable[[Any], dict[str, Any] | None] | None = None
    last_evaluation: dict[str, Any] | None = None

    def __init__(self, *args, grad_cache_chunk_size: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False  # never pass num_items_in_batch into the model
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
        return EpochSampler(len(dataset), seed=self.args.seed)

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

    def _load_best_model(self) -> None:
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            return super()._load_best_model()
        self._load_from_checkpoint(self.state.best_model_checkpoint)
        return None

    # -- loss -------------------------------------------------------------------------------------------------
    def compute_loss(self, model, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch=None):
        outputs = model(**inputs)
        if outputs.get("loss") is None:
            raise RecipeError(
                f"the model returned no loss (outputs: {list(outputs.keys())}); batches need return_loss=True and "
                "paired images and texts"
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
        if self.evaluation_hook is None or not self.is_world_process_zero():
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
        """One micro-batch with gradient caching (Gao et al. 2021): embeddings are computed in chunks without
        a graph, the loss gradient w.r.t. them is cached, then each chunk is re-encoded and backpropagated.

        Same gradients as :meth:`training_step` (up to float rounding) with one chunk's activations alive.
        Under DDP the per-chunk backwards run outside DDP's hooks and the gradients are averaged by hand at
        the synchronising micro-batch.
        """
        from ..encoders.tower import TowerOutput
        from ..losses._distributed import average_gradients
        from ..losses.grad_cache import grad_cache_step
        from ..objectives import ObjectiveContext

        model.train()
        inputs = self._prepare_inputs(inputs)
        core = self.accelerator.unwrap_model(model)
        weights = {o.type: o.weight for o in core.config.model_spec().objectives}
        scale = 1.0 / self.current_gradient_accumulation_steps
        text_keys = ("input_ids", "attention_mask", "token_type_ids")

        def encode_image(chunk):
            return core.encode_image(chunk["pixel_values"]).embeds

        def encode_text(chunk):
            return core.encode_text(chunk["input_ids"], chunk.get("attention_mask"), chunk.get("token_type_ids")).embeds

        def loss_fn(image_embeds, text_embeds):
            ctx = ObjectiveContext(model=core, inputs={},
                                   text=TowerOutput(None, None, None, text_embeds),
                                   image=TowerOutput(None, None, None, image_embeds))
            terms = {tag: objective(ctx).loss for tag, objective in core.objectives.items()}
            self._stash_terms(terms, inputs, training=True)
            return sum(weights[tag] * term for tag, term in terms.items()) * scale

        no_sync = model.no_sync() if hasattr(model, "no_sync") else contextlib.nullcontext()
        with self.compute_loss_context_manager(), no_sync:
            loss = grad_cache_step(
                encode_image, encode_text, {"pixel_values": inputs["pixel_values"]},
                {k: inputs[k] for k in text_keys if inputs.get(k) is not None}, loss_fn, self.grad_cache_chunk_size,
            )
        if self.args.world_size > 1 and self.accelerator.sync_gradients:
            average_gradients([p for p in core.parameters() if p.requires_grad])
        return loss


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
