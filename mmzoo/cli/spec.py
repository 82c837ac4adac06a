"""`mmzoo validate | build | zoo | schema`: work with specs and presets."""

from __future__ import annotations

import json


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("validate", help="validate a spec file (or preset) and print it with defaults")
    p.add_argument("spec", help="spec YAML/JSON path or preset name")
    p.set_defaults(func=_validate, needs_models=False)

    p = subparsers.add_parser("build", help="build a spec or preset and save config, weights and processor")
    p.add_argument("spec", help="spec YAML/JSON path or preset name")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=_build)

    p = subparsers.add_parser("zoo", help="the preset zoo")
    zoo = p.add_subparsers(dest="zoo_command", required=True)
    z = zoo.add_parser("list", help="list presets (or built-in datasets, tokenizers, evaluation tasks)")
    z.add_argument("pattern", nargs="?", default="*")
    what = z.add_mutually_exclusive_group()
    for flag, text in (("datasets", "built-in datasets and their params"), ("tokenizers", "tokenizer names"),
                       ("tasks", "evaluation tasks and their parameters")):
        what.add_argument(f"--{flag}", dest="section", action="store_const", const=flag, help=f"show {text}")
    z.set_defaults(func=_zoo_list, needs_models=False, section=None)

    p = subparsers.add_parser("docs", help="write the user reference (presets, datasets, tokenizers, tasks) "
                                           "generated from the code")
    p.add_argument("--out", help="file to write (e.g. docs/reference.md); default: print it")
    p.set_defaults(func=_docs, needs_models=False)

    p = subparsers.add_parser("schema", help="print the JSON Schema of model specs (or recipes)")
    p.add_argument("kind", nargs="?", choices=["model", "recipe"], default="model")
    p.set_defaults(func=_schema, needs_models=False)


def _validate(args) -> int:
    from .._spec_io import load_spec

    print(load_spec(args.spec).to_yaml(), end="")
    return 0


def _build(args) -> int:
    from ..builder import build_model, build_processor, save_pretrained

    out = save_pretrained(build_model(args.spec), build_processor(args.spec), args.out)
    print(f"saved model and processor to {out}")
    return 0


def _zoo_list(args) -> int:
    if args.section:
        from .reference import SECTIONS

        print(SECTIONS[args.section](), end="")
        return 0
    from .._spec_io import load_spec
    from ..presets import list_presets

    for name in list_presets(args.pattern):
        spec = load_spec(name)
        print(f"{name:24s} {spec.fusion.type:16s} {','.join(o.type for o in spec.objectives):28s} {spec.description}")
    return 0


def _docs(args) -> int:
    from pathlib import Path

    from .reference import reference

    text = reference()
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0


def _schema(args) -> int:
    if args.kind == "model":
        from ..specs import ModelSpec

        schema = ModelSpec.model_json_schema()
    else:
        from ..recipe import RecipeSpec

        schema = RecipeSpec.model_json_schema()
    print(json.dumps(schema, indent=2))
    return 0
