"""`torchrun --nproc_per_node 2` (gloo, CPU) on a tiny recipe: the contrastive loss gathers negatives across
ranks, so the first step's loss and gradient norm equal a single-process run on the same global batch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from mmzoo.train import train

from .conftest import TINY, read_log

NO_DROPOUT = [  # dropout masks would differ between one batch of 8 and two batches of 4
    "model.overrides.encoders.text.config.hidden_dropout_prob=0.0",
    "model.overrides.encoders.text.config.attention_probs_dropout_prob=0.0",
    "data.eval=null", "evaluation=[]", "training.max_steps=2", "training.save_steps=null",
]
EVAL_OFF = ("data.eval=null", "evaluation=[]")


@pytest.mark.parametrize("grad_cache", [None, 2], ids=["plain", "grad_cache"])
def test_two_processes_match_one_process_on_the_same_global_batch(tmp_path, tiny_recipe, grad_cache):
    """With grad_cache, each rank also embeds its 4 pairs in chunks of 2 and averages gradients by hand."""
    ddp_dir = tmp_path / "ddp"
    # plain: with the recipe's retrieval evaluation, which every rank runs on its shard (gathered results)
    settings = [s for s in NO_DROPOUT if s not in EVAL_OFF] if grad_cache is None else NO_DROPOUT
    sets = [f"--set={s}" for s in [*settings, f"training.output_dir={ddp_dir}",
                                   "training.per_device_train_batch_size=4",
                                   f"training.grad_cache_chunk_size={grad_cache or 'null'}"]]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "mmzoo.cli", "train", str(TINY / "clip-coco.yaml"), *sets],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run folder:") == 1  # the summary is printed by rank 0 only
    ddp = [e for e in read_log(ddp_dir) if "loss" in e]

    single = train(tiny_recipe(*settings, "training.per_device_train_batch_size=8"), progress=False,
                   output_dir=tmp_path / "single")
    one = [e for e in read_log(single.run_dir) if "loss" in e]

    assert ddp[0]["step"] == one[0]["step"] == 1
    assert ddp[0]["loss"] == pytest.approx(one[0]["loss"], rel=1e-5)
    assert ddp[0]["loss/contrastive"] == pytest.approx(one[0]["loss/contrastive"], rel=1e-5)
    assert ddp[0]["grad_norm"] == pytest.approx(one[0]["grad_norm"], rel=1e-4)  # DDP averaging matches
    assert ddp[0]["epoch"] == one[0]["epoch"]  # same global batch, same number of steps per epoch
    assert ddp[1]["loss"] == pytest.approx(one[1]["loss"], rel=1e-4)
    if grad_cache is None:
        results = [json.loads((d / "eval_results.json").read_text()) for d in (ddp_dir, single.run_dir)]
        metrics = [{r["task"]: r["metrics"] for r in res["results"]} for res in results]
        assert metrics[0].keys() == {"retrieval"}
        assert metrics[0] == metrics[1]


def _torchrun(recipe: str, sets: list[str], *extra: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "mmzoo.cli", "train", str(TINY / recipe), *(f"--set={s}" for s in sets), *extra],
        env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_two_process_resume_reproduces_the_uninterrupted_curve(tmp_path):
    """4 steps per epoch (32 samples, 2 x 4 per step): the checkpoint at step 5 is inside epoch 1, whose order
    must not fall back to epoch 0's after the resume (accelerate's batch-skipping wrapper). The resumed run
    starts from a copy of that checkpoint: the state a run killed right after saving it leaves."""
    settings = ["data.eval=null", "evaluation=[]", "training.max_steps=7", "training.save_steps=5",
                "training.per_device_train_batch_size=4"]
    full = tmp_path / "full"
    _torchrun("clip-coco.yaml", [*settings, f"training.output_dir={full}"])
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(full / "checkpoint-5", resumed / "checkpoint-5")
    _torchrun("clip-coco.yaml", [*settings, f"training.output_dir={resumed}"], "--resume")
    expected = {e["step"]: e for e in read_log(full) if "loss" in e}
    got = {e["step"]: e for e in read_log(resumed) if "loss" in e}
    for step in (6, 7):
        assert got[step]["loss"] == pytest.approx(expected[step]["loss"], rel=1e-5), step
        assert got[step]["grad_norm"] == pytest.approx(expected[step]["grad_norm"], rel=1e-4), step


@pytest.mark.slow
def test_ddp_with_gradient_checkpointing_trains(tmp_path):
    """Towers without unused poolers: DDP (find_unused_parameters off under checkpointing) gets a gradient for
    every parameter at every step, and the losses are those of the run without checkpointing."""
    settings = [*NO_DROPOUT, "training.max_steps=3", "training.per_device_train_batch_size=4"]
    plain, checkpointed = tmp_path / "plain", tmp_path / "checkpointed"
    _torchrun("clip-coco.yaml", [*settings, f"training.output_dir={plain}"])
    _torchrun("clip-coco.yaml", [*settings, "training.gradient_checkpointing=true",
                                 f"training.output_dir={checkpointed}"])
    expected = [e["loss"] for e in read_log(plain) if "loss" in e]
    got = [e["loss"] for e in read_log(checkpointed) if "loss" in e]
    assert len(got) == 3 and got == pytest.approx(expected, rel=1e-5)
