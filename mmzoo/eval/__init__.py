"""Evaluation: tasks run by ``run_evaluation`` (``mmzoo eval`` and ``mmzoo train``), packaged ``evaluate``
metrics (``mmzoo.eval.metrics``), chunked exact retrieval ranks (``mmzoo.eval.retrieval``) and batched
embeddings (``mmzoo.eval.embed``)."""

from .tasks import EVAL_TASKS, EvaluationError, EvaluationTask, TaskResult, list_tasks, run_evaluation

__all__ = ["EVAL_TASKS", "EvaluationError", "EvaluationTask", "TaskResult", "list_tasks", "run_evaluation"]
