"""Audio as a modality: towers of the audio families, the processor, pair logits, losses, save / load, pipeline."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import mmzoo
from mmzoo.data.builtin.tones import LABEL_NAMES, clip
from mmzoo.errors import SpecError
from mmzoo.specs import ModelSpec

TEXT = {"modality": "text", "tokenizer": "mmzoo:wordpiece-basic", "pooling": "mean",
        "config": {"model_type": "bert", "vocab_size": 300, "hidden_size": 32, "num_hidden_layers": 1,
                   "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 64}}
# one tiny tower per audio family (inline configs: nothing is downloaded)
FAMILIES = {
    "whisper": {"model_type": "whisper", "num_mel_bins": 16, "d_model": 32, "encoder_layers": 1,
                "encoder_attention_heads": 4, "encoder_ffn_dim": 64, "max_source_positions": 25},
    "ast": {"model_type": "audio-spectrogram-transformer", "num_mel_bins": 16, "max_length": 50, "hidden_size": 32,
            "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 64, "patch_size": 8,
            "frequency_stride": 8, "time_stride": 8},
    "wav2vec2": {"model_type": "wav2vec2", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
                 "intermediate_size": 64, "conv_dim": [16, 16], "conv_stride": [5, 4], "conv_kernel": [10, 8],
                 "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4, "do_stable_layer_norm": True,
                 "mask_time_prob": 0.0, "layerdrop": 0.0},  # no SpecAugment embedding, no random layer skipping
    "clap": {"model_type": "clap_audio_model", "num_mel_bins": 16, "spec_size": 32, "patch_size": 4,
             "patch_stride": [4, 4], "window_size": 2, "hidden_size": 32, "patch_embeds_hidden_size": 8,
             "depths": [1, 1], "num_attention_heads": [2, 2], "enable_fusion": False},
}
INPUT = {"whisper": "input_features", "ast": "input_values", "wav2vec2": "input_values", "clap": "input_features"}
EXTRACTOR = {"clap": {"hop_length": 320, "max_length_s": 1, "fft_window_size": 400}}  # <= 64 frames of 16 bins


def audio_spec(family: str = "whisper", **extra) -> dict:
    return {"name": f"clap-{family}-tiny", "projection_dim": 16,
            "encoders": [TEXT, {"modality": "audio", "config": FAMILIES[family], "pooling": "mean",
                                "feature_extractor": {"sampling_rate": 16000, **EXTRACTOR.get(family, {})}}],
            "objectives": [{"type": "contrastive"}], **extra}


def clips(n: int, rate: int = 16000, seconds: float = 0.5) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [clip(i % len(LABEL_NAMES), rng, rate, seconds) for i in range(n)]


@pytest.fixture(scope="module")
def whisper_model():
    torch.manual_seed(0)
    return mmzoo.build_model(audio_spec()).eval(), mmzoo.build_processor(audio_spec())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_builds_and_aligns_with_text(family):
    spec = audio_spec(family)
    model, processor = mmzoo.build_model(spec), mmzoo.build_processor(spec)
    assert type(processor).__name__ == "MmzooAudioProcessor"
    assert model.audio_tower.model.main_input_name == INPUT[family] and not hasattr(model, "vision_tower")
    batch = processor(text=["a high rising tone", "a burst of noise", "a low chord"], audio=clips(3))
    assert INPUT[family] in batch and "attention_mask" in batch and batch["attention_mask"].shape[0] == 3
    out = model(**batch, return_loss=True)
    assert out.logits_per_audio.shape == (3, 3) and torch.allclose(out.logits_per_text, out.logits_per_audio.t())
    assert out.audio_embeds.shape == (3, 16) and out.loss.requires_grad
    out.loss.backward()
    assert all(p.grad is not None for p in model.audio_tower.parameters() if p.requires_grad)
    model.eval()  # no dropout: the same embeddings from forward and from get_audio_features
    with torch.no_grad():
        features = model.get_audio_features(**{INPUT[family]: batch[INPUT[family]]}).pooler_output
        embeds = model(**batch).audio_embeds
    assert torch.allclose(torch.nn.functional.normalize(features, dim=-1), embeds, atol=1e-6)


def test_whisper_tower_is_the_encoder_only(whisper_model):
    model, processor = whisper_model
    assert type(model.audio_tower.model).__name__ == "WhisperEncoder"
    assert processor.feature_extractor.sampling_rate == 16000
    # the feature extractor is sized from the tower: 2 x max_source_positions frames
    assert processor(audio=clips(1))["input_features"].shape == (1, 16, 50)


def test_pair_logits_are_the_scaled_cosines(whisper_model):
    model, processor = whisper_model
    with torch.no_grad():
        out = model(**processor(text=["a high chord", "two short low beeps"], audio=clips(3)))
    scale = model.objectives["contrastive"].scale()
    assert out.logits_per_audio.shape == (3, 2)
    assert torch.allclose(out.logits_per_audio, scale * out.audio_embeds @ out.text_embeds.t(), atol=1e-5)


def test_audio_spec_rules():
    with pytest.raises(Exception, match="fusion.type 'cross_attention'.*dual_encoder"):
        ModelSpec.from_dict(audio_spec(fusion={"type": "cross_attention"}, objectives=[{"type": "itm"}]))
    with pytest.raises(Exception, match="objectives.1.*'mlm'.*audio"):
        ModelSpec.from_dict({**audio_spec(), "fusion": {"type": "dual_encoder"},
                             "objectives": [{"type": "contrastive"}, {"type": "mlm"}]})
    with pytest.raises(Exception, match="feature_extractor.*audio encoders only"):
        ModelSpec.from_dict({**audio_spec(), "encoders": [{**TEXT, "feature_extractor": {}}, audio_spec()["encoders"][1]]})
    image = {"modality": "image", "config": {"model_type": "vit"}}
    with pytest.raises(Exception, match=r"need one text encoder and one image or audio encoder, missing \['text'\]"):
        ModelSpec.from_dict({**audio_spec(), "encoders": [audio_spec()["encoders"][1], image]})
    with pytest.raises(Exception, match="not an audio tower mmzoo knows"):
        mmzoo.build_processor({**audio_spec(), "encoders": [TEXT, {"modality": "audio", "config": {"model_type": "bert"}}]})


def test_processor_refuses_another_sampling_rate(whisper_model):
    _, processor = whisper_model
    with pytest.raises(ValueError, match="8000 Hz.*16000 Hz.*resample"):
        processor(audio=clips(1, rate=8000), sampling_rate=8000)


def test_text_image_audio_model_builds_and_sums_both_losses():
    spec = audio_spec()
    spec["encoders"].append({"modality": "image", "pooling": "mean", "config": {
        "model_type": "vit", "image_size": 16, "patch_size": 8, "hidden_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 4, "intermediate_size": 64}})
    torch.manual_seed(0)
    model = mmzoo.build_model(spec).eval()
    assert hasattr(model, "vision_tower") and hasattr(model, "audio_tower")
    texts = mmzoo.build_processor(spec)(text=["a red circle", "a high chord"], images=[
        __import__("PIL.Image").Image.new("RGB", (16, 16))] * 2)
    audio = mmzoo.build_audio_processor(spec)(audio=clips(2))
    with torch.no_grad():
        both = model(**texts, **audio, return_loss=True)
        image_only = model(**texts, return_loss=True)
        audio_only = model(input_ids=texts["input_ids"], attention_mask=texts["attention_mask"], **audio,
                           return_loss=True)
    assert torch.allclose(both.loss, image_only.loss + audio_only.loss)
    assert set(both.loss_terms) == {"contrastive", "audio_contrastive"}
    assert torch.equal(both.logits_per_text, image_only.logits_per_text)
    assert torch.equal(both.logits_per_audio, audio_only.logits_per_audio)


def test_processor_round_trip(whisper_model, tmp_path):
    from transformers import AutoProcessor

    _, processor = whisper_model
    processor.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert type(loaded) is type(processor) and loaded.max_length == processor.max_length
    a, b = processor(text=["a low chord"], audio=clips(2)), loaded(text=["a low chord"], audio=clips(2))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


FRESH = """
import json, sys, numpy as np, torch
from transformers import AutoModel, AutoProcessor
import mmzoo  # registers the Auto classes
model, processor = AutoModel.from_pretrained(sys.argv[1]).eval(), AutoProcessor.from_pretrained(sys.argv[1])
inputs = {k: torch.tensor(v) for k, v in json.load(open(sys.argv[2])).items()}
with torch.no_grad():
    out = model(**inputs)
torch.save({"audio_embeds": out.audio_embeds, "logits_per_audio": out.logits_per_audio,
            "type": type(model).__name__, "processor": type(processor).__name__}, sys.argv[3])
"""


def test_from_pretrained_in_a_fresh_process_gives_identical_outputs(whisper_model, tmp_path):
    model, processor = whisper_model
    model.save_pretrained(tmp_path / "model")
    processor.save_pretrained(tmp_path / "model")
    batch = processor(text=["a high rising tone", "a burst of noise"], audio=clips(2))
    (tmp_path / "inputs.json").write_text(json.dumps({k: v.tolist() for k, v in batch.items()}))
    with torch.no_grad():
        expected = model(**batch)
    subprocess.run([sys.executable, "-c", FRESH, str(tmp_path / "model"), str(tmp_path / "inputs.json"),
                    str(tmp_path / "out.pt")], check=True, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    got = torch.load(tmp_path / "out.pt")
    assert got["type"] == "MmzooModel" and got["processor"] == "MmzooAudioProcessor"
    assert torch.equal(got["audio_embeds"], expected.audio_embeds)
    assert torch.equal(got["logits_per_audio"], expected.logits_per_audio)


def test_zero_shot_audio_pipeline_scores_sum_to_one(whisper_model):
    from transformers import pipeline

    model, processor = whisper_model
    classify = pipeline("zero-shot-audio-classification", model=model, tokenizer=processor.tokenizer,
                        feature_extractor=processor.feature_extractor)
    labels = ["a high chord", "a low steady tone", "a burst of noise"]
    audio = clips(1)[0]
    result = classify(audio, candidate_labels=labels, hypothesis_template="{}")
    assert sorted(r["label"] for r in result) == sorted(labels)
    assert sum(r["score"] for r in result) == pytest.approx(1.0, abs=1e-6)
    with torch.no_grad():  # the pipeline's scores are the model's softmax over the labels
        expected = model(**processor(text=labels, audio=[audio])).logits_per_audio.softmax(-1)[0]
    assert [r["score"] for r in result] == pytest.approx(sorted(expected.tolist(), reverse=True), abs=1e-5)


def test_get_audio_features_without_an_audio_tower_is_a_clear_error():
    model = mmzoo.build_model("mm-clip-tiny")
    with pytest.raises(SpecError, match="no audio tower"):
        model.encode_audio(input_features=torch.zeros(1, 16, 50))


def test_a_pretrained_whisper_checkpoint_loads_into_the_encoder_tower(tmp_path):
    """`model:` + `pretrained: true` with a full Whisper (encoder-decoder) checkpoint: the tower gets its encoder."""
    from transformers import WhisperConfig, WhisperModel

    config = WhisperConfig(**{k: v for k, v in FAMILIES["whisper"].items() if k != "model_type"}, decoder_layers=1,
                           decoder_attention_heads=4, decoder_ffn_dim=64, vocab_size=64, pad_token_id=0,
                           bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    torch.manual_seed(1)
    WhisperModel(config).save_pretrained(tmp_path / "whisper")
    spec = audio_spec()
    spec["encoders"][1] = {**spec["encoders"][1], "config": None, "model": str(tmp_path / "whisper"), "pretrained": True}
    model = mmzoo.build_model(spec)
    reference = WhisperModel.from_pretrained(tmp_path / "whisper").encoder.state_dict()
    loaded = model.audio_tower.model.state_dict()
    assert loaded.keys() == reference.keys() and all(torch.equal(loaded[k], reference[k]) for k in reference)
    # without a saved preprocessor config the extractor is sized from the tower config; with one, it is the saved one
    assert mmzoo.build_processor(spec).feature_extractor.n_samples == 50 * 160
    from transformers import WhisperFeatureExtractor

    WhisperFeatureExtractor(feature_size=16, chunk_length=1, padding_value=0.5).save_pretrained(tmp_path / "whisper")
    saved = mmzoo.build_processor(spec).feature_extractor
    assert saved.padding_value == 0.5 and saved.sampling_rate == 16000 and saved.return_attention_mask is False
