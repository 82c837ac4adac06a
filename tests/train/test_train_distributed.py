"""`torchrun --nproc_per_node 2` (gloo, CPU) on a tiny recipe: the contrastive loss gathers negatives across
ranks, so the first step's loss and gradient norm equal a single-process run on the same global batch."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from mmzoo.train import train
from mmzoo.train.checkpoints import scan_checkpoints
from mmzoo.utils.files import CHECKPOINT_MARKER

from .conftest import TINY, read_log

NO_DROPOUT = [  # dropout masks would differ between one batch of 8 and two batches of 4
    "model.overrides.encoders.text.config.hidden_dropout_prob=0.0",
    "model.overrides.encoders.text.config.attention_probs_dropout_prob=0.0",
    "data.eval=null", "evaluation=[]", "training.max_steps=2", "training.save_steps=null",
    "training.precision=fp32",  # compared at different per-device batches (auto measures per batch shape)
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
    proc = subprocess.run(_torchrun_command(recipe, sets, *extra), env=_launch_env(), capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _torchrun_command(recipe: str, sets: list[str], *extra: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "mmzoo.cli", "train", str(TINY / recipe), *(f"--set={s}" for s in sets), *extra]


def _launch_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def _kill_group_after_checkpoint(command: list[str], run: Path, log: Path, after: int, timeout: float = 240) -> int:
    """Start ``command`` (torchrun), SIGKILL torchrun and all its descendants (torchrun starts each worker in a
    session of its own, so killing torchrun's process group would leave them running: this is what a node dying
    or a scheduler killing the job's cgroup does) as soon as ``run`` holds a complete checkpoint of step
    ``after`` or later (its marker is written last, atomically); the newest complete checkpoint's step."""
    with log.open("w") as out:
        proc = subprocess.Popen(command, env=_launch_env(), stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while _newest_complete_step(run) < after:
                assert proc.poll() is None, f"the run ended before checkpoint-{after}:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, "no checkpoint within the timeout"
                time.sleep(0.01)
        finally:
            family = [proc.pid, *(p.pid for p in psutil.Process(proc.pid).children(recursive=True))]
            for pid in family:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()
            for pid in family[1:]:  # the workers are gone too (reaped by init once torchrun is dead)
                with contextlib.suppress(psutil.NoSuchProcess):
                    psutil.Process(pid).wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-3000:]
    assert len(family) >= 3, family  # torchrun and two workers
    return _newest_complete_step(run)


def _newest_complete_step(run: Path) -> int:
    complete = scan_checkpoints(run).complete
    return int(complete[-1].name.rpartition("-")[2]) if complete else 0


@pytest.mark.slow
def test_two_process_run_killed_by_sigkill_resumes_on_the_uninterrupted_curve(tmp_path):
    """A real 2-process torchrun job, SIGKILLed (torchrun and both workers) mid-run after a checkpoint, then the same command with --resume: every step's loss and gradient norm equal an
    uninterrupted 2-process run's. 4 steps per epoch (32 samples, 2 x 4 per step), a checkpoint every 3 steps,
    killed once checkpoint-6 (inside epoch 1) or a later one is complete: the resumed epoch's order must not fall
    back to epoch 0's (accelerate's batch-skipping wrapper), and both ranks' RNG states must be restored. 40
    steps leave the kill (the test polls the folder) seconds of margin before the run's end on a loaded CPU."""
    steps = 40
    settings = ["data.eval=null", "evaluation=[]", f"training.max_steps={steps}", "training.save_steps=3",
                "training.per_device_train_batch_size=4"]
    killed = tmp_path / "killed"
    sets = [*settings, f"training.output_dir={killed}"]
    step = _kill_group_after_checkpoint(_torchrun_command("clip-coco.yaml", sets), killed, tmp_path / "killed.log",
                                        after=6)
    assert not (killed / "model.safetensors").exists()  # killed before the end
    marker = json.loads((killed / f"checkpoint-{step}" / CHECKPOINT_MARKER).read_text())
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= marker["files"].keys()  # both ranks' states were written
    resumed = _torchrun("clip-coco.yaml", sets, "--resume")
    assert f"resuming from checkpoint-{step}" in resumed.stdout

    full = tmp_path / "full"
    _torchrun("clip-coco.yaml", [*settings, f"training.output_dir={full}"])
    expected = {e["step"]: e for e in read_log(full) if "loss" in e}
    got = {e["step"]: e for e in read_log(killed) if "loss" in e}
    assert sorted(got) == list(range(1, steps + 1))  # the resumed log continues the checkpoint's history
    for s in range(1, steps + 1):
        assert got[s]["loss"] == pytest.approx(expected[s]["loss"], rel=1e-6, abs=0), s
        assert got[s]["grad_norm"] == pytest.approx(expected[s]["grad_norm"], rel=1e-6, abs=0), s


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


@pytest.mark.slow
def test_fused_vqa_preset_trains_under_ddp_without_the_unused_parameter_scan(tmp_path):
    """The visualbert VQA head under torchrun with find_unused_parameters=False (mmzoo's default): DDP fails at
    step 2 ("Expected to have finished reduction...") if any trainable parameter got no gradient at step 1 — the
    pretraining objectives' heads and the projections, which the VQA loss never reaches, must be frozen."""
    run = tmp_path / "vqa"
    _torchrun("visualbert-vqa-shapes.yaml", ["training.max_steps=3", "training.save_steps=null",
                                             "training.per_device_train_batch_size=8", "training.precision=fp32",
                                             f"training.output_dir={run}"])
    import torch

    args = torch.load(run / "training_args.bin", weights_only=False)
    assert args.ddp_find_unused_parameters is False and args.world_size == 2
    losses = [e["loss"] for e in read_log(run) if "loss" in e]
    assert len(losses) == 3 and all(loss == loss and loss > 0 for loss in losses)
    results = json.loads((run / "eval_results.json").read_text())["results"]
    assert [r["task"] for r in results] == ["vqa"]  # the distributed VQA evaluation ran too
