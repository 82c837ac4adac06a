"""Errors raised by the data layer."""

from __future__ import annotations

from ..errors import MmzooError


class DataError(MmzooError, ValueError):
    """A dataset cannot be loaded or one of its samples is bad.

    The message names the file / row / column concerned and how to fix it.
    """
