"""pytest fixtures for :class:`~mmzoo.testing.HubServer`.

``huggingface_hub`` and ``transformers`` read ``HF_ENDPOINT`` (and ``HF_HOME``, ``HF_HUB_DISABLE_XET``) when
they are imported, and importing this module imports ``mmzoo``. So a test session must put the Hub
environment in place first, in its root ``conftest.py``, and only then load this plugin::

    # conftest.py
    import os, socket, tempfile
    _hub_socket = socket.create_server(("127.0.0.1", 0))  # reserve the port now, serve it lazily
    os.environ.update({"HF_ENDPOINT": "http://127.0.0.1:%d" % _hub_socket.getsockname()[1],
                       "HF_TOKEN": "hf_mmzoo_loopback_write_token", "HF_HOME": tempfile.mkdtemp(),
                       "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1"})
    pytest_plugins = ["mmzoo.testing.pytest_plugin"]

    @pytest.fixture(scope="session")
    def hub_server_socket():
        return _hub_socket

Fixtures: ``hub_server`` (the session's server, faults cleared after each test), ``hub_repo_id`` (a fresh
``user/name`` per test) and ``hub_fast_retries`` (makes the client's retry back-off instant).
"""

from __future__ import annotations

import os
import re
import sys
import time
import uuid
from types import SimpleNamespace
from typing import Iterator

import pytest

from .hub_server import DEFAULT_TOKEN, HubServer


def check_client_endpoint(server: HubServer) -> None:
    """Raise if an already imported ``huggingface_hub`` points somewhere other than ``server``."""
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None and constants.ENDPOINT != server.url:
        raise RuntimeError(
            f"huggingface_hub was imported with endpoint {constants.ENDPOINT!r}, but the loopback Hub listens on "
            f"{server.url!r}. Set HF_ENDPOINT before anything imports huggingface_hub/transformers (see "
            "mmzoo.testing.pytest_plugin's docstring); changing it afterwards has no effect."
        )
    if constants is not None and server.lfs and not constants.HF_HUB_DISABLE_XET:
        constants.HF_HUB_DISABLE_XET = True  # honoured at runtime; Xet would bypass the LFS endpoints


@pytest.fixture(scope="session")
def hub_server_socket():
    """A pre-bound listening socket for the Hub API; override it in conftest.py (see module docstring)."""
    return None


@pytest.fixture(scope="session")
def _hub_server_session(hub_server_socket, tmp_path_factory) -> Iterator[HubServer]:
    server = HubServer(tmp_path_factory.mktemp("loopback-hub"), sock=hub_server_socket,
                       token=os.environ.get("HF_TOKEN") or DEFAULT_TOKEN)
    with server:
        check_client_endpoint(server)
        yield server


@pytest.fixture
def hub_server(_hub_server_session: HubServer) -> Iterator[HubServer]:
    """The session's loopback Hub; injected faults and the request log are reset after each test."""
    yield _hub_server_session
    _hub_server_session.clear_faults()
    _hub_server_session.requests.clear()


@pytest.fixture
def hub_repo_id(hub_server: HubServer, request) -> str:
    """A repo id no other test uses, in the server user's namespace (the repo is not created)."""
    name = re.sub(r"[^A-Za-z0-9_]+", "-", request.node.name)[:60].strip("-")
    return f"{hub_server.user}/{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def hub_fast_retries(monkeypatch) -> None:
    """Skip the client's retry sleeps (1, 2, 4, 8, 8 s) and mmzoo's push back-off while keeping its retry logic."""
    from huggingface_hub.utils import _http

    monkeypatch.setattr(_http, "time", SimpleNamespace(sleep=lambda seconds: None, time=time.time))
    monkeypatch.setenv("MMZOO_HUB_RETRY_DELAY", "0")  # mmzoo.hub.push's own back-off between tries
