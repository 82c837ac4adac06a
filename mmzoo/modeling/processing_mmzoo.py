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
    modality = "image"  # mmzoo.modalities: what the non-text input is

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

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", "pixel_values"]


class MmzooAudioProcessor(ProcessorMixin):
    """Tokenizes text and turns waveforms into the audio tower's input (``input_features`` for log-mel towers
    such as Whisper's encoder, ``input_values`` for AST / wav2vec2), with the tower family's transformers feature
    extractor (see :mod:`mmzoo.encoders.audio`).

    Args:
        feature_extractor: an HF audio feature extractor (never returns an ``attention_mask``: that name is the
            text's).
        tokenizer: an HF tokenizer.
        max_length (`int`, *optional*): default truncation length of texts.

    ``processor(text=[...], audio=[waveform, ...], sampling_rate=16000)``; ``sampling_rate`` defaults to the
    feature extractor's and must equal it (resample first).
    """

    modality = "audio"

    def __init__(self, feature_extractor=None, tokenizer=None, max_length: int | None = None, **kwargs) -> None:
        self.max_length = max_length
        super().__init__(feature_extractor, tokenizer, **kwargs)

    @property
    def sampling_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    def __call__(self, text=None, audio=None, sampling_rate: int | None = None, padding=True, truncation=True,
                 max_length=None, return_tensors="pt", **kwargs) -> BatchFeature:
        if text is None and audio is None:
            raise ValueError("MmzooAudioProcessor needs `text`, `audio` or both")
        data = {}
        if text is not None:
            data.update(self.tokenizer(
                text, padding=padding, truncation=truncation, max_length=max_length or self.max_length,
                return_tensors=return_tensors, **kwargs,
            ))
        if audio is not None:
            rate = sampling_rate or self.sampling_rate
            if rate != self.sampling_rate:
                raise ValueError(
                    f"audio sampled at {rate} Hz, but this model's feature extractor takes {self.sampling_rate} Hz; "
                    f"resample the waveforms to {self.sampling_rate} Hz (or build the model with "
                    f"feature_extractor: {{sampling_rate: {rate}}})"
                )
            import numpy as np

            clips = [np.asarray(a, dtype=np.float32) for a in (audio if _is_batch(audio) else [audio])]
            features = self.feature_extractor(clips, sampling_rate=rate, return_tensors=return_tensors)
            features.pop("attention_mask", None)
            data.update(features)
        return BatchFeature(data=dict(data), tensor_type=return_tensors)

    @property
    def model_input_names(self) -> list[str]:
        return ["input_ids", "attention_mask", *self.feature_extractor.model_input_names]


def _is_batch(audio) -> bool:
    """A list / tuple of clips, or a 2-D array (one clip per row), rather than one 1-D clip."""
    import numpy as np

    if isinstance(audio, (list, tuple)):
        return len(audio) > 0 and not np.isscalar(audio[0])
    return getattr(audio, "ndim", 1) > 1
