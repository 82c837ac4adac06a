"""Evaluation tasks: the registry ``EVAL_TASKS`` and ``run_evaluation``, which writes ``eval_results.json``.

A task is a class with a pydantic ``Params`` model (the task's keys of a recipe's ``evaluation:`` entry) and
``run(model, processor, dataset, params) -> TaskResult``. ``run_evaluation`` resolves each task's data, runs it
and returns (and writes) the results::

    {"mmzoo_version": "0.1.0",
     "results": [{"task": "retrieval",
                  "dataset": {"name": "mmzoo:shapes", "config": null, "split": "test", "revision": "v1"},
                  "metrics": {"text_to_image_recall_at_1": 0.41, ...},          # numbers only
                  "protocol": {"recall_at": [1, 5, 10], "num_images": 1000, ...}}]}  # everything that pins them

``mmzoo.train`` logs ``metrics`` as ``eval_<task>/<metric>``; ``mmzoo.hub.card`` turns them into the model card's
``model-index``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..._registry import Registry
from ...specs.base import validation_problems
from ...utils.logging import get_logger
from ...version import __version__
from ..embed import parameters_for_evaluation
from ._data import describe_source, require_columns
from .errors import EvaluationError

logger = get_logger(__name__)

RESULTS_FILE = "eval_results.json"


class TaskParams(BaseModel):
    """Parameters every task accepts. ``batch_size`` (and each task's ``RUNTIME`` params) change speed, not
    results, so they stay out of the recorded protocol."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(64, ge=1, description="rows per forward pass")
    max_samples: int | None = Field(None, ge=1, description="evaluate the first N rows only")


@dataclass
class TaskResult:
    """What a task computed: ``metrics`` (name -> number) and ``protocol`` (everything needed to reproduce them)."""

    metrics: dict[str, float]
    protocol: dict[str, Any] = field(default_factory=dict)


class EvaluationTask(ABC):
    """One evaluation task. Subclasses set ``Params``, ``columns`` (needed data columns) and implement ``run``."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[TaskParams]] = TaskParams
    columns: ClassVar[tuple[str, ...]] = ("image", "captions")
    RUNTIME: ClassVar[frozenset[str]] = frozenset({"batch_size"})

    def check_data(self, dataset) -> None:
        require_columns(dataset, self.columns, self.name)

    @abstractmethod
    def run(self, model, processor, dataset, params: TaskParams) -> TaskResult:
        """Evaluate ``model`` on ``dataset`` (normalised columns, see ``mmzoo.data``)."""

    def protocol(self, params: TaskParams) -> dict[str, Any]:
        """The params that pin the result (all but the runtime ones), JSON-ready."""
        return params.model_dump(mode="json", exclude=set(self.RUNTIME))


EVAL_TASKS: Registry[type[EvaluationTask]] = Registry("evaluation task")


def register_task(name: str):
    """Class decorator: register an :class:`EvaluationTask` under ``name`` (its ``task:`` in recipes)."""

    def add(cls: type[EvaluationTask]) -> type[EvaluationTask]:
        cls.name = name
        return EVAL_TASKS.register(name, cls)

    return add


def list_tasks() -> list[str]:
    """Names of the registered evaluation tasks.

    Example:
        >>> "retrieval" in list_tasks()
        True
    """
    return EVAL_TASKS.list()


def run_evaluation(model, processor, tasks, eval_dataset=None, output_dir: str | Path | None = None, *,
                   eval_source=None, base_dir: str | Path | None = None) -> dict[str, Any]:
    """Run evaluation ``tasks`` and write ``<output_dir>/eval_results.json`` (atomically).

    Args:
        model: an mmzoo model (any head class), or any module with the methods a task needs.
        processor: its processor (``MmzooProcessor``).
        tasks: ``EvaluationTaskSpec`` objects (a recipe's ``evaluation:``), mappings like ``{"task": "retrieval",
            "max_samples": 100}``, or task names.
        eval_dataset: the loaded eval data (``mmzoo.data.load_source(recipe.data.eval)``), used by tasks without
            their own ``data:``.
        output_dir: folder for ``eval_results.json``; ``None`` writes nothing.
        eval_source: the source spec of ``eval_dataset`` (``recipe.data.eval``): names the dataset in the results
            and lets a task pick another ``split:`` of it.
        base_dir: folder relative paths of task ``data:`` sources are resolved against (the recipe's folder).

    Returns:
        ``{"mmzoo_version": ..., "results": [{"task", "dataset", "metrics", "protocol"}, ...]}``.

    Raises:
        EvaluationError: naming the task entry (``evaluation[i]``) and the problem.
    """
    from ...recipe.schema import EvaluationTaskSpec

    specs = [_task_spec(t, i, EvaluationTaskSpec) for i, t in enumerate(tasks)]
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        with parameters_for_evaluation(model):  # FSDP2 / ZeRO-3: what scoring reads outside forward
            results = _run_tasks(model, processor, specs, eval_dataset, eval_source, base_dir)
    finally:
        model.train(was_training)
    out = {"mmzoo_version": __version__, "results": results}
    if output_dir is not None:
        write_results(Path(output_dir) / RESULTS_FILE, out)
    return out


def _run_tasks(model, processor, specs, eval_dataset, eval_source, base_dir) -> list[dict[str, Any]]:
    loaded: dict[str, Any] = {}
    results = []
    for i, spec in enumerate(specs):
        task = EVAL_TASKS.get(spec.task)()
        params = _task_params(task, spec, i)
        dataset, source = _task_data(spec, i, eval_dataset, eval_source, base_dir, loaded)
        task.check_data(dataset)
        started = time.perf_counter()
        result = task.run(model, processor, dataset, params)
        dataset_info, data_protocol = describe_source(source, dataset)
        metrics, counts = split_counts(result.metrics)
        results.append({"task": spec.task, "dataset": dataset_info, "metrics": metrics,
                        "protocol": {**task.protocol(params), **result.protocol, **counts, **data_protocol}})
        logger.info("evaluation %s on %s (%.1fs): %s", spec.task, dataset_info["name"],
                    time.perf_counter() - started, metrics)
    return results


def _task_spec(task, index: int, spec_class):
    if isinstance(task, spec_class):
        return task
    data = {"task": task} if isinstance(task, str) else task
    try:
        return spec_class.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(validation_problems(err, data, whole="(entry)", schema_hint=False))
        raise EvaluationError(f"evaluation[{index}]: {problems}. Known tasks: {', '.join(list_tasks())}") from None


def _task_params(task: EvaluationTask, spec, index: int) -> TaskParams:
    params = dict(spec.model_extra or {})
    try:
        return task.Params.model_validate(params)
    except ValidationError as err:
        problems = "; ".join(validation_problems(err, params, whole="(params)", schema_hint=False))
        accepted = ", ".join(task.Params.model_fields)
        raise EvaluationError(
            f"evaluation[{index}] (task {spec.task!r}): {problems}. Accepted params: {accepted}"
        ) from None


def _task_data(spec, index: int, eval_dataset, eval_source, base_dir, loaded: dict) -> tuple[Any, Any]:
    """The dataset a task runs on and its source spec (``None`` when unknown)."""
    source = spec.data
    if source is None:
        if eval_dataset is None and eval_source is None:
            raise EvaluationError(
                f"evaluation[{index}] (task {spec.task!r}): no data to evaluate on; set data.eval in the recipe, "
                "data: on the task, or --data on the command line"
            )
        same_split = spec.split is None or spec.split == _split_of(eval_dataset, eval_source)
        if same_split and eval_dataset is not None:
            return eval_dataset, eval_source
        if eval_source is None:
            raise EvaluationError(
                f"evaluation[{index}].split: {spec.split!r} differs from the eval data's split "
                f"{_split_of(eval_dataset, None)!r} and the eval data's source is unknown here; give the task a "
                "data: source (or pass eval_source=)"
            )
        source = eval_source
    if spec.split is not None and source.split != spec.split:
        source = source.model_copy(update={"split": spec.split})
    key = source.model_dump_json()
    if key not in loaded:
        from ...data import load_source

        loaded[key] = load_source(source, base_dir or ".")
    return loaded[key], source


def _split_of(dataset, source) -> str | None:
    if source is not None:
        return source.split
    split = getattr(dataset, "split", None)
    return None if split is None else str(split)


def split_counts(raw: dict[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
    """``(metrics, counts)``: numbers except counts (keys with ``num_``), which belong to the protocol;
    non-numbers (lists such as BLEU's precisions) are dropped."""
    metrics, counts = {}, {}
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        (counts if "num_" in key else metrics)[key] = value
    return metrics, counts


def write_results(path: str | Path, results: dict[str, Any]) -> Path:
    """Write ``results`` as JSON so that readers see the old or the new file, never a partial one."""
    from ...utils.files import atomic_write_json

    return atomic_write_json(path, results)


def load_metric(name: str):
    """A packaged ``evaluate`` metric, kept in memory (no cache files)."""
    from ..metrics import load_metric as _load

    return _load(name, keep_in_memory=True)
