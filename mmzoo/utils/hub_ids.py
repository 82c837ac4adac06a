"""What a Hub repo id to publish to may look like (checked before any request)."""

from __future__ import annotations

import re

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
REPO_ID_RE = re.compile(rf"^{_NAME}/{_NAME}$")
MAX_REPO_ID = 96


def repo_id_problem(repo_id: object) -> str | None:
    """``None`` for ``namespace/name``, else a message saying what is wrong and the fix."""
    if isinstance(repo_id, str) and REPO_ID_RE.match(repo_id) and ".." not in repo_id and len(repo_id) <= MAX_REPO_ID:
        return None
    shown = repr(repo_id)[:100]
    why = "has no namespace" if isinstance(repo_id, str) and "/" not in repo_id else "is not a Hub repo id"
    return (f"{shown} {why}; use NAMESPACE/NAME (your user or org, one slash, then letters, digits, '-', '_' or "
            "'.', no '..'), e.g. my-user/my-model")
