"""A small loopback Hugging Face Hub for testing uploads and downloads offline.

It speaks the HTTP protocol of the real ``huggingface_hub`` client (see ``shared/hub-protocol.md`` in the
mmzoo repo) for model repos: repo create/delete/settings, repo info, tree and paths-info listings, refs,
branches and tags, commit history, preupload, legacy git-LFS upload (batch, PUT, verify), NDJSON commits
(atomic), ``resolve`` downloads (LFS files via a 302 to a second "CDN" origin, as on the real Hub),
``whoami-v2`` and ``validate-yaml``. No pull requests, no Xet, no dataset/space repos.

Usage (the client reads ``HF_ENDPOINT`` at import time, so set the environment *before* importing
``huggingface_hub`` or ``transformers``; ``mmzoo.testing.pytest_plugin`` does this for pytest)::

    with HubServer() as hub:
        subprocess.run(["python", "publish.py"], env={**os.environ, **hub.env()}, check=True)
        print(hub.store.get("tester/my-model")["branches"])

Fault injection: ``hub.fail(r"/commit/", status=500, times=1)`` answers the next matching request with
an error; ``hub.drop(r"/lfs-upload/", after_bytes=1024)`` closes the socket mid-body. ``hub.requests``
logs ``(method, path, status)`` for every request (status 0 for a dropped connection).
"""

from __future__ import annotations

import re
import socket
import tempfile
import threading
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path

from ._hub_http import LFS_SIZE_THRESHOLD, Handler, User
from ._hub_store import RepoStore

__all__ = ["DEFAULT_TOKEN", "LFS_SIZE_THRESHOLD", "Fault", "HubServer"]

DEFAULT_TOKEN = "hf_mmzoo_loopback_write_token"


@dataclass
class Fault:
    """An injected failure for requests whose raw path matches ``pattern`` (``re.search``)."""

    pattern: re.Pattern
    method: str | None
    status: int = 500
    drop_after: int | None = None  # close the connection after reading this many body bytes
    times: int | None = 1  # None: forever
    hits: int = 0


class HubServer:
    """Threaded loopback Hub storing repos under ``root`` (a temp folder by default).

    Args:
        root: folder for objects and repo metadata; reopening a root keeps its repos.
        host, port: where the API listens (port 0 picks a free one).
        sock: an already bound, listening socket for the API (lets a caller reserve the port early).
        token, user, orgs: the write token known to the server and its owner; add more with ``add_token``.
        lfs: answer ``uploadMode: "lfs"`` for large/binary/.gitattributes-matched files (the client must
            then run with ``HF_HUB_DISABLE_XET=1``); ``False`` makes every file a regular git blob.
    """

    def __init__(self, root: str | Path | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 sock: socket.socket | None = None, token: str = DEFAULT_TOKEN, user: str = "tester",
                 orgs: tuple[str, ...] = ("testorg",), lfs: bool = True):
        self._tmp = None if root is not None else tempfile.TemporaryDirectory(prefix="mmzoo-hub-")
        self.store = RepoStore(root if root is not None else self._tmp.name)
        self.token, self.user, self.lfs = token, user, lfs
        self.tokens: dict[str, User] = {}
        self.add_token(token, user, orgs)
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self._api = _make_server("api", self, host, port, sock)
        self._cdn = _make_server("cdn", self, host, 0, None)
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._api.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def cdn_url(self) -> str:
        host, port = self._cdn.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "HubServer":
        if not self._threads:
            for server in (self._api, self._cdn):
                thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                          name=f"mmzoo-hub-{server.role}", daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in (self._api, self._cdn):
            if self._threads:
                server.shutdown()
            server.server_close()
        self._threads.clear()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def env(self, hf_home: str | Path | None = None) -> dict[str, str]:
        """Environment for a client process; apply it before ``huggingface_hub`` is imported."""
        env = {
            "HF_ENDPOINT": self.url, "HF_TOKEN": self.token, "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "DISABLE_SAFETENSORS_CONVERSION": "1",
        }
        if hf_home is not None:
            env["HF_HOME"] = str(hf_home)
        return env

    # -- users and faults ------------------------------------------------------------------------------
    def add_token(self, token: str, user: str, orgs: tuple[str, ...] = (), role: str = "write") -> None:
        """Register ``token`` for ``user`` (member of ``orgs``) with role ``"read"`` or ``"write"``."""
        self.tokens[token] = User(user, tuple(orgs), role)

    def fail(self, pattern: str, *, status: int = 500, times: int | None = 1, method: str | None = None) -> Fault:
        """Answer the next ``times`` requests matching ``pattern`` (and ``method``) with ``status``."""
        return self._add_fault(Fault(re.compile(pattern), method, status=status, times=times))

    def drop(self, pattern: str, *, after_bytes: int = 0, times: int | None = 1, method: str | None = None) -> Fault:
        """Close the socket of matching requests after reading ``after_bytes`` of their body."""
        return self._add_fault(Fault(re.compile(pattern), method, drop_after=after_bytes, times=times))

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def _add_fault(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.method in (None, method) and fault.pattern.search(path) and fault.times != 0:
                    fault.hits += 1
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None


def _make_server(role: str, hub: HubServer, host: str, port: int, sock: socket.socket | None):
    server = ThreadingHTTPServer((host, port), Handler, bind_and_activate=sock is None)
    if sock is not None:
        server.socket.close()
        server.socket, server.server_address = sock, sock.getsockname()
    server.daemon_threads = True
    server.role, server.hub = role, hub
    return server


