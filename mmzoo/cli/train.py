"""`mmzoo train RECIPE [--set key.path=value ...] [--resume [CHECKPOINT]] [--dry-run]`."""

from __future__ import annotations

import os


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a recipe: build, train, evaluate and save (and push) a model",
        description="Train the model of a recipe YAML. The run folder gets the model, processor, resolved "
                    "recipe, training_log.jsonl, eval_results.json and resumable checkpoint-* folders. "
                    "Works under `torchrun --nproc_per_node N` and `accelerate launch`.",
    )
    p.add_argument("recipe", help="recipe YAML (see recipes/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a recipe value (YAML-parsed), e.g. --set training.max_steps=100; repeatable")
    p.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                   help="continue from the latest checkpoint in the run folder, or from CHECKPOINT")
    p.add_argument("--dry-run", action="store_true",
                   help="print the resolved recipe, parameter counts and FLOPs per sample; do not train")
    p.add_argument("--world-size", type=int, default=None, metavar="N",
                   help="--dry-run: processes the run will use (default WORLD_SIZE, else 1), for the global batch")
    p.set_defaults(func=_train)


def _train(args) -> int:
    from ..recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    if args.dry_run:
        from ..train import dry_run

        print(dry_run(recipe, world_size=args.world_size).render())
        return 0
    from ..train import train

    try:
        result = train(recipe, resume=args.resume)
    finally:
        _close_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        print(_summary(result))
    return 0


def _close_process_group() -> None:
    """Tear the process group down before the interpreter exits (torchrun / accelerate runs): left to interpreter
    shutdown, the backend's threads can be destroyed in any order (torch warns about it; engines have aborted)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _summary(result) -> str:
    from ..train.trainer import flatten_task_metrics

    lines = [f"run folder: {result.run_dir}", f"steps: {result.global_step}"]
    if result.train_loss is not None:
        lines.append(f"train loss (mean over the run): {result.train_loss:.4f}")
    metrics = {**(result.eval_results.get("trainer_metrics") or {}), **flatten_task_metrics(result.eval_results)}
    for key, value in sorted(metrics.items()):
        if key.startswith("eval_") and isinstance(value, (int, float)):
            lines.append(f"{key}: {value:.4f}")
    for role, report in result.skipped.items():
        lines.append(f"data.{role}: skipped {report['skipped']} bad sample(s) (on_bad_sample: skip)")
    return "\n".join(lines)
