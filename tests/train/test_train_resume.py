"""SIGKILL after a checkpoint, then `mmzoo train --resume`: the loss curve from the checkpoint on is the
uninterrupted run's (seeded sample order per epoch, captions chosen by seed/epoch/index, Trainer RNG state)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from safetensors.torch import load_file

from mmzoo.train import train

from .conftest import TINY, read_log, step_losses

# 32 samples / batch 8 = 4 steps per epoch: the checkpoint at step 5 is inside the second epoch
SETTINGS = ["training.max_steps=7", "training.save_steps=5", "data.eval=null", "evaluation=[]"]
KILLED_RUN = """
import os, signal, sys
from transformers import TrainerCallback
from mmzoo.recipe import load_recipe
from mmzoo.train import train

class KillAfterSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        if state.global_step == 5:
            os.kill(os.getpid(), signal.SIGKILL)

train(load_recipe(sys.argv[1], sys.argv[2:]), progress=False, callbacks=(KillAfterSave(),))
"""


def test_resume_after_sigkill_reproduces_the_loss_curve(tmp_path, tiny_recipe):
    run = tmp_path / "killed"
    sets = [*SETTINGS, f"training.output_dir={run}"]
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, str(TINY / "clip-coco.yaml"), *sets],
                            capture_output=True, text=True, timeout=180)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (run / "checkpoint-5").is_dir() and not (run / "model.safetensors").exists()
    assert max(step_losses(run)) == 5  # the log stopped at the kill

    resumed = subprocess.run(
        [sys.executable, "-m", "mmzoo.cli", "train", str(TINY / "clip-coco.yaml"), *(f"--set={s}" for s in sets),
         "--resume"], capture_output=True, text=True, timeout=180,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    reference = train(tiny_recipe(*SETTINGS), progress=False, output_dir=tmp_path / "reference")
    expected, got = step_losses(reference.run_dir), step_losses(run)
    assert sorted(got) == list(range(1, 8))  # the resumed log continues the checkpoint's history, no duplicates
    for step in range(1, 8):
        assert got[step] == pytest.approx(expected[step], rel=1e-5), f"step {step}: {got} vs {expected}"
    final = load_file(run / "model.safetensors"), load_file(reference.run_dir / "model.safetensors")
    for name, tensor in final[0].items():
        assert (tensor - final[1][name]).abs().max() < 1e-5, name
    assert [e["step"] for e in read_log(run) if "loss" in e] == list(range(1, 8))
