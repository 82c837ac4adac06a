"""Escaping of user strings (descriptions, dataset names, recipe values) for the Markdown/HTML of a card.

The card's YAML front matter is written by ``ModelCardData.to_yaml`` (a YAML dumper, which quotes what needs
quoting); these helpers cover the Markdown body:

* :func:`text`: one line of prose: HTML escaped (no ``<script>``), newlines folded into spaces (no injected
  ``##`` headings or ``---`` rules), Markdown emphasis / link characters escaped at line start.
* :func:`cell`: :func:`text` plus ``|`` escaped, for table cells.
* :func:`code_span`: an inline code span whose backtick fence is longer than any backtick run inside.
* :func:`fence`: a fenced block whose fence is longer than any backtick line inside (a recipe value with
  a line of three backticks cannot close it and swallow the sections after it).
"""

from __future__ import annotations

import html
import re
from typing import Any

_LINE_START = re.compile(r"^(?:[#*+\-=]|(\d+)[.)])(?=\s|$)")


def _inline(value: Any) -> str:
    return "" if value is None else html.escape(" ".join(str(value).split()), quote=False)


def text(value: Any) -> str:
    """One line of Markdown prose showing ``value`` literally (safe at the start of a line)."""
    def escape(match: re.Match) -> str:  # "\\#", "\\-"; "1\\." for list numbers (a backslash before a digit shows)
        marker = match.group(0)
        return marker[:-1] + "\\" + marker[-1] if match.group(1) else "\\" + marker

    return _LINE_START.sub(escape, _inline(value))


def cell(value: Any) -> str:
    """A table cell showing ``value`` literally (``|`` escaped, one line)."""
    return _inline(value).replace("|", "\\|")


def code_cell(value: Any) -> str:
    """Inline code in a table cell (the table's ``|`` escaped; code spans show ``<`` literally)."""
    return code_span(value).replace("|", "\\|")


def code_span(value: Any) -> str:
    """Inline code showing ``value`` literally (one line)."""
    folded = " ".join(str(value).split())
    run = max((len(m) for m in re.findall(r"`+", folded)), default=0)
    ticks = "`" * (run + 1)
    pad = " " if folded.startswith("`") or folded.endswith("`") else ""
    return f"{ticks}{pad}{folded}{pad}{ticks}"


def fence(body: str, info: str = "") -> str:
    """A fenced code block holding ``body`` literally."""
    run = max((len(m) for m in re.findall(r"^[ \t]*(`{3,}|~{3,})", body, flags=re.MULTILINE)), default=0)
    ticks = "`" * max(3, run + 1)
    return f"{ticks}{info}\n{body.rstrip(chr(10))}\n{ticks}"
