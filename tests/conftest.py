"""Session-wide test setup.

The loopback Hub environment comes first: huggingface_hub/transformers read HF_ENDPOINT, HF_HOME and
HF_HUB_DISABLE_XET at import time, so they are set here before any test module (or mmzoo) imports them.
The port is reserved now with a bound socket; the server starts only if a test uses a hub fixture.
"""

import atexit
import os
import shutil
import socket
import tempfile

import pytest

_hub_socket = socket.create_server(("127.0.0.1", 0))
_hf_home = tempfile.mkdtemp(prefix="mmzoo-tests-hf-home-")
atexit.register(shutil.rmtree, _hf_home, ignore_errors=True)
os.environ.update(
    {
        "HF_ENDPOINT": f"http://127.0.0.1:{_hub_socket.getsockname()[1]}",
        "HF_TOKEN": "hf_mmzoo_loopback_write_token",
        "HF_HOME": _hf_home,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "DISABLE_SAFETENSORS_CONVERSION": "1",
    }
)

pytest_plugins = ["mmzoo.testing.pytest_plugin"]


@pytest.fixture(scope="session")
def hub_server_socket():
    """Hands the socket reserved above to mmzoo.testing.pytest_plugin's hub_server fixture."""
    return _hub_socket
