"""Evaluation tasks (registry ``EVAL_TASKS``): retrieval, zero_shot_classification, vqa, captioning, itm."""

from . import captioning, itm, retrieval, vqa, zero_shot  # noqa: F401  (registers the tasks)
from .base import (
    EVAL_TASKS,
    RESULTS_FILE,
    EvaluationTask,
    TaskParams,
    TaskResult,
    list_tasks,
    register_task,
    run_evaluation,
    write_results,
)
from .errors import EvaluationError

__all__ = [
    "EVAL_TASKS",
    "RESULTS_FILE",
    "EvaluationError",
    "EvaluationTask",
    "TaskParams",
    "TaskResult",
    "list_tasks",
    "register_task",
    "run_evaluation",
    "write_results",
]
