"""mmzoo: a declarative model zoo for multimodal transformers on the Hugging Face stack.

`import mmzoo` registers mmzoo's classes with transformers' Auto factories, so
`AutoModel.from_pretrained(dir_or_repo)` works for any saved mmzoo model.
"""

from ._spec_io import load_spec
from .builder import build_config, build_model, build_processor
from .modeling import MmzooConfig, MmzooModel, MmzooProcessor
from .modeling.auto import register_auto_classes
from .presets import list_presets
from .specs import ModelSpec
from .version import __version__

register_auto_classes()

__all__ = [
    "MmzooConfig",
    "MmzooModel",
    "MmzooProcessor",
    "ModelSpec",
    "__version__",
    "build_config",
    "build_model",
    "build_processor",
    "list_presets",
    "load_spec",
]
