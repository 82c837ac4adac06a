"""mmzoo: a declarative model zoo for multimodal transformers on the Hugging Face stack.

`import mmzoo` registers mmzoo's classes with transformers' Auto factories, so
`AutoModel.from_pretrained(dir_or_repo)` works for any saved mmzoo model.
"""

from ._spec_io import load_spec
from .adapters import load_adapters, save_adapters
from .builder import build_config, build_model, build_processor
from .modeling import MmzooConfig, MmzooModel, MmzooProcessor
from .modeling.auto import register_auto_classes
from .presets import list_presets
from .recipe import load_recipe
from .specs import ModelSpec
from .version import __version__

register_auto_classes()


def list_components(kind: str | None = None) -> dict[str, list[str]] | list[str]:
    """Registered tags by kind: fusion, objective, pooling, preset (all kinds when ``kind`` is None)."""
    from .encoders.pooling import POOLERS
    from .presets import PRESETS
    from .specs import FUSION_SPECS, OBJECTIVE_SPECS

    kinds = {
        "fusion": FUSION_SPECS.list(),
        "objective": OBJECTIVE_SPECS.list(),
        "pooling": sorted([*POOLERS.list(), "attention"]),
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
    "ModelSpec",
    "__version__",
    "build_config",
    "build_model",
    "build_processor",
    "list_components",
    "list_presets",
    "load_adapters",
    "load_recipe",
    "load_spec",
    "save_adapters",
]
