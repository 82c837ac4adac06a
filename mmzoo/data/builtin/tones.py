"""tones: generated audio clips (steady, rising and falling tones, beeps, chords, noise bursts) with captions.

Deterministic and offline: clip ``i`` of a split is drawn from ``numpy.random.default_rng((split, seed, i))``, so
the train / validation / test splits are different draws (never the same clip) and a clip does not depend on
``num_samples``. Each clip is one of 11 sound classes (5 kinds x low / high pitch, plus a noise burst) with random
pitch inside its band, timing, loudness and a little background noise.

Columns: audio (list[float32] waveform in [-1, 1], ``duration`` x ``sampling_rate`` samples), sampling_rate (int),
captions (list[str], the first is the class name, e.g. "a high rising tone"), label (ClassLabel, the 11 class
names). The waveform is stored as numbers rather than an encoded ``datasets.Audio`` file: no audio codec
(soundfile / torchcodec) is needed to read it.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

VERSION = 1
KINDS = ("steady tone", "rising tone", "falling tone", "two short beeps", "chord")
PITCHES = {"low": (150.0, 300.0), "high": (800.0, 1600.0)}  # Hz bands of the fundamental
LABEL_NAMES = [f"a {pitch} {kind}" if not kind.startswith("two") else f"two short {pitch} beeps"
               for kind in KINDS for pitch in PITCHES] + ["a burst of noise"]
_SPLIT_CODE = {"train": 0, "validation": 1, "test": 2}
_PHRASES = {
    "steady tone": ["a {p} steady tone", "a constant {p}-pitched note", "one long {p} note"],
    "rising tone": ["a {p} rising tone", "a {p} note sliding up", "a {p}-pitched upward sweep"],
    "falling tone": ["a {p} falling tone", "a {p} note sliding down", "a {p}-pitched downward sweep"],
    "two short beeps": ["two short {p} beeps", "a {p} double beep", "two quick {p}-pitched blips"],
    "chord": ["a {p} chord", "three {p} notes played together", "a {p}-pitched major chord"],
}
_NOISE_PHRASES = ["a burst of noise", "a short hiss", "a crackle of static"]


class TonesParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    num_samples: int = Field(1100, ge=1, le=200_000)
    split: Literal["train", "validation", "test"] = "train"
    seed: int = 0
    sampling_rate: int = Field(16000, ge=1000, le=48000)
    duration: float = Field(1.0, gt=0.05, le=10.0, description="seconds per clip")


def captions(label: int) -> list[str]:
    """The class name first, then two paraphrases."""
    if label == len(LABEL_NAMES) - 1:
        return list(_NOISE_PHRASES)
    kind, pitch = KINDS[label // len(PITCHES)], list(PITCHES)[label % len(PITCHES)]
    phrases = [f.format(p=pitch) for f in _PHRASES[kind]]
    return [LABEL_NAMES[label], *(p for p in phrases if p != LABEL_NAMES[label])][:3]


def _envelope(n: int, attack: int) -> np.ndarray:
    env = np.ones(n)
    attack = max(1, min(attack, n // 2))
    env[:attack] = np.linspace(0.0, 1.0, attack)
    env[-attack:] = np.linspace(1.0, 0.0, attack)
    return env


def clip(label: int, rng: np.random.Generator, sampling_rate: int, duration: float) -> np.ndarray:
    """One waveform of class ``label``."""
    total = int(round(sampling_rate * duration))
    out = np.zeros(total)
    loud = rng.uniform(0.3, 0.8)
    if label == len(LABEL_NAMES) - 1:  # noise burst
        length = int(total * rng.uniform(0.2, 0.5))
        start = rng.integers(0, total - length + 1)
        out[start:start + length] = rng.uniform(-1, 1, length) * _envelope(length, sampling_rate // 200)
    else:
        kind, pitch = KINDS[label // len(PITCHES)], list(PITCHES)[label % len(PITCHES)]
        f0 = rng.uniform(*PITCHES[pitch])
        length = int(total * rng.uniform(0.6, 0.9))
        start = rng.integers(0, total - length + 1)
        t = np.arange(length) / sampling_rate
        if kind in ("rising tone", "falling tone"):
            ratio = rng.uniform(1.6, 2.4)
            f_start, f_end = (f0, f0 * ratio) if kind == "rising tone" else (f0 * ratio, f0)
            freq = f_start * (f_end / f_start) ** (t / t[-1])  # exponential sweep
            wave = np.sin(2 * np.pi * np.cumsum(freq) / sampling_rate)
        elif kind == "chord":  # major triad
            wave = sum(np.sin(2 * np.pi * f0 * r * t + rng.uniform(0, 2 * np.pi)) for r in (1.0, 1.26, 1.5)) / 3
        else:
            wave = np.sin(2 * np.pi * f0 * t + rng.uniform(0, 2 * np.pi))
        wave = wave * _envelope(length, sampling_rate // 100)
        if kind == "two short beeps":  # two beeps with a gap: silence the middle and the tail
            beep = length // 4
            gate = np.zeros(length)
            gate[:beep], gate[2 * beep:3 * beep] = 1.0, 1.0
            wave = wave * gate
        out[start:start + length] = wave
    out = loud * out + rng.normal(0.0, 0.01, total)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def build(p: TonesParams):
    import datasets

    rows: dict[str, list] = {"audio": [], "sampling_rate": [], "captions": [], "label": []}
    for i in range(p.num_samples):
        rng = np.random.default_rng((_SPLIT_CODE[p.split], p.seed, i))
        label = int(rng.integers(len(LABEL_NAMES)))
        rows["audio"].append(clip(label, rng, p.sampling_rate, p.duration))
        rows["sampling_rate"].append(p.sampling_rate)
        rows["captions"].append(captions(label))
        rows["label"].append(label)
    features = datasets.Features({
        "audio": datasets.List(datasets.Value("float32")),
        "sampling_rate": datasets.Value("int32"),
        "captions": datasets.List(datasets.Value("string")),
        "label": datasets.ClassLabel(names=LABEL_NAMES),
    })
    info = datasets.DatasetInfo(description=__doc__.splitlines()[0], features=features)
    return datasets.Dataset.from_dict(rows, info=info, split=p.split)
