"""HTTP side of the loopback Hub: routes, the request handler and commit helpers (see hub_server.py)."""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import socket
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import parse_qs, unquote

from ._hub_store import Entry, RepoStore, StoreError, git_blob_sha1, lfs_pointer
from ._hub_yaml import check_readme, parse_metadata

if TYPE_CHECKING:
    from .hub_server import HubServer

LFS_SIZE_THRESHOLD = 10 * 1024 * 1024  # the Hub stores files >= 10 MB with LFS
_BAD_TOKEN = "Invalid credentials in Authorization header"


@dataclass(frozen=True)
class User:
    name: str
    orgs: tuple[str, ...]
    role: str  # "read" or "write"

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (self.name, *self.orgs)


_REPO = r"(?P<repo>[^/]+/[^/]+?)"
_API = r"^/api/models/" + _REPO
_ROUTES: list[tuple[str, str, str, str]] = [  # (server role, method, raw-path regex, handler)
    ("api", "GET", r"^/api/whoami-v2$", "whoami"),
    ("api", "GET", r"^/api/agent-harnesses$", "agent_harnesses"),
    ("api", "POST", r"^/api/validate-yaml$", "validate_yaml"),
    ("api", "POST", r"^/api/repos/create$", "create_repo"),
    ("api", "DELETE", r"^/api/repos/delete$", "delete_repo"),
    ("api", "*", r"^/api/(?:datasets|spaces)/", "unsupported_type"),
    ("api", "PUT", _API + r"/settings$", "settings"),
    ("api", "GET", _API + r"(?:/revision/(?P<rev>[^/]+))?$", "repo_info"),
    ("api", "GET", _API + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$", "tree"),
    ("api", "POST", _API + r"/paths-info/(?P<rev>[^/]+)$", "paths_info"),
    ("api", "GET", _API + r"/refs$", "refs"),
    ("api", "GET", _API + r"/commits/(?P<rev>[^/]+)$", "commits"),
    ("api", "POST", _API + r"/branch/(?P<branch>[^/]+)$", "create_branch"),
    ("api", "DELETE", _API + r"/branch/(?P<branch>[^/]+)$", "delete_branch"),
    ("api", "POST", _API + r"/tag/(?P<rev>[^/]+)$", "create_tag"),
    ("api", "POST", _API + r"/preupload/(?P<rev>[^/]+)$", "preupload"),
    ("api", "POST", _API + r"/commit/(?P<rev>[^/]+)$", "commit"),
    ("api", "GET", _API + r"/xet-(?:read|write)-token/", "xet_token"),
    ("api", "POST", r"^/" + _REPO + r"\.git/info/lfs/objects/batch$", "lfs_batch"),
    ("api", "POST", r"^/" + _REPO + r"\.git/info/lfs/objects/verify$", "lfs_verify"),
    ("api", "PUT", r"^/lfs-upload/(?P<oid>[0-9a-f]{64})$", "lfs_put"),
    ("api", "GET", r"^/" + _REPO + r"/resolve/(?P<rev>[^/]+)/(?P<path>.+)$", "resolve"),
    ("cdn", "GET", r"^/lfs-objects/(?P<oid>[0-9a-f]{64})$", "cdn_get"),
]
_COMPILED = [(role, method, re.compile(rx), name) for role, method, rx, name in _ROUTES]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: snapshot_download pools connections across 8 threads
    timeout = 120

    def log_message(self, format, *args):  # quiet: the hub records requests in HubServer.requests
        pass

    def do_GET(self):
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    # -- plumbing --------------------------------------------------------------------------------------
    @property
    def hub(self) -> HubServer:
        return self.server.hub

    def _dispatch(self) -> None:
        raw_path, _, query = self.path.partition("?")
        self.query = parse_qs(query)
        fault = self.hub._take_fault(self.command, raw_path)
        if fault is not None and fault.drop_after is not None:
            self._read_body(limit=fault.drop_after)
            self.hub.requests.append((self.command, raw_path, 0))
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.body = self._read_body()
        if fault is not None:
            return self._error(fault.status, f"Injected fault for {self.command} {raw_path}")
        method = "GET" if self.command == "HEAD" else self.command
        for role, route_method, regex, name in _COMPILED:
            match = regex.match(raw_path) if role == self.server.role and route_method in ("*", method) else None
            if match:
                args = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                try:
                    return getattr(self, "h_" + name)(**args)
                except StoreError as err:
                    return self._error(err.status, err.message, err.code, err.headers)
        self._error(404, f"Sorry, we can't find the page you are looking for ({self.command} {raw_path})")

    def _read_body(self, limit: int | None = None) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
                if limit is not None and sum(map(len, chunks)) >= limit:
                    return b"".join(chunks)
            self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length if limit is None else min(length, limit))

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              length: int | None = None, content_type: str = "application/json") -> None:
        self.hub.requests.append((self.command, self.path.partition("?")[0], status))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, status: int, message: str, code: str | None = None, headers: dict | None = None) -> None:
        headers = {"X-Error-Message": message.encode("ascii", "replace").decode(), **(headers or {})}
        if code:
            headers["X-Error-Code"] = code
        self._json({"error": message}, status, headers)

    def _body_json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError:
            raise StoreError(400, "Request body is not valid JSON") from None

    def _flag(self, name: str) -> bool:
        return self.query.get(name, [""])[0] in ("1", "true")

    # -- auth ------------------------------------------------------------------------------------------
    def _user(self) -> User | None:
        header = self.headers.get("Authorization", "")
        if not header:
            return None
        user = self.hub.tokens.get(header.removeprefix("Bearer ").strip())
        if user is None:
            raise StoreError(401, _BAD_TOKEN)
        return user

    def _repo(self, repo_id: str, write: bool = False) -> dict[str, Any]:
        """The repo if the caller may read it (and write it when ``write``), else the Hub's errors."""
        user, repo = self._user(), self.hub.store.get(repo_id)
        if repo is None or (repo["private"] and (user is None or repo_id.split("/")[0] not in user.namespaces)):
            raise StoreError(401 if user is None else 404, f"Repository not found: {repo_id}", "RepoNotFound")
        if write:
            if user is None:
                raise StoreError(401, f"Authentication required to write to {repo_id}: pass a write token")
            if user.role != "write" or repo_id.split("/")[0] not in user.namespaces:
                raise StoreError(403, f"You don't have write access to {repo_id} (token of '{user.name}', role "
                                      f"'{user.role}')")
        return repo

    # -- account and side endpoints --------------------------------------------------------------------
    def h_whoami(self) -> None:
        user = self._user()
        if user is None:
            raise StoreError(401, _BAD_TOKEN)
        self._json({"type": "user", "name": user.name, "fullname": user.name, "email": f"{user.name}@localhost",
                    "orgs": [{"name": org, "type": "org"} for org in user.orgs],
                    "auth": {"type": "access_token", "accessToken": {"displayName": "mmzoo-loopback",
                                                                     "role": user.role}}})

    def h_agent_harnesses(self) -> None:
        self._json({"standardEnvVars": [], "harnesses": {}})

    def h_validate_yaml(self) -> None:
        self._user()
        errors, warnings, _ = check_readme(self._body_json().get("content", ""))
        status = 400 if errors else 200
        if "json" not in self.headers.get("Accept", "") and "text/plain" in self.headers.get("Accept", ""):
            return self._send(status, "\n".join(errors).encode(), content_type="text/plain")
        self._json({"errors": [{"message": m} for m in errors], "warnings": [{"message": m} for m in warnings]},
                   status)

    def h_unsupported_type(self) -> None:
        raise StoreError(400, "This loopback Hub serves model repos only")

    def h_xet_token(self, repo: str) -> None:
        raise StoreError(400, "This loopback Hub speaks no Xet: run the client with HF_HUB_DISABLE_XET=1")

    # -- repos -----------------------------------------------------------------------------------------
    def h_create_repo(self) -> None:
        body, user = self._body_json(), self._user()
        if body.get("type", "model") != "model":
            raise StoreError(400, "This loopback Hub serves model repos only")
        if user is None:
            raise StoreError(401, "You must be authenticated to create a repo")
        namespace, name = body.get("organization") or user.name, str(body.get("name", ""))
        if not re.fullmatch(r"[\w][\w.-]{0,95}", name) or ".." in name:
            raise StoreError(400, f"Invalid repo name {name!r}: use letters, digits, '-', '_' and '.'")
        repo_id = f"{namespace}/{name}"
        if namespace not in user.namespaces or user.role != "write":
            raise StoreError(403, f'You don\'t have the rights to create a model under the namespace "{namespace}"')
        url = f"{self.hub.url}/{repo_id}"
        if self.hub.store.get(repo_id) is not None:
            return self._json({"error": "You already created this model repo", "url": url}, 409)
        private = body.get("visibility") == "private" or bool(body.get("private"))
        self.hub.store.create(repo_id, private=private, author=user.name)
        self._json({"url": url, "name": repo_id, "id": repo_id})

    def h_delete_repo(self) -> None:
        body, user = self._body_json(), self._user()
        repo_id = f"{body.get('organization') or (user.name if user else '')}/{body.get('name')}"
        self._repo(repo_id, write=True)
        self.hub.store.delete(repo_id)
        self._json({})

    def h_settings(self, repo: str) -> None:
        self._repo(repo, write=True)
        body = self._body_json()
        if "private" in body or "visibility" in body:
            self.hub.store.set_private(repo, body.get("visibility") == "private" or body.get("private") is True)
        self._json({})

    def h_repo_info(self, repo: str, rev: str = "main") -> None:
        record = self._repo(repo)
        sha = self.hub.store.resolve(record, rev)
        files = self.hub.store.files(record, sha)
        meta = parse_metadata(self._text(files.get("README.md")))
        siblings = []
        for path, entry in files.items():
            sibling: dict[str, Any] = {"rfilename": path}
            if self._flag("blobs"):
                sibling.update(size=entry.size, blobId=entry.oid)
                if entry.lfs:
                    sibling["lfs"] = {"size": entry.size, "sha256": entry.sha256,
                                      "pointerSize": len(lfs_pointer(entry.sha256, entry.size))}
            siblings.append(sibling)
        info = {"_id": hashlib.sha1(repo.encode()).hexdigest()[:24], "id": repo, "modelId": repo,
                "author": repo.split("/")[0], "sha": sha, "private": record["private"], "gated": False,
                "disabled": False, "lastModified": record["commits"][sha]["date"], "createdAt": record["createdAt"],
                "downloads": 0, "likes": 0, "tags": list(meta.get("tags") or []), "siblings": siblings}
        if meta:
            info.update(cardData=meta, pipeline_tag=meta.get("pipeline_tag"), library_name=meta.get("library_name"))
        if "evalResults" in self.query.get("expand", []):
            info["evalResults"] = self._eval_results(files)
        self._json(info)

    def _text(self, entry: Entry | None) -> str:
        return self.hub.store.read_object(entry.sha256).decode("utf-8", "replace") if entry else ""

    def _eval_results(self, files: dict[str, Entry]) -> list[dict[str, Any]]:
        import yaml

        out = []
        for path in sorted(p for p in files if p.startswith(".eval_results/") and p.endswith((".yaml", ".yml"))):
            try:
                items = yaml.safe_load(self._text(files[path]))
                out += [{"filename": path, "data": item} for item in items]
            except (yaml.YAMLError, TypeError) as err:
                out.append({"filename": path, "error": f"invalid eval results file: {err}"})
        return out

    # -- listings and refs ------------------------------------------------------------------------------
    def h_tree(self, repo: str, rev: str, path: str = "") -> None:
        record = self._repo(repo)
        sha = self.hub.store.resolve(record, rev)
        files, prefix = self.hub.store.files(record, sha), path.strip("/")
        dirs = _directories(files)
        if prefix and prefix not in dirs:
            raise StoreError(404, f"Entry not found: {prefix}", "EntryNotFound", {"X-Repo-Commit": sha})
        base = prefix + "/" if prefix else ""
        recursive = self._flag("recursive")

        def wanted(p: str) -> bool:
            return p.startswith(base) and (recursive or "/" not in p[len(base):])

        entries = [_dir_json(d, dirs[d]) for d in sorted(dirs) if d and wanted(d)]
        entries += [entry.tree_json(p) for p, entry in sorted(files.items()) if wanted(p)]
        self._json(entries, headers={"X-Repo-Commit": sha})

    def h_paths_info(self, repo: str, rev: str) -> None:
        record = self._repo(repo)
        sha = self.hub.store.resolve(record, rev)
        files = self.hub.store.files(record, sha)
        dirs = _directories(files)
        out = []
        for path in parse_qs(self.body.decode()).get("paths", []):
            path = path.strip("/")
            if path in files:
                out.append(files[path].tree_json(path))
            elif path in dirs and path:
                out.append(_dir_json(path, dirs[path]))
        self._json(out)

    def h_refs(self, repo: str) -> None:
        record = self._repo(repo)

        def refs(kind: str, prefix: str) -> list[dict[str, str]]:
            return [{"name": n, "ref": f"refs/{prefix}/{n}", "targetCommit": s} for n, s in record[kind].items()]

        out = {"branches": refs("branches", "heads"), "tags": refs("tags", "tags"), "converts": []}
        if self._flag("include_prs"):
            out["pullRequests"] = []
        self._json(out)

    def h_commits(self, repo: str, rev: str) -> None:
        record = self._repo(repo)
        history = self.hub.store.history(record, self.hub.store.resolve(record, rev))
        self._json([{"id": sha, "title": c["title"], "message": c["message"], "date": c["date"],
                     "authors": [{"user": c["author"]}]} for sha, c in history])

    def h_create_branch(self, repo: str, branch: str) -> None:
        record = self._repo(repo, write=True)
        start = self.hub.store.resolve(record, self._body_json().get("startingPoint") or "main")
        self.hub.store.create_ref(repo, "branches", branch, start)
        self._json({})

    def h_delete_branch(self, repo: str, branch: str) -> None:
        self._repo(repo, write=True)
        if branch == "main":
            raise StoreError(403, "You cannot delete the default branch")
        self.hub.store.delete_ref(repo, "branches", branch)
        self._json({})

    def h_create_tag(self, repo: str, rev: str) -> None:
        record = self._repo(repo, write=True)
        tag = self._body_json().get("tag")
        if not tag:
            raise StoreError(400, "Missing 'tag' in the request body")
        self.hub.store.create_ref(repo, "tags", tag, self.hub.store.resolve(record, rev))
        self._json({})

    # -- upload: preupload, LFS, commit ------------------------------------------------------------------
    def _branch_head(self, record: dict[str, Any], rev: str) -> str:
        if self._flag("create_pr"):
            raise StoreError(400, "This loopback Hub does not support pull requests (create_pr)")
        if rev not in record["branches"]:
            raise StoreError(404, f"Invalid rev id: {rev} (uploads go to a branch)", "RevisionNotFound")
        return record["branches"][rev]

    def h_preupload(self, repo: str, rev: str) -> None:
        record = self._repo(repo, write=True)
        files = self.hub.store.files(record, self._branch_head(record, rev))
        patterns = _lfs_patterns(self._text(files.get(".gitattributes")))
        answer = []
        for item in self._body_json().get("files", []):
            path, size = item["path"], int(item["size"])
            sample = base64.b64decode(item.get("sample", ""))
            lfs = self.hub.lfs and (size >= LFS_SIZE_THRESHOLD or b"\0" in sample or _matches(path, patterns))
            old = files.get(path)
            oid = None if old is None or old.lfs != lfs else (old.sha256 if lfs else old.oid)
            answer.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        self._json({"files": answer})

    def h_lfs_batch(self, repo: str) -> None:
        self._repo(repo, write=True)
        objects = []
        for obj in self._body_json().get("objects", []):
            oid, size = obj.get("oid"), obj.get("size")
            if not (isinstance(oid, str) and re.fullmatch(r"[0-9a-f]{64}", oid) and isinstance(size, int)):
                objects.append({"oid": str(oid), "size": int(size or 0),
                                "error": {"code": 422, "message": "oid must be a sha256 and size an int"}})
                continue
            stored = self.hub.store.object_path(oid)
            if stored is not None and stored.stat().st_size == size:
                objects.append({"oid": oid, "size": size})  # already stored: no actions
                continue
            objects.append({"oid": oid, "size": size, "authenticated": True, "actions": {
                "upload": {"href": f"{self.hub.url}/lfs-upload/{oid}"},
                "verify": {"href": f"{self.hub.url}/{repo}.git/info/lfs/objects/verify"}}})
        self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(),
                   content_type="application/vnd.git-lfs+json")

    def h_lfs_put(self, oid: str) -> None:
        if hashlib.sha256(self.body).hexdigest() != oid:
            raise StoreError(400, f"Uploaded bytes do not hash to sha256 {oid}")
        self.hub.store.put_object(self.body)
        self._send(200)

    def h_lfs_verify(self, repo: str) -> None:
        self._repo(repo, write=True)
        body = self._body_json()
        stored = self.hub.store.object_path(str(body.get("oid")))
        if stored is None or stored.stat().st_size != body.get("size"):
            raise StoreError(404, f"LFS object {body.get('oid')} of size {body.get('size')} was not uploaded")
        self._json({"success": True})

    def h_commit(self, repo: str, rev: str) -> None:
        record = self._repo(repo, write=True)
        self._branch_head(record, rev)
        lines = [json.loads(line) for line in self.body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise StoreError(400, "A commit payload starts with a 'header' line")
        header, ops = lines[0]["value"], []
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            path = _check_path(value.get("path", ""))
            if key not in _OPS:
                raise StoreError(400, f"Unknown commit operation {key!r} for {path!r}")
            ops.append(_OPS[key](self.hub.store, path, value))
        sha = self.hub.store.commit(repo, rev, ops, header.get("summary", ""), header.get("description", ""),
                                    header.get("parentCommit"), self._user().name)
        self._json({"success": True, "commitOid": sha, "commitUrl": f"{self.hub.url}/{repo}/commit/{sha}",
                    "pullRequestUrl": None})

    # -- download ---------------------------------------------------------------------------------------
    def h_resolve(self, repo: str, rev: str, path: str) -> None:
        record = self._repo(repo)
        sha = self.hub.store.resolve(record, rev)
        entry = self.hub.store.files(record, sha).get(path)
        if entry is None:
            raise StoreError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": sha})
        headers = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes",
                   "Content-Disposition": f'inline; filename="{PurePosixPath(path).name}"'}
        if entry.lfs:  # CDN style, as huggingface.co: 302 to another origin, metadata on the redirect
            headers.update({"ETag": f'"{entry.oid}"', "X-Linked-Etag": f'"{entry.sha256}"',
                            "X-Linked-Size": str(entry.size),
                            "Location": f"{self.hub.cdn_url}/lfs-objects/{entry.sha256}"})
            return self._send(302, headers=headers)
        self._send_object(entry.sha256, entry.size, {**headers, "ETag": f'"{entry.oid}"'})

    def h_cdn_get(self, oid: str) -> None:
        stored = self.hub.store.object_path(oid)
        if stored is None:
            raise StoreError(404, "NoSuchKey")
        self._send_object(oid, stored.stat().st_size, {"ETag": f'"{oid}"', "Accept-Ranges": "bytes"})

    def _send_object(self, sha256: str, size: int, headers: dict[str, str]) -> None:
        start, end, status = 0, size - 1, 200
        if match := re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "")):
            if match.group(1):
                start, end = int(match.group(1)), min(int(match.group(2) or size - 1), size - 1)
            else:
                start = max(size - int(match.group(2)), 0)
            if start > end:
                raise StoreError(416, f"Range not satisfiable for a {size}-byte file")
            status, headers = 206, {**headers, "Content-Range": f"bytes {start}-{end}/{size}"}
        data = b"" if self.command == "HEAD" else self.hub.store.read_object(sha256)[start:end + 1]
        self._send(status, data, headers, length=end - start + 1, content_type="application/octet-stream")


# -- helpers ---------------------------------------------------------------------------------------------
def _add_file(store: RepoStore, path: str, value: dict) -> tuple[str, str, Entry]:
    return "add", path, store.entry_for(base64.b64decode(value.get("content", "")), lfs=False)


def _add_lfs_file(store: RepoStore, path: str, value: dict) -> tuple[str, str, Entry]:
    oid = str(value.get("oid"))
    stored = store.object_path(oid)
    if stored is None:
        raise StoreError(422, f"Your push was rejected: LFS object {oid} for {path!r} was never uploaded")
    size = stored.stat().st_size
    if value.get("size") not in (None, size):
        raise StoreError(422, f"LFS object {oid} for {path!r} has size {size}, not {value.get('size')}")
    return "add", path, Entry(sha256=oid, size=size, lfs=True, oid=git_blob_sha1(lfs_pointer(oid, size)))


_OPS: dict[str, Callable[[RepoStore, str, dict], tuple[str, str, Entry | None]]] = {
    "file": _add_file,
    "lfsFile": _add_lfs_file,
    "deletedFile": lambda store, path, value: ("delete", path, None),
    "deletedFolder": lambda store, path, value: ("delete_folder", path, None),
}


def _check_path(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or ".." in parts or parts[0] == ".git":
        raise StoreError(400, f"Invalid path in repo: {path!r}")
    return path


def _directories(files: dict[str, Entry]) -> dict[str, str]:
    """Every folder ("" = root) -> a stable tree oid derived from its files."""
    children: dict[str, list[str]] = {"": []}
    for path, entry in files.items():
        for parent in PurePosixPath(path).parents:
            key = "" if str(parent) == "." else str(parent)
            children.setdefault(key, []).append(f"{path}:{entry.oid}")
    return {d: hashlib.sha1("\n".join(sorted(c)).encode()).hexdigest() for d, c in children.items()}


def _dir_json(path: str, oid: str) -> dict[str, Any]:
    return {"type": "directory", "path": path, "oid": oid, "size": 0}


def _lfs_patterns(gitattributes: str) -> list[str]:
    return [line.split()[0] for line in gitattributes.splitlines() if "filter=lfs" in line and line.split()]


def _matches(path: str, patterns: list[str]) -> bool:
    name = PurePosixPath(path).name
    return any(fnmatch.fnmatch(path if "/" in p else name, p.lstrip("/")) for p in patterns)
