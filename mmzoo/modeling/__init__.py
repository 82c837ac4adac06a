from .configuration_mmzoo import MmzooConfig, MmzooSiglipConfig, config_class_for
from .modeling_mmzoo import MmzooForZeroShotImageClassification, MmzooModel, MmzooPreTrainedModel
from .outputs import MmzooOutput
from .processing_mmzoo import MmzooProcessor

__all__ = [
    "MmzooConfig",
    "MmzooForZeroShotImageClassification",
    "MmzooModel",
    "MmzooOutput",
    "MmzooPreTrainedModel",
    "MmzooProcessor",
    "MmzooSiglipConfig",
    "config_class_for",
]
