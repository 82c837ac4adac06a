"""MmzooProcessor: a tokenizer and an image processor behind one call, saved and loaded with the model."""

from __future__ import annotations

from transformers import BatchFeature, ProcessorMixin


class MmzooProcessor(ProcessorMixin):
    """Tokenizes text and preprocesses images into `input_ids`, `attention_mask` and `pixel_values`.

    Args:
        image_processor: an HF image processor (mmzoo builds a PIL-backed `ViTImageProcessorPil`; no torchvision).
        tokenizer: an HF tokenizer.
        max_length (`int`, *optional*): default truncation length of texts.
    """

    attributes = ["image_processor", "tokenizer"]

    def __init__(self, image_processor=None, tokenizer=None, max_length: int | None = None, **kwargs) -> None:
        self.max_length = max_length
        super().__init__(image_processor, tokenizer, **kwargs)

    def __call__(self, text=None, images=None, padding=True, truncation=True, max_length=None,
                 return_tensors="pt", **kwargs) -> BatchFeature:
        if text is None and images is None:
            raise ValueError("MmzooProcessor needs `text`, `images` or both")
        data = {}
        if text is not None:
            data.update(self.tokenizer(
                text, padding=padding, truncation=truncation, max_length=max_length or self.max_length,
                return_tensors=return_tensors, **kwargs,
            ))
        if images is not None:
            from ..data.images import image_features  # the processor's result, without its per-image detours

            data.update(image_features(self.image_processor, images, return_tensors))
        return BatchFeature(data=dict(data), tensor_type=return_tensors)

    def batch_decode(self, *args, **kwargs):
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args, **kwargs):
        return self.tokenizer.decode(*args, **kwargs)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]
