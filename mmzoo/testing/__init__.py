"""Testing helpers shipped with mmzoo: a loopback Hugging Face Hub and pytest fixtures for it.

``mmzoo.testing.hub_server`` is stdlib-only; ``mmzoo.testing.pytest_plugin`` holds the fixtures.
"""

from .hub_server import DEFAULT_TOKEN, Fault, HubServer

__all__ = ["DEFAULT_TOKEN", "Fault", "HubServer"]
