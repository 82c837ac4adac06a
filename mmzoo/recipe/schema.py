"""RecipeSpec: the schema of a recipe YAML (model, data, training, evaluation, hub). Pure pydantic, no torch.

```yaml
model: {preset: mm-clip-tiny, overrides: {projection_dim: 64, encoders.text.pooling: mean}}
data:
  train: {source: builtin, name: shapes, split: train}
  eval: {source: builtin, name: shapes, split: test}
training: {max_steps: 500, per_device_train_batch_size: 64, learning_rate: 1.0e-3}
evaluation:
  - {task: retrieval}
hub: {repo_id: me/my-model}
```

`mmzoo schema recipe` prints the JSON Schema, so editors can check recipe files.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from ..data.specs import DataSpec, SourceSpec
from ..specs import ModelSpec, SpecBase

RECIPE_VERSION = 1
SPEC_SUFFIXES = (".yaml", ".yml", ".json")


# ---------------------------------------------------------------------------------------------------- model
class ModelSourceSpec(SpecBase):
    """Where the model comes from: exactly one of ``preset``, ``path``, ``spec`` or ``init_from``, then
    ``overrides``; and which head trains.

    A plain string is a preset name, or a path when it ends in .yaml/.yml/.json; a mapping with ``encoders``
    is an inline spec. ``overrides`` maps dotted keys of the model spec to values; in lists, a key may name
    an item by its ``modality`` / ``type`` (``encoders.text.pooling``, ``objectives.contrastive.weight``).
    ``init_from`` starts from the weights of a saved model (a run folder or checkpoint), spec included.
    """

    preset: str | None = Field(None, description="preset name (`mmzoo zoo list`)")
    path: str | None = Field(None, description="spec YAML/JSON file, relative to the recipe's folder")
    spec: ModelSpec | None = Field(None, description="inline model spec")
    init_from: str | None = Field(None, description="saved model folder (run or checkpoint) to start from")
    overrides: dict[str, Any] = Field(default_factory=dict, description="dotted spec key -> value")
    head: Literal["pretraining", "vqa"] = Field(
        "pretraining", description="pretraining: the spec's objectives; vqa: answer classification on "
        "question/answers data (MmzooForVisualQuestionAnswering)"
    )
    num_answers: int = Field(3129, ge=2, description="vqa: the most frequent training answers become the classes")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return normalise_model_section(value)

    @model_validator(mode="after")
    def _one_source(self) -> ModelSourceSpec:
        given = [k for k in ("preset", "path", "spec", "init_from") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"model needs exactly one of preset, path, spec or init_from (got {given or 'none'}); e.g. "
                "`model: {preset: mm-clip-tiny}`"
            )
        if self.init_from is not None and self.overrides:
            raise ValueError(
                f"model.overrides cannot change a saved model (init_from {self.init_from!r}); its weights fit its "
                "own spec. Remove overrides, or start from a preset/spec instead"
            )
        return self


def normalise_model_section(value: Any) -> Any:
    """``"mm-clip-tiny"`` -> ``{"preset": ...}``, ``"x.yaml"`` -> ``{"path": ...}``, ``{encoders: ...}`` ->
    ``{"spec": {...}}``; anything else unchanged."""
    if isinstance(value, str):
        return {"path": value} if value.endswith(SPEC_SUFFIXES) else {"preset": value}
    if isinstance(value, dict) and "encoders" in value:
        return {"spec": value}
    return value


# ------------------------------------------------------------------------------------------------- training
SCHEDULERS = (
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
    "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "warmup_stable_decay",
)
# TrainingArguments fields that the recipe sets through its own keys, or that must never be in a recipe file
OWNED_ARGS = {
    "output_dir": "output_dir", "max_steps": "max_steps", "num_train_epochs": "epochs",
    "per_device_train_batch_size": "per_device_train_batch_size",
    "per_device_eval_batch_size": "per_device_eval_batch_size", "learning_rate": "learning_rate",
    "lr_scheduler_type": "lr_scheduler_type", "lr_scheduler_kwargs": "lr_scheduler_kwargs",
    "warmup_steps": "warmup_steps", "weight_decay": "weight_decay", "max_grad_norm": "max_grad_norm",
    "bf16": "precision", "fp16": "precision", "gradient_accumulation_steps": "gradient_accumulation_steps",
    "gradient_checkpointing": "gradient_checkpointing", "activation_checkpointing": "gradient_checkpointing",
    "seed": "seed", "data_seed": "seed",
    "logging_steps": "logging_steps", "eval_steps": "eval_steps", "eval_strategy": "eval_steps",
    "save_steps": "save_steps", "save_strategy": "save_steps", "save_total_limit": "save_total_limit",
    "report_to": "report_to", "resume_from_checkpoint": "resume", "dataloader_num_workers":
    "dataloader_num_workers", "remove_unused_columns": "(always false)", "hub_token": "(never in a recipe)",
    "push_to_hub": "hub.repo_id", "hub_model_id": "hub.repo_id",
}


class TrainingSpec(SpecBase):
    """The ``training:`` section; each key maps onto ``transformers.TrainingArguments`` (same names where
    they exist). Anything else TrainingArguments accepts goes in ``trainer_args``."""

    output_dir: str | None = Field(None, description="run folder; default runs/<recipe name>")
    overwrite: bool = Field(False, description="allow training into a non-empty output_dir without --resume")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; set this or epochs")
    epochs: float | None = Field(None, gt=0, description="passes over the train data (default 1 without max_steps)")
    per_device_train_batch_size: int = Field(8, ge=1)
    per_device_eval_batch_size: int | None = Field(None, ge=1, description="default: the train batch size")
    learning_rate: float = Field(5e-4, gt=0)
    lr_scheduler_type: Literal[SCHEDULERS] = "cosine"  # type: ignore[valid-type]
    lr_scheduler_kwargs: dict[str, Any] = Field(default_factory=dict)
    warmup_steps: float = Field(0, ge=0, description="int: steps; float in [0, 1): fraction of the run")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clipping; 0 disables it")
    # auto by default: measured once per (model, batch shape, hardware) on rank 0, shared with every rank and
    # cached, so one recipe trains in one precision on a machine whatever the number of processes or the load
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 autocast when the hardware has fast bf16 and a short calibration on the "
        "model (once per model, batch shape and machine; cached) shows it faster, else fp32 (TF32 on GPUs); see "
        "mmzoo.train.precision"
    )
    compile: bool = Field(False, description="torch.compile the model (TrainingArguments.torch_compile)")
    gradient_accumulation_steps: int = Field(1, ge=1)
    gradient_checkpointing: bool = False
    seed: int = Field(0, description="model init, data order and caption choice")
    logging_steps: int = Field(10, ge=1)
    eval_steps: int | None = Field(None, ge=1, description="evaluate every N steps; default only at the end")
    save_steps: int | None = Field(500, ge=1, description="checkpoint every N steps; null: no checkpoints")
    save_total_limit: int | None = Field(None, ge=1)
    save_adapters: bool = Field(
        False, description="also write <output_dir>/adapters: the LoRA adapters and every weight not loaded from a "
                           "pretrained source (mmzoo.save_adapters); load it with AutoModel.from_pretrained"
    )
    report_to: list[str] = Field(default_factory=lambda: ["none"], description="trackers (tensorboard, wandb...)")
    resume: bool | str = Field(False, description="true: latest checkpoint in output_dir; or a checkpoint path")
    dataloader_num_workers: int = Field(0, ge=0)
    drop_last: bool = Field(
        False, description="drop each epoch's last incomplete batch instead of padding it with recycled samples"
    )
    cpu_threads: int | None = Field(
        None, ge=1, description="torch intra-op threads on CPU (torch.set_num_threads); default: torch's choice"
    )
    grad_cache_chunk_size: int | None = Field(
        None, ge=1, description="gradient caching: encode the batch in chunks of this size (contrastive models)"
    )
    trainer_args: dict[str, Any] = Field(default_factory=dict, description="other TrainingArguments fields")

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> TrainingSpec:
        if self.max_steps is not None and self.epochs is not None:
            raise ValueError(
                f"training.max_steps ({self.max_steps}) and training.epochs ({self.epochs}) are both set; "
                "keep one of them"
            )
        if self.warmup_steps >= 1 and self.warmup_steps != int(self.warmup_steps):
            raise ValueError(
                f"training.warmup_steps: {self.warmup_steps} is neither a step count (int) nor a fraction in [0, 1)"
            )
        for key in self.trainer_args:
            if key in OWNED_ARGS:
                raise ValueError(
                    f"training.trainer_args.{key}: set by the recipe itself; use {_owner(OWNED_ARGS[key])} instead"
                )
        return self


def _owner(target: str) -> str:
    return target if target.startswith("(") else f"`{target if '.' in target else 'training.' + target}`"


# ----------------------------------------------------------------------------------------------- evaluation
class EvaluationTaskSpec(SpecBase):
    """One evaluation task, run by ``mmzoo.eval.run_evaluation``. Keys besides ``task``, ``split`` and
    ``data`` are the task's own parameters (checked by the task)."""

    model_config = ConfigDict(extra="allow", frozen=True, validate_default=True)

    task: Literal["retrieval", "zero_shot_classification", "vqa", "captioning", "itm"]
    split: str | None = Field(None, description="split of the eval data to use")
    data: SourceSpec | None = Field(  # type: ignore[valid-type]
        None, description="evaluate on this source instead of data.eval"
    )


# ------------------------------------------------------------------------------------------------------ hub
class HubSpec(SpecBase):
    """Where ``mmzoo train`` publishes the run (after training, when ``repo_id`` is set). Tokens never go
    here: they come from ``HF_TOKEN`` or ``hf auth login``."""

    repo_id: str | None = Field(None, description="namespace/name on the Hub")
    private: bool = False
    revision: str | None = Field(None, description="branch to commit to; default main")
    push_checkpoints: bool = Field(False, description="also push each checkpoint (to branch step-<N>)")
    commit_message: str | None = None
    overwrite_card: bool = Field(False, description="replace a README edited on the Hub")
    remote_code: bool = Field(False, description="ship modeling code for trust_remote_code loading")
    license: str | None = None
    tags: list[str] = Field(default_factory=list)

    @field_validator("repo_id")
    @classmethod
    def _repo_id(cls, value: str | None) -> str | None:
        from ..utils.hub_ids import repo_id_problem

        if value is not None and (problem := repo_id_problem(value)) is not None:
            raise ValueError(problem)
        return value


# --------------------------------------------------------------------------------------------------- recipe
class RecipeSpec(SpecBase):
    """A whole training run: ``mmzoo train recipe.yaml``."""

    recipe_version: int = RECIPE_VERSION
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                             description="run name; default the recipe file's stem")
    description: str = ""
    base_dir: str | None = Field(None, description="folder relative paths are resolved in; default the recipe's")
    model: ModelSourceSpec
    data: DataSpec
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    evaluation: list[EvaluationTaskSpec] = Field(default_factory=list)
    hub: HubSpec = Field(default_factory=HubSpec)

    @model_validator(mode="after")
    def _check(self) -> RecipeSpec:
        if self.data.train.streaming and self.training.max_steps is None:
            raise ValueError(
                "training.max_steps: data.train is streaming (no length), so epochs cannot be counted; "
                "set training.max_steps"
            )
        return self
