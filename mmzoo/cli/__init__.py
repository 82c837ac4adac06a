"""The `mmzoo` command line. Each subcommand lives in its own module with ``add_parser(subparsers)``;
the parser it adds sets ``func`` (args -> exit code) and, for commands that need no model, ``needs_models=False``:
the command then starts without importing torch or transformers (see ``mmzoo._cli_process``)."""

from __future__ import annotations

import argparse
import importlib
import os
import shlex
import sys

from ..errors import MmzooError

# modules that provide subcommands, in help order
COMMAND_MODULES = ("spec", "train", "evaluate", "hub")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmzoo", description="Declarative multimodal model zoo")
    from ..version import __version__

    parser.add_argument("--version", action="version", version=f"mmzoo {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of unexpected errors (also MMZOO_DEBUG=1)")
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
    """Run one command. Errors end as one short message on stderr: ``MmzooError`` (exit 2) with its own
    text, Ctrl-C (exit 130) with how to resume, anything else (exit 1) with the hint to rerun with --debug.
    Messages are redacted (no tokens) and bounded."""
    from ..utils.redact import bound_message

    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False) or os.environ.get("MMZOO_DEBUG", "") not in ("", "0")
    try:
        if getattr(args, "needs_models", True):  # light commands (validate, schema, zoo) skip torch/transformers
            import mmzoo

            mmzoo.load()
        return int(args.func(args) or 0)
    except MmzooError as err:
        if debug:
            raise
        print(f"error: {bound_message(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"interrupted; {_resume_hint(args)}", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the one place that turns crashes into a message
        if debug:
            raise
        first = (str(err).splitlines() or [""])[0]
        print(f"error: unexpected {type(err).__name__}: {bound_message(first)}\n"
              f"  rerun with --debug (mmzoo --debug {args.command} ...) for the traceback", file=sys.stderr)
        return 1


def _resume_hint(args) -> str:
    if getattr(args, "command", None) != "train" or getattr(args, "dry_run", False):
        return "nothing was changed"
    sets = " ".join(shlex.quote(f"--set={s}") for s in getattr(args, "overrides", []))
    command = " ".join(p for p in ("mmzoo train", shlex.quote(str(args.recipe)), sets, "--resume") if p)
    return f"resume with: {command}"


if __name__ == "__main__":
    raise SystemExit(main())
