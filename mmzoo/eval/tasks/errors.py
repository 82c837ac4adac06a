"""The error raised by evaluation tasks."""

from __future__ import annotations

from ...errors import MmzooError


class EvaluationError(MmzooError, ValueError):
    """An evaluation task cannot run: wrong parameters, missing columns, a model without the needed head."""
