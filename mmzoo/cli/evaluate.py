"""`mmzoo eval MODEL_DIR_OR_REPO (--recipe R | --task T --data D) [--out DIR] [--set key=value ...]`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EXAMPLES = """\
examples:
  mmzoo eval runs/quickstart --recipe recipes/quickstart.yaml
  mmzoo eval runs/quickstart --task retrieval --data builtin:shapes:test --set max_samples=500
  mmzoo eval runs/quickstart --task zero_shot_classification --data builtin:digits \\
      --set 'templates=["a handwritten digit {}"]'
  mmzoo eval me/my-model --task retrieval --data '{source: hf, dataset: nlphuji/flickr30k, split: test}' --out ev/

--data: builtin:NAME[:SPLIT] (split defaults to test), or a data source as a YAML mapping (the syntax of a
recipe's data.eval). --set KEY=VALUE (YAML value): a bare key is a parameter of every task (max_samples,
batch_size...), TASK.KEY one task's (retrieval.chunk_size=256); with --recipe a dotted key of a recipe section
overrides the recipe as in `mmzoo train` (data.eval.params.num_samples=200).
"""

RECIPE_SECTIONS = ("name", "description", "base_dir", "model", "data", "training", "evaluation", "hub")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="evaluate a saved model (retrieval, zero-shot, VQA, captioning, ITM) into eval_results.json",
        description="Evaluate a saved model folder or Hub repo on the tasks of a recipe's evaluation: section "
                    "(and its data.eval) or on --task/--data. Writes eval_results.json: every metric, the "
                    "protocol (dataset, split, revision, templates, k, decoding) and the mmzoo version.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", nargs="?", help="saved model folder (mmzoo train's run folder) or Hub repo id")
    p.add_argument("--list-tasks", action="store_true", help="list the evaluation tasks and their parameters")
    p.add_argument("--recipe", help="recipe YAML: its evaluation: tasks and data.eval")
    p.add_argument("--task", dest="tasks", action="append", default=[], metavar="TASK",
                   help="task to run (retrieval, zero_shot_classification, vqa, captioning, itm); repeatable; "
                        "with --recipe: only these tasks")
    p.add_argument("--data", help="eval data: builtin:NAME[:SPLIT] or a YAML source mapping (overrides data.eval)")
    p.add_argument("--out", help="folder for eval_results.json (default: the model folder)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="task parameter (or TASK.KEY, or a dotted recipe key with --recipe); repeatable")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.set_defaults(func=_evaluate)


def _evaluate(args) -> int:
    from ..eval import run_evaluation
    from ..eval.tasks import RESULTS_FILE, EvaluationError

    if args.list_tasks:
        from .reference import tasks_reference

        print(tasks_reference(), end="")
        return 0
    if args.model is None:
        raise EvaluationError("mmzoo eval: pass the MODEL folder or Hub repo id to evaluate (or --list-tasks)")

    task_names = _known_tasks()
    shared, scoped, recipe_overrides = split_overrides(args.overrides, task_names, bool(args.recipe))
    tasks, source, base_dir = _tasks_and_data(args, recipe_overrides)
    tasks = [_with_params(t, shared, scoped) for t in tasks]
    unknown_scopes = set(scoped) - {t.task for t in tasks}
    if unknown_scopes:
        raise EvaluationError(f"--set {sorted(unknown_scopes)[0]}.*: that task is not run here (tasks: "
                              f"{[t.task for t in tasks]})")
    out = _output_dir(args)
    model, processor = load_model(args.model, {t.task for t in tasks}, args.device)
    results = run_evaluation(model, processor, tasks, None, out, eval_source=source, base_dir=base_dir)
    print(render_summary(results))
    print(f"wrote {Path(out) / RESULTS_FILE}")
    return 0


def _known_tasks() -> tuple[str, ...]:
    from typing import get_args

    from ..recipe.schema import EvaluationTaskSpec

    return get_args(EvaluationTaskSpec.model_fields["task"].annotation)


def split_overrides(items: list[str], task_names, with_recipe: bool):
    """``--set`` items -> (params of every task, {task: params}, recipe override strings)."""
    from ..eval.tasks import EvaluationError
    from ..recipe import parse_assignment

    shared: dict[str, Any] = {}
    scoped: dict[str, dict[str, Any]] = {}
    recipe: list[str] = []
    for item in items:
        key, value = parse_assignment(item)
        head, _, rest = key.partition(".")
        if not rest:
            shared[key] = value
        elif head in task_names and "." not in rest:
            scoped.setdefault(head, {})[rest] = value
        elif with_recipe and head in RECIPE_SECTIONS:
            recipe.append(item)
        else:
            raise EvaluationError(
                f"--set {item!r}: {key!r} is neither a task parameter (KEY or TASK.KEY with TASK in "
                f"{list(task_names)})" + (" nor a recipe key" if with_recipe else "; recipe keys need --recipe")
            )
    return shared, scoped, recipe


def _tasks_and_data(args, recipe_overrides: list[str]):
    """``(task specs, eval source spec or None, base_dir)`` from --recipe / --task / --data."""
    from ..eval.tasks import EvaluationError
    from ..recipe import load_recipe
    from ..recipe.schema import EvaluationTaskSpec

    source = parse_data(args.data) if args.data else None
    if args.recipe:
        recipe = load_recipe(args.recipe, recipe_overrides)
        tasks = list(recipe.evaluation)
        if args.tasks:
            tasks = [t for t in tasks if t.task in args.tasks] + [
                EvaluationTaskSpec(task=name) for name in dict.fromkeys(args.tasks)
                if name not in {t.task for t in tasks}
            ]
        if not tasks:
            raise EvaluationError(
                f"{args.recipe}: the recipe has no evaluation: tasks; add e.g. `evaluation: [{{task: retrieval}}]` "
                "or pass --task retrieval"
            )
        return tasks, source or recipe.data.eval, recipe.base_dir
    if not args.tasks:
        raise EvaluationError("mmzoo eval: pass --recipe RECIPE, or --task TASK with --data (e.g. --task retrieval "
                              "--data builtin:shapes:test)")
    if source is None:
        raise EvaluationError("mmzoo eval: --task needs --data (e.g. --data builtin:shapes:test) or a --recipe "
                              "with data.eval")
    tasks = []
    for name in dict.fromkeys(args.tasks):
        tasks.append(_validated_task({"task": name}))
    return tasks, source, None


def parse_data(text: str):
    """``builtin:NAME[:SPLIT]`` (split default ``test``) or a YAML mapping of a data source -> source spec."""
    import yaml
    from pydantic import TypeAdapter, ValidationError

    from ..data import SourceSpec
    from ..eval.tasks import EvaluationError
    from ..specs.base import validation_problems

    if text.startswith("builtin:"):
        name, _, split = text.removeprefix("builtin:").partition(":")
        data: Any = {"source": "builtin", "name": name, "split": split or "test"}
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise EvaluationError(f"--data {text!r}: not valid YAML ({err})") from None
        if not isinstance(data, dict):
            raise EvaluationError(f"--data {text!r}: expected builtin:NAME[:SPLIT] or a YAML mapping such as "
                                  "'{source: json, files: data/val.jsonl, split: validation}'")
    try:
        return TypeAdapter(SourceSpec).validate_python(data)
    except ValidationError as err:
        problems = "; ".join(validation_problems(err, data, whole="(source)", schema_hint=False))
        raise EvaluationError(f"--data {text!r}: {problems}") from None


def _validated_task(data: dict[str, Any]):
    from pydantic import ValidationError

    from ..eval.tasks import EvaluationError
    from ..recipe.schema import EvaluationTaskSpec
    from ..specs.base import validation_problems

    try:
        return EvaluationTaskSpec.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(validation_problems(err, data, whole="(task)", schema_hint=False))
        raise EvaluationError(f"task {data.get('task')!r}: {problems}") from None


def _with_params(spec, shared: dict[str, Any], scoped: dict[str, dict[str, Any]]):
    if not shared and spec.task not in scoped:
        return spec
    return _validated_task({**spec.model_dump(), **shared, **scoped.get(spec.task, {})})


def _output_dir(args) -> str:
    from ..eval.tasks import EvaluationError

    if args.out:
        return args.out
    if Path(args.model).is_dir():
        return args.model
    raise EvaluationError(f"{args.model} is not a local folder (a Hub repo?); pass --out DIR for eval_results.json")


def load_model(source: str, tasks: set[str], device: str | None = None):
    """``(model, processor)`` from a saved folder or Hub repo (``AutoModel``; the VQA head class when a ``vqa``
    task runs and the config has an answer vocabulary), in eval mode on ``device``."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForVisualQuestionAnswering, AutoProcessor

    import mmzoo  # noqa: F401  (registers the mmzoo Auto classes)

    from ..eval.tasks import EvaluationError

    try:
        config = AutoConfig.from_pretrained(source)
        auto = AutoModelForVisualQuestionAnswering if "vqa" in tasks and getattr(config, "answer_vocab", None) \
            else AutoModel
        model = auto.from_pretrained(source, config=config)
        processor = AutoProcessor.from_pretrained(source)
    except (OSError, ValueError) as err:
        raise EvaluationError(
            f"cannot load a model and processor from {source!r}: {err}. Pass a folder written by mmzoo train / "
            "save_pretrained (config.json, model.safetensors, processor files) or a Hub repo id"
        ) from None
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval(), processor


def render_summary(results: dict[str, Any]) -> str:
    lines = []
    for result in results.get("results", []):
        dataset = result.get("dataset") or {}
        lines.append(f"{result['task']} on {dataset.get('name')} [{dataset.get('split')}]")
        for key, value in result.get("metrics", {}).items():
            lines.append(f"  {key}: {value:.4f}" if isinstance(value, float) else f"  {key}: {value}")
    return "\n".join(lines)
