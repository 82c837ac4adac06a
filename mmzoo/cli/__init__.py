"""The `mmzoo` command line. Each subcommand lives in its own module with ``add_parser(subparsers)``;
the parser it adds sets ``func`` (args -> exit code) and, for commands that need no model, ``needs_models=False``:
the command then starts without importing torch or transformers (see ``mmzoo._cli_process``)."""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import MmzooError

# modules that provide subcommands, in help order
COMMAND_MODULES = ("spec", "train", "evaluate", "hub")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmzoo", description="Declarative multimodal model zoo")
    from ..version import __version__

    parser.add_argument("--version", action="version", version=f"mmzoo {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"{__name__}.{name}":
                continue
            raise
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "needs_models", True):  # light commands (validate, schema, zoo) skip torch/transformers
            import mmzoo

            mmzoo.load()
        return int(args.func(args) or 0)
    except MmzooError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
