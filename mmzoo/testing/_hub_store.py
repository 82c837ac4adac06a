"""On-disk repository store behind :class:`mmzoo.testing.HubServer` (stdlib only).

Layout under ``root``::

    objects/<sha256>          file contents, content-addressed (regular and LFS files alike)
    repos/<ns>/<name>.json    one repo: visibility, branches, tags and every commit's full file table

A commit stores the complete ``path -> entry`` table, so reading any revision is one dict lookup. Writes
happen under one lock and end with an atomic ``os.replace`` of the repo file: a commit either lands whole or
not at all. Objects written by a failed commit are unreachable, as in git.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.bin", "*.ckpt", "*.h5", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb",
        "*.pickle", "*.pkl", "*.pt", "*.pth", "*.safetensors", "*.tar.gz", "*.tflite", "*.zip", "*tfevents*",
    )
)


class StoreError(Exception):
    """A request the store refuses; ``status``/``code`` become the HTTP answer."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


def now_iso() -> str:
    """UTC timestamp in the Hub's format (milliseconds, trailing ``Z``)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class Entry:
    """One file in a commit. ``oid`` is the git blob sha1 (of the pointer file for LFS files)."""

    sha256: str
    size: int
    lfs: bool
    oid: str

    def tree_json(self, path: str) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "file", "path": path, "size": self.size, "oid": self.oid}
        if self.lfs:
            out["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": len(lfs_pointer(self.sha256, self.size))}
        return out


class RepoStore:
    """Thread-safe model-repo storage; see the module docstring for the layout."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        (self.root / "objects").mkdir(parents=True, exist_ok=True)
        (self.root / "repos").mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.repos: dict[str, dict[str, Any]] = {}
        for path in (self.root / "repos").glob("*/*.json"):  # reopen a persistent root
            repo = json.loads(path.read_text())
            self.repos[repo["id"]] = repo

    # -- objects -------------------------------------------------------------------------------------------
    def put_object(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        target = self.root / "objects" / sha256
        if not target.exists():
            tmp = target.with_name(f"{sha256}.{uuid.uuid4().hex}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        return sha256

    def object_path(self, sha256: str) -> Path | None:
        path = self.root / "objects" / sha256
        return path if len(sha256) == 64 and path.is_file() else None

    def read_object(self, sha256: str) -> bytes:
        return (self.root / "objects" / sha256).read_bytes()

    def entry_for(self, data: bytes, lfs: bool) -> Entry:
        sha256 = self.put_object(data)
        oid = git_blob_sha1(lfs_pointer(sha256, len(data)) if lfs else data)
        return Entry(sha256=sha256, size=len(data), lfs=lfs, oid=oid)

    # -- repos ---------------------------------------------------------------------------------------------
    def get(self, repo_id: str) -> dict[str, Any] | None:
        return self.repos.get(repo_id)

    def create(self, repo_id: str, private: bool, author: str) -> dict[str, Any]:
        with self.lock:
            if repo_id in self.repos:
                raise StoreError(409, f"You already created this model repo: {repo_id}")
            now = now_iso()
            repo = {"id": repo_id, "private": private, "createdAt": now, "branches": {}, "tags": {}, "commits": {}}
            self.repos[repo_id] = repo
            gitattributes = self.entry_for(DEFAULT_GITATTRIBUTES.encode(), lfs=False)
            self._commit(repo, "main", {".gitattributes": gitattributes}, None, "initial commit", "", author)
            return repo

    def delete(self, repo_id: str) -> None:
        with self.lock:
            self.repos.pop(repo_id)
            (self.root / "repos" / f"{repo_id}.json").unlink(missing_ok=True)

    def set_private(self, repo_id: str, private: bool) -> None:
        with self.lock:
            self.repos[repo_id]["private"] = private
            self._save(self.repos[repo_id])

    def resolve(self, repo: dict[str, Any], rev: str) -> str:
        """Branch, tag or full commit sha -> commit sha; 404 ``RevisionNotFound`` otherwise."""
        sha = repo["branches"].get(rev) or repo["tags"].get(rev) or (rev if rev in repo["commits"] else None)
        if sha is None:
            raise StoreError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return sha

    def files(self, repo: dict[str, Any], sha: str) -> dict[str, Entry]:
        return {path: Entry(**e) for path, e in repo["commits"][sha]["files"].items()}

    def commit(self, repo_id: str, branch: str, ops: list[tuple[str, str, Entry | None]], title: str,
               description: str, parent: str | None, author: str) -> str:
        """Apply ``("add"|"delete"|"delete_folder", path, entry)`` ops to ``branch`` in one atomic step."""
        with self.lock:
            repo = self.repos[repo_id]
            if branch not in repo["branches"]:
                raise StoreError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            head = repo["branches"][branch]
            if parent and not head.startswith(parent):
                raise StoreError(412, f"A commit has happened since. Please refresh and try again. ({parent} != {head})")
            files = self.files(repo, head)
            for kind, path, entry in ops:
                if kind == "add":
                    files[path] = entry
                elif kind == "delete":
                    if path not in files:
                        raise StoreError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                    del files[path]
                else:
                    doomed = [p for p in files if p.startswith(path.rstrip("/") + "/")]
                    if not doomed:
                        raise StoreError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                    for p in doomed:
                        del files[p]
            return self._commit(repo, branch, files, head, title, description, author)

    def create_ref(self, repo_id: str, kind: str, name: str, sha: str) -> None:
        with self.lock:
            refs = self.repos[repo_id][kind]
            if name in refs:
                raise StoreError(409, f"Reference already exists: {name}")
            refs[name] = sha
            self._save(self.repos[repo_id])

    def delete_ref(self, repo_id: str, kind: str, name: str) -> None:
        with self.lock:
            if self.repos[repo_id][kind].pop(name, None) is None:
                raise StoreError(404, f"Invalid rev id: {name}", "RevisionNotFound")
            self._save(self.repos[repo_id])

    def history(self, repo: dict[str, Any], sha: str) -> list[tuple[str, dict[str, Any]]]:
        out = []
        while sha:
            out.append((sha, repo["commits"][sha]))
            sha = repo["commits"][sha]["parent"]
        return out

    # -- internals -----------------------------------------------------------------------------------------
    def _commit(self, repo, branch, files, parent, title, description, author) -> str:
        sha = hashlib.sha1(uuid.uuid4().bytes + (parent or "").encode()).hexdigest()
        repo["commits"][sha] = {
            "parent": parent, "title": title, "message": description, "date": now_iso(), "author": author,
            "files": {path: asdict(entry) for path, entry in sorted(files.items())},
        }
        previous = repo["branches"].get(branch)
        repo["branches"][branch] = sha
        try:
            self._save(repo)
        except BaseException:  # keep memory and disk in step
            del repo["commits"][sha]
            if previous is None:
                del repo["branches"][branch]
            else:
                repo["branches"][branch] = previous
            raise
        return sha

    def _save(self, repo: dict[str, Any]) -> None:
        target = self.root / "repos" / f"{repo['id']}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(repo))
        os.replace(tmp, target)
