"""Services a lower layer uses and a higher layer provides (dependency inversion, so imports only point down).

Training evaluates, publishes and draws pictures, and an adapter-only folder is loaded onto a base model built
from its spec; the code for those lives above the callers (``mmzoo.eval``, ``mmzoo.hub``, ``mmzoo.builder``). The
package's ``__init__`` (the top layer) provides them here by name at import; callers ask for them with
:func:`service` and accept their own (``train(evaluate=..., publish=..., illustrate=...)``). No torch here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# name -> factory returning the service (called on first use, so providing one imports nothing)
_PROVIDERS: dict[str, Callable[[], Any]] = {}


def provide(name: str, factory: Callable[[], Any]) -> None:
    """Provide service ``name``: ``factory()`` returns it when it is first asked for."""
    _PROVIDERS[name] = factory


def service(name: str) -> Any:
    """The provided service ``name``; a clear error when nothing provided it."""
    factory = _PROVIDERS.get(name)
    if factory is None:
        raise LookupError(
            f"no {name!r} service is provided (known: {sorted(_PROVIDERS)}); `import mmzoo` provides mmzoo's own, "
            "or pass the callable explicitly"
        )
    return factory()
