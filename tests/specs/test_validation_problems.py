"""Every pydantic error of mmzoo is flattened by one owner (``specs.base.validation_problems``): dotted key,
message with pydantic's wording replaced, the offending value (redacted) — in spec errors and in the one-line
errors of builtin params, evaluation tasks and ``--data``."""

from __future__ import annotations

import pytest

from mmzoo.data.builtin import builtin_params
from mmzoo.data.errors import DataError
from mmzoo.eval.tasks import EvaluationError
from mmzoo.recipe.schema import EvaluationTaskSpec


def test_builtin_params():
    with pytest.raises(DataError, match=r"nsamples: unknown key; remove it or check its spelling \(got 3\)\. "
                                        r"Accepted params"):
        builtin_params("shapes", {"nsamples": 3})


def test_evaluation_task_params():
    from mmzoo.eval.tasks import EVAL_TASKS
    from mmzoo.eval.tasks.base import _task_params

    spec = EvaluationTaskSpec.model_validate({"task": "retrieval", "recal_at": [1]})
    with pytest.raises(EvaluationError, match=r"recal_at: unknown key; remove it or check its spelling "
                                              r"\(got \[1\]\)"):
        _task_params(EVAL_TASKS.get("retrieval")(), spec, 0)


def test_cli_data_source():
    from mmzoo.cli.evaluate import parse_data

    with pytest.raises(EvaluationError, match=r"--data .*: files: .*\(got 3\)"):
        parse_data("{source: json, files: 3}")
