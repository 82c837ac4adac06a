from .configuration_mmzoo import MmzooConfig, MmzooSiglipConfig, config_class_for
from .heads import MmzooForConditionalGeneration, MmzooForVisualQuestionAnswering  # adds Auto pairs on import
from .modeling_mmzoo import MmzooForZeroShotImageClassification, MmzooModel, MmzooPreTrainedModel
from .outputs import MmzooOutput
from .processing_mmzoo import MmzooAudioProcessor, MmzooProcessor

__all__ = [
    "MmzooAudioProcessor",
    "MmzooConfig",
    "MmzooForConditionalGeneration",
    "MmzooForVisualQuestionAnswering",
    "MmzooForZeroShotImageClassification",
    "MmzooModel",
    "MmzooOutput",
    "MmzooPreTrainedModel",
    "MmzooProcessor",
    "MmzooSiglipConfig",
    "config_class_for",
]
