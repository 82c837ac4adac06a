"""The built-in `tones` audio dataset: deterministic, disjoint splits, and captions that describe the signal
(pitch band, sweep direction, two beeps, noise) as measured on the waveform."""

from __future__ import annotations

import numpy as np
import pytest

from mmzoo.data import BuiltinSourceSpec, DataError, load_builtin, load_source
from mmzoo.data.builtin.tones import LABEL_NAMES


@pytest.fixture(scope="module")
def tones():
    return load_builtin("tones", num_samples=110, use_cache=False)


def dominant_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[spectrum.argmax()])


def active(wave: np.ndarray, rate: int) -> np.ndarray:
    """Per 10 ms frame: is the frame clearly above the background noise."""
    frames = wave[: len(wave) // (rate // 100) * (rate // 100)].reshape(-1, rate // 100)
    return np.sqrt((frames ** 2).mean(axis=1)) > 0.05


def test_columns_and_determinism(tones):
    assert tones.column_names == ["audio", "sampling_rate", "captions", "label"]
    assert tones.features["label"].names == LABEL_NAMES and len(LABEL_NAMES) == 11
    assert all(len(a) == 16000 for a in tones["audio"][:5]) and set(tones["sampling_rate"]) == {16000}
    again = load_builtin("tones", num_samples=5, use_cache=False)
    assert again["audio"] == tones["audio"][:5]  # clip i does not depend on num_samples
    assert [c[0] for c in tones["captions"]] == [LABEL_NAMES[label] for label in tones["label"]]
    assert set(tones["label"]) == set(range(11))
    test = load_builtin("tones", num_samples=5, split="test", use_cache=False)
    assert all(a != b for a in test["audio"] for b in tones["audio"])


def test_captions_describe_the_waveform(tones):
    rate = 16000
    for wave, label in zip(tones["audio"], tones["label"]):
        wave, name = np.asarray(wave), LABEL_NAMES[label]
        on = active(wave, rate)
        if name == "a burst of noise":
            spectrum = np.abs(np.fft.rfft(wave)) + 1e-9
            assert np.exp(np.log(spectrum).mean()) / spectrum.mean() > 0.3, "noise has a flat spectrum"
            continue
        segment = wave[np.repeat(on, rate // 100).nonzero()[0]] if on.any() else wave
        f = dominant_hz(segment, rate)
        assert (f < 750) if " low " in f" {name} " else (f > 750), (name, f)
        if "rising" in name or "falling" in name:
            idx = np.repeat(on, rate // 100).nonzero()[0]
            first, second = wave[idx[: len(idx) // 2]], wave[idx[len(idx) // 2:]]
            up = dominant_hz(second, rate) > dominant_hz(first, rate)
            assert up == ("rising" in name), name
        runs = np.diff(np.concatenate([[0], on.astype(int), [0]]))
        assert (runs == 1).sum() == (2 if "beeps" in name else 1), name


def test_tones_through_a_source_spec_and_bad_params():
    ds = load_source(BuiltinSourceSpec(name="tones", split="validation", params={"num_samples": 3, "duration": 0.5}))
    assert len(ds) == 3 and len(ds[0]["audio"]) == 8000
    with pytest.raises(DataError, match="Accepted params: num_samples, split, seed, sampling_rate, duration"):
        load_builtin("tones", image_size=32, use_cache=False)
