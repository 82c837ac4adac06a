"""Fault-injection helpers: tiny runs, a forked child that dies at a chosen point, the mmzoo log."""

from __future__ import annotations

import logging
import os
import traceback
from pathlib import Path

import pytest

from tests.common import private_mmzoo_cache

REPO = Path(__file__).parents[2]
TINY = REPO / "recipes" / "tiny"
# 16 samples / batch 4: 4 steps per epoch; checkpoints at 2 and 4, only the newest complete one kept
FAST = ["data.eval=null", "evaluation=[]", "training.max_steps=4", "training.save_steps=2",
        "training.save_total_limit=1", "data.train.params.num_samples=16", "training.per_device_train_batch_size=4",
        "training.logging_steps=1", "training.precision=fp32"]  # auto may pick bf16 on speed: not reproducible


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    with private_mmzoo_cache(tmp_path_factory.mktemp("mmzoo_cache")):
        yield


def tiny(out: Path, *overrides: str, name: str = "clip-coco"):
    """The tiny clip recipe, FAST settings, run folder ``out``."""
    from mmzoo.recipe import load_recipe

    return load_recipe(TINY / f"{name}.yaml", [*FAST, f"training.output_dir={out}", *overrides])


def in_child(fn, env: dict[str, str] | None = None) -> int:
    """Run ``fn()`` in a forked child (mmzoo already imported: fast); ``-signal`` if it was killed, else its
    exit code (3 when it raised)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            os.environ.update(env or {})
            fn()
        except BaseException:  # noqa: BLE001
            traceback.print_exc()
            code = 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def mmzoo_log():
    """Messages logged by mmzoo during the test (its logger does not propagate, so caplog misses them)."""
    handler = _Collect()
    logger = logging.getLogger("mmzoo")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(Path(run) / "model.safetensors")


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all((wa[k] - wb[k]).abs().max() <= 1e-6 for k in wa)
