"""The loopback Hub against the real huggingface_hub client (no mocks)."""

from __future__ import annotations

import hashlib
import os
import re

import httpx2
import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    ModelCard,
    create_branch,
    hf_hub_download,
    snapshot_download,
    upload_folder,
)
from huggingface_hub.errors import (
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from mmzoo.testing.hub_server import LFS_SIZE_THRESHOLD, HubServer


@pytest.fixture
def api(hub_server) -> HfApi:
    return HfApi()


@pytest.fixture
def folder(tmp_path):
    """A small text file, a binary weights file and a >= 10 MB text file."""
    root = tmp_path / "upload"
    (root / "sub").mkdir(parents=True)
    (root / "notes.txt").write_text("hello hub\n")
    (root / "sub" / "weights.safetensors").write_bytes(os.urandom(4096))
    (root / "big.txt").write_bytes(b"a" * LFS_SIZE_THRESHOLD)
    return root


def _cause(exc: BaseException) -> BaseException:
    """LFS upload errors reach the caller as RuntimeError("Error while uploading ...") from the real one."""
    return exc.__cause__ if isinstance(exc, RuntimeError) and exc.__cause__ is not None else exc


def _commits(api: HfApi, repo_id: str, revision: str = "main") -> list[str]:
    return [c.commit_id for c in api.list_repo_commits(repo_id, revision=revision)]


def test_whoami_and_bad_token(api, hub_server):
    assert api.whoami()["name"] == hub_server.user
    with pytest.raises(HfHubHTTPError, match="Invalid user token"):
        api.whoami(token="hf_not_a_real_token")


def test_create_repo_semantics(api, hub_server, hub_repo_id):
    url = api.create_repo(hub_repo_id)
    assert url.repo_id == hub_repo_id and url.startswith(hub_server.url)
    assert api.create_repo(hub_repo_id, exist_ok=True).repo_id == hub_repo_id
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(hub_repo_id)
    assert err.value.response.status_code == 409
    info = api.model_info(hub_repo_id)
    assert len(info.sha) == 40 and [s.rfilename for s in info.siblings] == [".gitattributes"]
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo("someone-else/model")
    assert err.value.response.status_code == 403


def test_private_repo_is_hidden(api, hub_server, hub_repo_id):
    api.create_repo(hub_repo_id, private=True)
    assert api.model_info(hub_repo_id).private
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(hub_repo_id, token=False)
    hub_server.add_token("hf_intruder", "intruder")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(hub_repo_id, token="hf_intruder")


def test_no_write_access(api, hub_server, hub_repo_id):
    api.create_repo(hub_repo_id)
    hub_server.add_token("hf_reader", hub_server.user, role="read")
    hub_server.add_token("hf_other", "other-user")
    for token in ("hf_reader", "hf_other"):
        with pytest.raises(HfHubHTTPError) as err:
            api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=hub_repo_id, token=token)
        assert err.value.response.status_code == 403
    assert api.list_repo_files(hub_repo_id) == [".gitattributes"]


def test_upload_folder_round_trip(api, hub_server, hub_repo_id, folder, tmp_path):
    api.create_repo(hub_repo_id)
    upload_folder(folder_path=folder, repo_id=hub_repo_id, commit_message="add files")
    tree = {f.path: f for f in api.list_repo_tree(hub_repo_id, recursive=True) if hasattr(f, "size")}
    assert tree["notes.txt"].lfs is None  # small text: regular git blob
    assert tree["sub/weights.safetensors"].lfs is not None  # matched by .gitattributes
    assert tree["big.txt"].lfs.sha256 == hashlib.sha256((folder / "big.txt").read_bytes()).hexdigest()  # size
    methods = [(m, p.split("/")[1]) for m, p, _ in hub_server.requests]
    assert methods.count(("PUT", "lfs-upload")) == 2 and not any("xet" in p for _, p, _ in hub_server.requests)

    cache = tmp_path / "cache"
    local = hf_hub_download(hub_repo_id, "sub/weights.safetensors", cache_dir=cache)
    assert open(local, "rb").read() == (folder / "sub" / "weights.safetensors").read_bytes()
    assert any(s == 302 and "/resolve/" in p for _, p, s in hub_server.requests)  # LFS via the CDN origin
    snapshot = snapshot_download(hub_repo_id, cache_dir=tmp_path / "cache2")
    for path in ("notes.txt", "big.txt", "sub/weights.safetensors"):
        assert open(os.path.join(snapshot, path), "rb").read() == (folder / path).read_bytes()


def test_unchanged_upload_makes_no_commit(api, hub_repo_id, folder):
    api.create_repo(hub_repo_id)
    first = upload_folder(folder_path=folder, repo_id=hub_repo_id)
    second = upload_folder(folder_path=folder, repo_id=hub_repo_id)
    assert second.oid == first.oid and len(_commits(api, hub_repo_id)) == 2


def test_branches_and_refs(api, hub_repo_id):
    api.create_repo(hub_repo_id)
    main_head = api.model_info(hub_repo_id).sha
    create_branch(hub_repo_id, branch="step-1")
    create_branch(hub_repo_id, branch="step-1", exist_ok=True)
    with pytest.raises(HfHubHTTPError):
        create_branch(hub_repo_id, branch="step-1")
    api.upload_file(path_or_fileobj=b"branch only", path_in_repo="b.txt", repo_id=hub_repo_id, revision="step-1")
    refs = {b.name: b.target_commit for b in api.list_repo_refs(hub_repo_id).branches}
    assert refs["main"] == main_head and refs["step-1"] != main_head
    assert api.list_repo_files(hub_repo_id) == [".gitattributes"]
    assert "b.txt" in api.list_repo_files(hub_repo_id, revision="step-1")
    with pytest.raises(RevisionNotFoundError):
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=hub_repo_id, revision="missing")


def test_not_found_errors(api, hub_repo_id, tmp_path):
    api.create_repo(hub_repo_id)
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(hub_repo_id, "nope.txt", cache_dir=tmp_path)
    assert not api.file_exists(hub_repo_id, "nope.txt")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(hub_repo_id, ".gitattributes", revision="no-such-branch", cache_dir=tmp_path)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("tester/does-not-exist", "config.json", cache_dir=tmp_path)
    assert not api.repo_exists("tester/does-not-exist")


def test_commit_is_atomic_and_checks_parent(api, hub_repo_id):
    api.create_repo(hub_repo_id)
    head = api.model_info(hub_repo_id).sha
    ops = [CommitOperationAdd("new.txt", b"new"), CommitOperationDelete("missing.txt")]
    with pytest.raises(RemoteEntryNotFoundError):
        api.create_commit(hub_repo_id, ops, commit_message="half")
    assert api.model_info(hub_repo_id).sha == head and not api.file_exists(hub_repo_id, "new.txt")
    api.upload_file(path_or_fileobj=b"1", path_in_repo="one.txt", repo_id=hub_repo_id)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_commit(hub_repo_id, [CommitOperationAdd("two.txt", b"2")], commit_message="stale",
                          parent_commit=head)
    assert err.value.response.status_code == 412


def test_server_errors_are_retried(api, hub_server, hub_repo_id, folder, hub_fast_retries):
    api.create_repo(hub_repo_id)
    fault = hub_server.fail(r"/preupload/", times=2)
    upload_folder(folder_path=folder, repo_id=hub_repo_id)
    assert fault.hits == 2 and api.file_exists(hub_repo_id, "big.txt")


def test_persistent_lfs_failure_lands_no_commit(api, hub_server, hub_repo_id, folder, hub_fast_retries):
    api.create_repo(hub_repo_id)
    fault = hub_server.fail(r"^/lfs-upload/", times=None)
    with pytest.raises(RuntimeError, match="Error while uploading") as err:
        upload_folder(folder_path=folder, repo_id=hub_repo_id)
    assert isinstance(_cause(err.value), HfHubHTTPError) and _cause(err.value).response.status_code == 500
    assert fault.hits >= 6  # 1 try + 5 retries for at least one of the two LFS files
    assert len(_commits(api, hub_repo_id)) == 1
    assert not any("/commit/" in p for _, p, _ in hub_server.requests)


def test_commit_500_lands_no_commit(api, hub_server, hub_repo_id, folder):
    api.create_repo(hub_repo_id)
    hub_server.fail(r"/commit/main$", method="POST")
    with pytest.raises(HfHubHTTPError):
        upload_folder(folder_path=folder, repo_id=hub_repo_id)
    assert api.list_repo_files(hub_repo_id) == [".gitattributes"]


@pytest.mark.parametrize("pattern", [r"^/lfs-upload/", r"/commit/main$"])
def test_dropped_connection_lands_no_commit(api, hub_server, hub_repo_id, folder, hub_fast_retries, pattern):
    api.create_repo(hub_repo_id)
    fault = hub_server.drop(pattern, after_bytes=1024, times=None)
    with pytest.raises(Exception) as err:
        upload_folder(folder_path=folder, repo_id=hub_repo_id)
    assert isinstance(_cause(err.value), httpx2.TransportError), repr(err.value)
    assert fault.hits >= 1 and len(_commits(api, hub_repo_id)) == 1
    hub_server.clear_faults()  # the next upload goes through on the same pooled client
    upload_folder(folder_path=folder, repo_id=hub_repo_id)
    assert len(_commits(api, hub_repo_id)) == 2


GOOD_CARD = """---
license: apache-2.0
library_name: mmzoo
pipeline_tag: zero-shot-image-classification
base_model: sentence-transformers/all-MiniLM-L6-v2
model-index:
- name: tiny
  results:
  - task: {type: zero-shot-image-classification}
    dataset: {type: digits, name: Digits, split: test}
    metrics:
    - {type: accuracy, value: 0.5}
---
# tiny
"""


@pytest.mark.parametrize(
    "old, new, message",
    [
        (None, None, None),
        ("license: apache-2.0", "license: not-a-license", "license"),
        ("pipeline_tag: zero-shot-image-classification", "pipeline_tag: make-coffee", "pipeline_tag"),
        ("base_model: sentence-transformers/all-MiniLM-L6-v2", "base_model: /tmp/local/ckpt", "base_model"),
        ("dataset: {type: digits, name: Digits, split: test}", "dataset: {name: Digits}", "dataset.type"),
        ("- {type: accuracy, value: 0.5}", "- {type: accuracy}", "metrics[0].value"),
        ("- name: tiny\n", "- \n", "model-index[0].name"),
    ],
)
def test_validate_yaml(api, hub_repo_id, old, new, message):
    """Through create_commit, which sends the raw README (ModelCard would drop unparsable model-index)."""
    api.create_repo(hub_repo_id)
    content = GOOD_CARD if old is None else GOOD_CARD.replace(old, new)
    upload = dict(path_or_fileobj=content.encode(), path_in_repo="README.md", repo_id=hub_repo_id)
    if message is None:
        ModelCard(content).validate()
        api.upload_file(**upload)
        assert api.model_info(hub_repo_id).card_data["library_name"] == "mmzoo"
    else:
        with pytest.raises(ValueError, match=re.escape(message)):
            api.upload_file(**upload)
        assert api.list_repo_files(hub_repo_id) == [".gitattributes"]


def test_model_card_validate_uses_the_hub(hub_server):
    with pytest.raises(ValueError, match="license"):
        ModelCard(GOOD_CARD.replace("license: apache-2.0", "license: not-a-license")).validate()


def test_regular_only_server_and_repo_deletion(folder, tmp_path):
    """A second server with lfs=False (every file a git blob), reached through HfApi(endpoint=...)."""
    with HubServer(tmp_path / "hub", lfs=False) as hub:
        api = HfApi(endpoint=hub.url, token=hub.token)
        api.create_repo("tester/plain")
        api.upload_folder(folder_path=folder, repo_id="tester/plain")
        tree = [f for f in api.list_repo_tree("tester/plain", recursive=True) if hasattr(f, "size")]
        assert len(tree) == 4 and all(f.lfs is None for f in tree)
        assert not any("lfs" in p for _, p, _ in hub.requests)
        api.delete_repo("tester/plain")
        assert not api.repo_exists("tester/plain")
