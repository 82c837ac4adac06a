"""Secrets and huge values never reach an error message: HF-token-looking strings are masked, values of
keys named like ``token`` / ``password`` / ``secret`` are replaced, and long values are cut."""

from __future__ import annotations

import re
from typing import Any

TOKEN_RE = re.compile(r"\bhf_[A-Za-z0-9]{8,}")
SECRET_KEY_RE = re.compile(r"(token|password|passwd|secret|api[_-]?key|credential|auth)", re.IGNORECASE)
MAX_VALUE_CHARS = 200
MAX_MESSAGE_LINE = 1000
MAX_MESSAGE_LINES = 60


def is_secret_key(key: Any) -> bool:
    return isinstance(key, str) and SECRET_KEY_RE.search(key) is not None


def redact_text(text: str) -> str:
    """``text`` with every HF-token-looking substring replaced by ``hf_***``."""
    return TOKEN_RE.sub("hf_***", text)


def show_value(value: Any, key: Any = None, limit: int = MAX_VALUE_CHARS) -> str:
    """``repr(value)`` for a message: ``'***'`` under a secret-looking key, tokens masked, at most ``limit``
    characters (the rest summarised)."""
    if is_secret_key(key) and value is not None:
        return "'***' (redacted)"
    text = _bounded_repr(value, limit + 1)
    text = redact_text(text)
    if len(text) > limit:
        return f"{text[:limit]}... (truncated)"
    return text


def bound_message(text: str) -> str:
    """A whole error message, tokens masked and bounded in line length and line count."""
    lines = redact_text(text).splitlines() or [""]
    lines = [line if len(line) <= MAX_MESSAGE_LINE else line[:MAX_MESSAGE_LINE] + "... (truncated)" for line in lines]
    if len(lines) > MAX_MESSAGE_LINES:
        lines = [*lines[:MAX_MESSAGE_LINES], f"... ({len(lines) - MAX_MESSAGE_LINES} more lines)"]
    return "\n".join(lines)


def _bounded_repr(value: Any, limit: int) -> str:
    """``repr`` that stops early on big containers (an aliased YAML structure can be huge)."""
    if isinstance(value, str):
        return repr(value[:limit] + ("\u2026" if len(value) > limit else ""))
    if isinstance(value, dict):
        parts, size = [], 2
        for k, v in value.items():
            part = f"{_bounded_repr(k, limit)}: {'***' if is_secret_key(k) else _bounded_repr(v, limit)}"
            parts.append(part)
            size += len(part) + 2
            if size > limit:
                parts.append("...")
                break
        return "{" + ", ".join(parts) + "}"
    if isinstance(value, (list, tuple)):
        parts, size = [], 2
        for v in value:
            part = _bounded_repr(v, limit)
            parts.append(part)
            size += len(part) + 2
            if size > limit:
                parts.append("...")
                break
        return "[" + ", ".join(parts) + "]"
    return repr(value)[: limit + 1]
