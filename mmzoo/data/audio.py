"""Batch audio-caption rows into model inputs with an audio processor (``MmzooAudioProcessor``).

Rows hold ``audio`` (a waveform: list / 1-D array of floats, or a ``datasets.Audio`` dict with ``array`` and
``sampling_rate``), ``sampling_rate`` (int, optional when the audio dict carries it) and ``captions``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from .collator import CaptionSampling, ImageTextCollator, _captions


def waveform(row: dict[str, Any], i: int):
    """``(float32 waveform, sampling_rate or None)`` of a row's ``audio``."""
    import numpy as np

    audio = row.get("audio")
    rate = row.get("sampling_rate")
    if isinstance(audio, dict):  # datasets.Audio decoded
        audio, rate = audio.get("array"), audio.get("sampling_rate", rate)
    if audio is None or np.ndim(audio) != 1 or len(audio) == 0:
        raise ValueError(
            f"batch row {i}: 'audio' must be a non-empty mono waveform (list or 1-D array of floats), got "
            f"{type(audio).__name__} (row keys: {sorted(row)}). With transformers.Trainer set remove_unused_columns=False"
        )
    return np.asarray(audio, dtype=np.float32), (int(rate) if rate is not None else None)


class AudioTextCollator(ImageTextCollator):
    """Pick captions as :class:`~mmzoo.data.ImageTextCollator` does, then run ``processor(text=..., audio=...,
    sampling_rate=...)``: ``input_ids``, ``attention_mask`` and the audio tower's input (``input_features`` or
    ``input_values``), plus ``audio_ids`` (each text's clip index) for ``caption_sampling="all"``.

    All clips of a batch must share one sampling rate (the feature extractor's; resample first otherwise).
    """

    def __init__(self, processor: Callable[..., Any], max_length: int | None = None,
                 caption_sampling: CaptionSampling = "random", seed: int = 0,
                 padding: Literal["max_length", "longest"] | None = None) -> None:
        super().__init__(processor, max_length, caption_sampling, seed, padding)

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        if not rows:
            raise ValueError("AudioTextCollator got an empty batch")
        clips, rates, texts, owners = [], set(), [], []
        for i, row in enumerate(rows):
            wave, rate = waveform(row, i)
            clips.append(wave)
            rates.add(rate)
            picked = self._pick(_captions(row, i))
            texts += picked
            owners += [i] * len(picked)
        if len(rates) > 1:
            raise ValueError(f"a batch mixes sampling rates {sorted(r for r in rates if r)}; resample the audio "
                             "to one rate (the model's feature extractor's)")
        kwargs = {"truncation": True, "padding": self.padding, "return_tensors": "pt"}
        if self.max_length is not None:
            kwargs["max_length"] = self.max_length
        encoded = self.processor(text=texts, audio=clips, sampling_rate=rates.pop(), **kwargs)
        batch = {key: value for key, value in encoded.items() if key != "token_type_ids" or value is not None}
        if self.caption_sampling == "all":
            batch["audio_ids"] = torch.tensor(owners, dtype=torch.long)
        return batch


def _pair_collators():
    from .._registry import Registry

    registry: Registry[type[ImageTextCollator]] = Registry("pair collator")
    registry.register("image", ImageTextCollator)
    registry.register("audio", AudioTextCollator)
    return registry


# modality name (mmzoo.modalities) -> the collator of (that modality, caption) pairs
PAIR_COLLATORS = _pair_collators()
