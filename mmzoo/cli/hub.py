"""`mmzoo push | card`: publish a run directory to the Hub, or render its model card locally."""

from __future__ import annotations

from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("push", help="upload a run directory (weights, processor, recipe, metrics, card) "
                                           "to the Hub in one commit")
    p.add_argument("run_dir", help="folder written by `mmzoo train` or save_pretrained")
    p.add_argument("--repo-id", required=True, help="Hub repo id, ORG/NAME (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its "
                                                          "visibility)")
    p.add_argument("--revision", metavar="BRANCH", help="branch to commit to, created from main if missing")
    p.add_argument("--commit-message", help="default from the run: 'Upload <run> (<model>; <N> steps, <M> "
                                            "samples) with mmzoo <version>'")
    p.add_argument("--overwrite-card", action="store_true", help="replace a README.md that was edited on the Hub")
    p.add_argument("--remote-code", action="store_true",
                   help="also upload mmzoo's modeling code so AutoModel.from_pretrained(repo, "
                        "trust_remote_code=True) works without mmzoo installed")
    p.add_argument("--license", help="Hub license id for the card (default: recipe hub.license or apache-2.0)")
    p.set_defaults(func=_push)

    p = subparsers.add_parser("card", help="render the model card of a run directory")
    p.add_argument("run_dir", help="folder with config.json (+ recipe.yaml, eval_results.json)")
    p.add_argument("--repo-id", help="Hub id used in the card's usage snippets (default: <user>/<spec name>)")
    p.add_argument("--license", help="Hub license id (default: recipe hub.license or apache-2.0)")
    p.add_argument("--out", help="write the card to this file instead of printing it (e.g. README.md)")
    p.add_argument("--remote-code", action="store_true",
                   help="usage snippets for a repo pushed with --remote-code (trust_remote_code=True)")
    p.set_defaults(func=_card)


def _push(args) -> int:
    from ..hub import push_run

    result = push_run(args.run_dir, args.repo_id, private=args.private, revision=args.revision,
                      commit_message=args.commit_message, overwrite_card=args.overwrite_card,
                      remote_code=args.remote_code, license=args.license)
    print(f"pushed {len(result.files)} files to {result.repo_id}@{result.revision}: {result.commit_url}")
    if result.card_kept:
        print("kept the README.md edited on the Hub; pass --overwrite-card to replace it")
    return 0


def _card(args) -> int:
    from ..hub import render_card

    text = str(render_card(args.run_dir, args.repo_id, license=args.license, remote_code=args.remote_code))
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote the model card to {args.out}")
    else:
        print(text, end="")
    return 0
