"""User reference generated from the code: built-in datasets and their ``params``, tokenizers, evaluation tasks
and their parameters, presets. Shown by ``mmzoo zoo list --datasets / --tokenizers / --tasks`` and
``mmzoo eval --list-tasks``, and written to ``docs/reference.md`` by ``mmzoo docs`` (a test fails when that
file differs from what the code generates, so it cannot drift).
"""

from __future__ import annotations

import inspect
import json
from typing import Any, get_args

from pydantic import BaseModel
from pydantic.fields import FieldInfo

REFERENCE_FILE = "docs/reference.md"
_CONSTRAINTS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "min_length": "min length", "max_length": "max length"}


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if not get_args(annotation) else None
    text = text or str(annotation).replace("typing.", "")
    return text.replace("NoneType", "None")


def _constraints(field: FieldInfo) -> str:
    parts = []
    for meta in field.metadata:
        for attr, symbol in _CONSTRAINTS.items():
            value = getattr(meta, attr, None)
            if value is not None:
                parts.append(f"{symbol} {value}")
    return ", ".join(parts)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    return json.dumps(value, default=str)


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def params_table(model: type[BaseModel], skip: tuple[str, ...] = ()) -> list[str]:
    """A Markdown table of a pydantic params model: name, type, default, constraints, description."""
    rows = ["| Param | Type | Default | Constraints | Description |", "|---|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        rows.append(f"| `{name}` | `{_cell(_type_name(field.annotation))}` | `{_cell(_default(field))}` | "
                    f"{_cell(_constraints(field)) or '-'} | {_cell(field.description or '-')} |")
    return rows


def _first_paragraph(doc: str | None) -> str:
    return " ".join((inspect.cleandoc(doc or "").split("\n\n") or [""])[0].split())


# -- sections ----------------------------------------------------------------------------------------------------
def datasets_reference() -> str:
    from ..data.builtin import BUILTIN_DATASETS

    lines = ["## Built-in datasets", "",
             "Generated offline (never downloaded) and cached under `MMZOO_CACHE`. Use them in a recipe as "
             "`{source: builtin, name: NAME, split: SPLIT, params: {...}}` or with `mmzoo eval --data "
             "builtin:NAME[:SPLIT]`.", ""]
    for name in BUILTIN_DATASETS.list():
        entry = BUILTIN_DATASETS.get(name)
        lines += [f"### `{name}`", "", _first_paragraph(entry.description) or "-", "", "`params`:", "",
                  *params_table(entry.params), ""]
    return "\n".join(lines)


def tokenizers_reference() -> str:
    from .._sources import builtin_vocab
    from ..specs.encoders import BUILTIN_TOKENIZER

    return "\n".join([
        "## Tokenizers", "",
        "A text tower's `tokenizer:` (default: the tower's `model`, else the built-in one) is one of:", "",
        "| Tokenizer | What it is |", "|---|---|",
        f"| `{BUILTIN_TOKENIZER}` | mmzoo's built-in lower-case WordPiece tokenizer (BERT special tokens, "
        f"{len(builtin_vocab())} tokens: letters, digits, punctuation and the words of the built-in datasets); "
        "offline, for tiny towers trained from scratch. Give the text tower `vocab_size` ≥ that size. |",
        "| a Hub id (`org/name`) | that repo's tokenizer (`AutoTokenizer.from_pretrained`) |",
        "| a local folder | a saved tokenizer (`tokenizer.json` / `vocab.txt`) |", ""])


def tasks_reference() -> str:
    from ..eval.tasks import EVAL_TASKS
    from ..eval.tasks.base import TaskParams

    lines = ["## Evaluation tasks", "",
             "A recipe's `evaluation:` entries are `{task: NAME, ...params}`; `mmzoo eval` takes `--task NAME` "
             "and `--set KEY=VALUE` (or `TASK.KEY=VALUE`). Parameters every task accepts:", "",
             *params_table(TaskParams), ""]
    for name in EVAL_TASKS.list():
        cls = EVAL_TASKS.get(name)
        module = inspect.getmodule(cls)
        columns = ", ".join(f"`{c}`" for c in getattr(cls, "columns", ()))
        lines += [f"### `{name}`", "", _first_paragraph(module.__doc__ if module else cls.__doc__) or "-", ""]
        if columns:
            lines += [f"Data columns: {columns}.", ""]
        lines += ["Parameters:", "", *params_table(cls.Params, skip=tuple(TaskParams.model_fields)), ""]
    return "\n".join(lines)


def presets_reference() -> str:
    from .._spec_io import load_spec
    from ..presets import list_presets

    lines = ["## Presets", "", "| Preset | Fusion | Objectives | Description |", "|---|---|---|---|"]
    for name in list_presets("*"):
        spec = load_spec(name)
        lines.append(f"| `{name}` | `{spec.fusion.type}` | {', '.join(o.type for o in spec.objectives)} | "
                     f"{_cell(spec.description or '-')} |")
    return "\n".join(lines + [""])


SECTIONS = {"presets": presets_reference, "datasets": datasets_reference, "tokenizers": tokenizers_reference,
            "tasks": tasks_reference}


def reference() -> str:
    """The whole ``docs/reference.md``."""
    head = ["# mmzoo reference", "",
            "<!-- Generated by `mmzoo docs --out docs/reference.md` from the code; do not edit by hand. -->", ""]
    return "\n".join(head) + "\n".join(SECTIONS[name]() for name in SECTIONS)
