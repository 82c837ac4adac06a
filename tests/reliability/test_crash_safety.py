"""Items 1-2 of issue 13: SIGKILL at many points of a checkpoint save and of the final save, and a full disk.

After every fault: ``--resume`` takes the newest *complete* checkpoint (saying which it took and which
incomplete ones it ignored) and ends with the uninterrupted run's weights; until then ``mmzoo push`` refuses
the folder and nothing in it loads as a finished model."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess

import pytest

from mmzoo.errors import HubError, RecipeError
from mmzoo.hub.push import verify_run_folder
from mmzoo.train import train
from mmzoo.train.checkpoints import DiskFullError
from mmzoo.utils.files import CHECKPOINT_MARKER, RUN_STATUS

from .conftest import in_child, same_weights, tiny


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "run"
    train(tiny(out), progress=False)
    return out


def _kill_inside_write(kind: str, where: str):
    """Patch the writer of ``kind`` files (safetensors / torch) so that writing a path containing ``where``
    leaves half the file on disk and SIGKILLs the process (a kill in the middle of the write)."""
    def cut_and_die(path):
        os.truncate(path, os.path.getsize(path) // 2)
        os.kill(os.getpid(), signal.SIGKILL)

    if kind == "safetensors":
        import transformers.modeling_utils as mu

        original = mu.safe_save_file

        def patched(tensors, filename, *args, **kwargs):
            original(tensors, filename, *args, **kwargs)
            if where in str(filename):
                cut_and_die(filename)

        mu.safe_save_file = patched
    else:
        import torch

        original_save = torch.save

        def patched_save(obj, f, *args, **kwargs):
            original_save(obj, f, *args, **kwargs)
            if isinstance(f, (str, os.PathLike)) and where in str(f):
                cut_and_die(f)

        torch.save = patched_save


# (name, env MMZOO_FAULT_KILL, in-write patch): the second checkpoint (step 4 = the last step) or the final save
CHECKPOINT_KILLS = [
    ("checkpoint-model-half-written", None, ("safetensors", "checkpoint-4")),
    ("checkpoint-optimizer-half-written", None, ("torch", "checkpoint-4/optimizer.pt")),
    ("checkpoint-files-written-no-marker", "checkpoint:written@4", None),
]
FINAL_KILLS = [
    ("final-model-half-written", None, ("safetensors", ".mmzoo-final.tmp")),
    ("final-staged", "final:staged", None),
    ("final-moving-files", "final:moving", None),
    ("final-after-results", "final:results", None),
    ("final-before-status", "final:before-status", None),
]


def _killed_run(out, env_point, patch):
    def child():
        if patch:
            _kill_inside_write(*patch)
        train(tiny(out), progress=False)

    code = in_child(child, {"MMZOO_FAULT_KILL": env_point} if env_point else None)
    assert code == -signal.SIGKILL


@pytest.mark.parametrize("name,point,patch", CHECKPOINT_KILLS, ids=[k[0] for k in CHECKPOINT_KILLS])
def test_kill_during_checkpoint_then_resume(tmp_path, reference, mmzoo_log, name, point, patch):
    out = tmp_path / "run"
    _killed_run(out, point, patch)
    assert (out / "checkpoint-2" / CHECKPOINT_MARKER).is_file()  # not rotated away before its successor was whole
    assert not (out / "checkpoint-4" / CHECKPOINT_MARKER).exists()
    assert not (out / "model.safetensors").exists()
    with pytest.raises(HubError, match=r"did not finish .*--resume"):
        verify_run_folder(out)

    result = train(tiny(out), resume=True, progress=False)
    assert any("resuming from" in m and "checkpoint-2" in m for m in mmzoo_log), mmzoo_log
    assert any("ignoring incomplete checkpoint-4" in m for m in mmzoo_log), mmzoo_log
    assert result.global_step == 4
    assert same_weights(out, reference)
    assert json.loads((out / RUN_STATUS).read_text())["status"] == "complete"
    verify_run_folder(out)  # pushable now
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4"]  # the limit holds


def test_kill_after_marker_before_rotation(tmp_path, reference):
    out = tmp_path / "run"
    _killed_run(out, "checkpoint:marked@4", None)
    assert (out / "checkpoint-2" / CHECKPOINT_MARKER).is_file() and (out / "checkpoint-4" / CHECKPOINT_MARKER).is_file()
    result = train(tiny(out), resume=True, progress=False)  # from checkpoint-4: nothing left to train
    assert result.global_step == 4 and same_weights(out, reference)


@pytest.mark.parametrize("name,point,patch", FINAL_KILLS, ids=[k[0] for k in FINAL_KILLS])
def test_kill_during_final_save_then_resume(tmp_path, reference, name, point, patch):
    out = tmp_path / "run"
    _killed_run(out, point, patch)
    assert json.loads((out / RUN_STATUS).read_text())["status"] == "running"
    if (out / "model.safetensors").exists():  # moved whole, never truncated in place
        assert same_weights(out, reference)
    with pytest.raises(HubError, match=r"did not finish .*mmzoo train RECIPE --resume"):
        verify_run_folder(out)
    train(tiny(out), resume=True, progress=False)
    assert same_weights(out, reference)
    assert not (out / ".mmzoo-final.tmp").exists()
    verify_run_folder(out)


@pytest.fixture
def small_disk(tmp_path):
    """``(folder, grow)``: a 1100 KiB tmpfs where the test may mount one (root), else ``None`` (the test then
    simulates ENOSPC); ``grow()`` frees space (remounts it larger)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1100k", "tmpfs", str(disk)],
                             capture_output=True).returncode == 0
    if not mounted:
        yield None, lambda: None
        return

    def grow():
        subprocess.run(["mount", "-o", "remount,size=8m", str(disk)], check=True)

    try:
        yield disk, grow
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_full_disk_in_checkpoint_names_the_folder_and_resume_recovers(tmp_path, reference, monkeypatch, small_disk):
    """A real full tmpfs (torch's zip writer fails inside inline_container.cc) at the second checkpoint, or a
    simulated ENOSPC where no tmpfs can be mounted."""
    disk, grow = small_disk
    out = (disk or tmp_path) / "run"
    if disk is None:
        import torch

        original = torch.save

        def full_disk(obj, f, *args, **kwargs):
            if isinstance(f, (str, os.PathLike)) and str(f).endswith("checkpoint-4/optimizer.pt"):
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
            return original(obj, f, *args, **kwargs)

        monkeypatch.setattr(torch, "save", full_disk)
        grow = lambda: monkeypatch.setattr(torch, "save", original)  # noqa: E731
    with pytest.raises(DiskFullError, match=r"no space left on device while writing checkpoint checkpoint-4 in "
                                            rf"{out}.*partial folder was removed.*--resume") as info:
        train(tiny(out), progress=False)
    assert "inline_container" not in str(info.value)
    assert not (out / "checkpoint-4").exists() and (out / "checkpoint-2" / CHECKPOINT_MARKER).is_file()
    with pytest.raises(HubError, match="did not finish"):
        verify_run_folder(out)
    grow()
    train(tiny(out), resume=True, progress=False)
    assert same_weights(out, reference)


def test_full_disk_in_final_save_leaves_nothing_loadable(tmp_path, reference, monkeypatch):
    import transformers.modeling_utils as mu

    out = tmp_path / "run"
    original = mu.safe_save_file

    def full_disk(tensors, filename, *args, **kwargs):
        if ".mmzoo-final.tmp" in str(filename):
            with open(filename, "wb") as f:
                f.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filename))
        return original(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(mu, "safe_save_file", full_disk)
    with pytest.raises(DiskFullError, match=r"no space left on device while writing the final model"):
        train(tiny(out), progress=False)
    assert not (out / "model.safetensors").exists() and not (out / ".mmzoo-final.tmp").exists()
    with pytest.raises(HubError, match="did not finish"):
        verify_run_folder(out)
    monkeypatch.setattr(mu, "safe_save_file", original)
    train(tiny(out), resume=True, progress=False)
    assert same_weights(out, reference)


def test_resume_refuses_an_explicit_incomplete_checkpoint(tmp_path):
    out = tmp_path / "run"
    _killed_run(out, "checkpoint:written@4", None)
    with pytest.raises(RecipeError, match=r"--resume .*checkpoint-4: incomplete checkpoint: no mmzoo_checkpoint.json"):
        train(tiny(out), resume=str(out / "checkpoint-4"), progress=False)


def test_resume_with_only_incomplete_checkpoints_says_so(tmp_path):
    out = tmp_path / "run"
    (out / "checkpoint-2").mkdir(parents=True)
    (out / "checkpoint-2" / "trainer_state.json").write_text("{")
    with pytest.raises(RecipeError, match=r"no complete checkpoint-\* folder .*incomplete: checkpoint-2"):
        train(tiny(out), resume=True, progress=False)
