"""mmzoo: a declarative model zoo for multimodal transformers on the Hugging Face stack.

`import mmzoo` registers mmzoo's classes with transformers' Auto factories, so
`AutoModel.from_pretrained(dir_or_repo)` works for any saved mmzoo model.
"""

import sys as _sys
from pathlib import Path as _Path

from .version import __version__

# public name -> module that defines it (imported on first use in the light mode below)
_LAZY = {
    "load_spec": "._spec_io", "build_config": ".builder", "build_model": ".builder", "build_processor": ".builder",
    "build_audio_processor": ".builder",
    "MmzooConfig": ".modeling", "MmzooModel": ".modeling", "MmzooProcessor": ".modeling",
    "MmzooAudioProcessor": ".modeling",
    "list_presets": ".presets", "load_recipe": ".recipe", "ModelSpec": ".specs",
    "load_adapters": ".adapters", "save_adapters": ".adapters",
}


def _cli_process() -> bool:
    """True in the ``mmzoo`` command (console script or ``python -m mmzoo.cli``): it starts without torch and
    transformers, and loads them only for the subcommands that need them (:func:`load`)."""
    argv = list(getattr(_sys, "orig_argv", _sys.argv))
    if _sys.argv and _Path(_sys.argv[0]).name in ("mmzoo", "mmzoo.exe", "mmzoo-script.py"):
        return True
    return "-m" in argv and argv[argv.index("-m") + 1:argv.index("-m") + 2] in (["mmzoo.cli"], ["mmzoo"])


def load() -> None:
    """Import the model stack and register mmzoo's classes with transformers' Auto factories (idempotent;
    ``import mmzoo`` does this, except in the light start of the ``mmzoo`` command)."""
    import importlib

    from .modeling.auto import register_auto_classes

    for name, module in _LAZY.items():
        globals()[name] = getattr(importlib.import_module(module, __name__), name)
    register_auto_classes()


def __getattr__(name: str):
    if name in _LAZY:
        load()
        return globals()[name]
    raise AttributeError(f"module 'mmzoo' has no attribute {name!r}")


def _provide_services() -> None:
    """The services lower layers ask for (:mod:`mmzoo.utils.services`), from the layers that own them; providing
    imports nothing (each factory imports its module when the service is first used)."""
    from .utils.services import provide

    def evaluate():
        from .eval import run_evaluation

        return run_evaluation

    def publish():
        from .hub.push import publish_run

        return publish_run

    def illustrate():
        from .hub.pictures import write_pictures

        return write_pictures

    def build_model():
        from .builder import build_model as build

        return build

    def vqa_answer_normalizer():
        from .eval.metrics import metric_module

        return metric_module("vqa_accuracy").normalize_answer

    for name, factory in (("evaluate", evaluate), ("publish", publish), ("illustrate", illustrate),
                          ("build_model", build_model),
                          ("vqa_answer_normalizer", vqa_answer_normalizer)):
        provide(name, factory)


_provide_services()
if not _cli_process():
    load()


def list_components(kind: str | None = None) -> dict[str, list[str]] | list[str]:
    """Registered tags by kind: fusion, objective, pooling, preset (all kinds when ``kind`` is None)."""
    from .encoders.pooling import POOLERS
    from .presets import PRESETS
    from .specs import FUSION_SPECS, OBJECTIVE_SPECS

    kinds = {
        "fusion": FUSION_SPECS.list(),
        "objective": OBJECTIVE_SPECS.list(),
        "pooling": POOLERS.list(),
        "preset": PRESETS.list(),
    }
    if kind is None:
        return kinds
    if kind not in kinds:
        raise ValueError(f"unknown component kind {kind!r}; use one of {sorted(kinds)}")
    return kinds[kind]

__all__ = [
    "MmzooConfig",
    "MmzooModel",
    "MmzooProcessor",
    "MmzooAudioProcessor",
    "ModelSpec",
    "__version__",
    "build_config",
    "build_model",
    "build_processor",
    "build_audio_processor",
    "list_components",
    "list_presets",
    "load_adapters",
    "load_recipe",
    "load_spec",
    "save_adapters",
]
