"""Item 6 of issue 13 through mmzoo's loopback Hub and the real huggingface_hub client: commits retried with
back-off on 5xx and dropped connections (the message says how many tries), no empty repo left by a failed
first push, a failed checkpoint push that does not stop training, a final push that fails loudly and a
re-push that recovers."""

from __future__ import annotations

import pytest
from huggingface_hub import HfApi, hf_hub_download
from safetensors.torch import load_file

from mmzoo.cli import main
from mmzoo.errors import HubError
from mmzoo.hub.push import push_run
from mmzoo.train import train

from .conftest import tiny

COMMIT = r"/commit/main$"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pushable") / "run"
    train(tiny(out, "training.save_steps=null"), progress=False)
    return out


@pytest.fixture
def api(hub_server):
    return HfApi(endpoint=hub_server.url, token=hub_server.token)


def _commits(hub_server, branch="main"):
    return [r for r in hub_server.requests if r[0] == "POST" and r[1].endswith(f"/commit/{branch}")]


@pytest.mark.parametrize("status", [500, 503])
def test_commit_retried_on_5xx_then_lands(api, hub_server, hub_repo_id, finished_run, hub_fast_retries, mmzoo_log,
                                          status):
    hub_server.fail(COMMIT, status=status, times=2)
    result = push_run(finished_run, hub_repo_id)
    assert [s for _, _, s in _commits(hub_server)] == [status, status, 200]
    assert any("try 1 of 5" in m for m in mmzoo_log) and any("try 2 of 5" in m for m in mmzoo_log)
    assert "model.safetensors" in api.list_repo_files(hub_repo_id) and result.commit_oid


def test_commit_retried_after_a_dropped_connection(api, hub_server, hub_repo_id, finished_run, hub_fast_retries):
    api.create_repo(hub_repo_id)
    hub_server.drop(COMMIT, after_bytes=50, times=1)
    push_run(finished_run, hub_repo_id)
    assert [s for _, _, s in _commits(hub_server)] == [0, 200]
    assert len(api.list_repo_commits(hub_repo_id)) == 2  # the repo's initial commit + exactly one upload


def test_persistent_5xx_says_how_many_tries_and_leaves_no_repo(api, hub_server, hub_repo_id, finished_run,
                                                               hub_fast_retries, monkeypatch):
    monkeypatch.setenv("MMZOO_HUB_TRIES", "3")
    hub_server.fail(COMMIT, status=502, times=None)
    with pytest.raises(HubError, match=r"HTTP 502 after 3 tries .*nothing was committed"):
        push_run(finished_run, hub_repo_id)
    assert len(_commits(hub_server)) == 3
    assert not api.repo_exists(hub_repo_id)  # the repo this push created was removed again
    hub_server.clear_faults()
    push_run(finished_run, hub_repo_id)  # the retry later creates it cleanly
    assert "model.safetensors" in api.list_repo_files(hub_repo_id)


def test_failed_push_into_an_existing_repo_keeps_it(api, hub_server, hub_repo_id, finished_run, hub_fast_retries,
                                                    monkeypatch):
    monkeypatch.setenv("MMZOO_HUB_TRIES", "2")
    api.create_repo(hub_repo_id)
    hub_server.drop(COMMIT, after_bytes=10, times=None)
    with pytest.raises(HubError, match=r"connection to the Hub failed after 2 tries"):
        push_run(finished_run, hub_repo_id)
    assert api.repo_exists(hub_repo_id) and api.list_repo_files(hub_repo_id) == [".gitattributes"]


def test_failed_checkpoint_push_warns_and_training_goes_on(api, hub_server, hub_repo_id, tmp_path, hub_fast_retries,
                                                           monkeypatch, mmzoo_log):
    monkeypatch.setenv("MMZOO_HUB_TRIES", "2")
    hub_server.fail(r"/commit/step-2$", status=500, times=None)
    result = train(tiny(tmp_path / "run", f"hub.repo_id={hub_repo_id}", "hub.push_checkpoints=true"), progress=False)
    assert result.global_step == 4
    assert any("checkpoint push of step 2 failed; training goes on" in m for m in mmzoo_log), mmzoo_log
    branches = {b.name for b in api.list_repo_refs(hub_repo_id).branches}
    assert "step-4" in branches and "main" in branches
    pushed = load_file(hf_hub_download(hub_repo_id, "model.safetensors"))
    local = load_file(tmp_path / "run" / "model.safetensors")
    assert all((pushed[k] == local[k]).all() for k in local)


def test_final_push_fails_loudly_and_a_re_push_recovers(api, hub_server, hub_repo_id, tmp_path, hub_fast_retries,
                                                         monkeypatch, capsys):
    monkeypatch.setenv("MMZOO_HUB_TRIES", "2")
    hub_server.fail(COMMIT, status=500, times=None)
    out = tmp_path / "run"
    with pytest.raises(HubError, match="after 2 tries"):
        train(tiny(out, f"hub.repo_id={hub_repo_id}", "training.save_steps=null"), progress=False)
    assert not api.repo_exists(hub_repo_id)
    hub_server.clear_faults()
    assert main(["push", str(out), "--repo-id", hub_repo_id]) == 0  # the run folder is complete: re-push it
    assert f"to {hub_repo_id}@main" in capsys.readouterr().out
    pushed = load_file(hf_hub_download(hub_repo_id, "model.safetensors"))
    local = load_file(out / "model.safetensors")
    assert all((pushed[k] == local[k]).all() for k in local)
