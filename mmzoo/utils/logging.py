"""Library logging: a root logger ``mmzoo`` at WARNING, adjustable with ``MMZOO_VERBOSITY``."""

from __future__ import annotations

import logging
import os

_ROOT = "mmzoo"
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _configure_root() -> logging.Logger:
    root = logging.getLogger(_ROOT)
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[mmzoo] %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(_LEVELS.get(os.environ.get("MMZOO_VERBOSITY", "warning").lower(), logging.WARNING))
        root.propagate = False
    return root


def get_logger(name: str) -> logging.Logger:
    _configure_root()
    return logging.getLogger(name if name.startswith(_ROOT) else f"{_ROOT}.{name}")


def set_verbosity(level: str | int) -> None:
    _configure_root().setLevel(_LEVELS.get(level, level) if isinstance(level, str) else level)


def progress_bars_disabled() -> bool:
    flags = (os.environ.get("MMZOO_DISABLE_PROGRESS_BARS"), os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS"))
    return any(f and f.lower() in {"1", "true", "yes"} for f in flags)
