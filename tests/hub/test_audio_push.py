"""An audio model (mm-clap-tiny trained a few steps on tones) through push_run and the loopback Hub, as image ones."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi, ModelCard, hf_hub_download
from transformers import AutoModel, AutoProcessor

import mmzoo  # noqa: F401  (registers the Auto classes)
from mmzoo.data.builtin.tones import clip
from mmzoo.hub import push_run
from mmzoo.hub.card import code_blocks
from tests.common import BLOCK_MMZOO


def _inputs(processor):
    rng = np.random.default_rng(0)
    audio = [clip(label, rng, processor.sampling_rate, 1.0) for label in (0, 10)]
    return processor(text=["a low steady tone", "a burst of noise"], audio=audio)


@pytest.fixture(scope="module")
def pushed(trained_run, _hub_server_session, tmp_path_factory):
    run = trained_run("clap")
    repo_id = f"{_hub_server_session.user}/clap-tones-tiny"
    push_run(run, repo_id)
    return run, repo_id, tmp_path_factory.mktemp("clap-hub")


def test_push_then_load_gives_identical_outputs(pushed, hub_server):
    run, repo_id, tmp = pushed
    files = set(HfApi().list_repo_files(repo_id))
    assert {"config.json", "model.safetensors", "processor_config.json", "tokenizer.json", "README.md"} <= files
    local, remote = AutoModel.from_pretrained(run).eval(), AutoModel.from_pretrained(repo_id, cache_dir=tmp).eval()
    local_proc, remote_proc = AutoProcessor.from_pretrained(run), AutoProcessor.from_pretrained(repo_id, cache_dir=tmp)
    assert type(remote_proc).__name__ == "MmzooAudioProcessor"
    a, b = _inputs(local_proc), _inputs(remote_proc)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with torch.no_grad():
        expected, got = local(**a), remote(**b)
    for name in ("audio_embeds", "text_embeds", "logits_per_audio"):
        assert torch.equal(expected[name], got[name]), name


def test_card_says_audio(pushed, hub_server):
    _, repo_id, tmp = pushed
    readme = open(hf_hub_download(repo_id, "README.md", cache_dir=tmp / "readme")).read()
    card = ModelCard(readme)
    card.validate()
    assert card.data.pipeline_tag == "feature-extraction"  # the Hub has no zero-shot audio task
    assert 'pipeline("zero-shot-audio-classification"' in readme
    assert {"audio", "audio-text"} <= set(card.data.tags) and "vision-language" not in card.data.tags
    assert "Text→Audio Recall@1" in readme and "Audio-Text Retrieval" in readme and "Image" not in readme.split(
        "## ")[0]


@pytest.mark.slow  # two fresh interpreters (torch + transformers each): kept out of the default suite's budget
def test_card_snippets_run_as_pasted(pushed, _hub_server_session, tmp_path):
    _, repo_id, tmp = pushed
    readme = open(hf_hub_download(repo_id, "README.md", cache_dir=tmp / "readme2")).read()
    blocks = code_blocks(readme)
    assert len(blocks) == 2, blocks  # zero-shot audio classification, then embeddings
    env = {**os.environ, **_hub_server_session.env(hf_home=tmp_path / "hf-home"), "OMP_NUM_THREADS": "1"}
    outputs = []
    for i, code in enumerate(blocks):
        (tmp_path / f"block{i}.py").write_text(code)
        proc = subprocess.run([sys.executable, str(tmp_path / f"block{i}.py")], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"block {i} failed:\n{code}\n{proc.stderr[-3000:]}"
        outputs.append(proc.stdout)
    scores = [float(s) for s in re.findall(r"'score': ([0-9.e+-]+)", outputs[0])]
    assert len(scores) == 2 and sum(scores) == pytest.approx(1.0, abs=1e-5)
    assert re.search(r"torch.Size\(\[1, 32\]\) torch.Size\(\[2, 32\]\)", outputs[1]), outputs[1]


REMOTE_CHILD = BLOCK_MMZOO + '''import numpy as np
import torch
from transformers import AutoModel, AutoProcessor, pipeline

repo_id, out = sys.argv[1], sys.argv[2]
model = AutoModel.from_pretrained(repo_id, trust_remote_code=True).eval()
processor = AutoProcessor.from_pretrained(repo_id, trust_remote_code=True)
rng = np.random.default_rng(0)
audio = [(0.3 * np.sin(2 * np.pi * f * np.arange(16000) / 16000)).astype(np.float32) for f in (200, 1200)]
batch = processor(text=["a low steady tone", "a burst of noise"], audio=audio)
with torch.no_grad():
    result = model(**batch)
classify = pipeline("zero-shot-audio-classification", model=model, tokenizer=processor.tokenizer,
                    feature_extractor=processor.feature_extractor)
scores = classify(audio[0], candidate_labels=["a low steady tone", "a burst of noise"], hypothesis_template="{}")
torch.save({"processor": type(processor).__name__, "batch": dict(batch), "logits": result.logits_per_audio,
            "scores": scores, "mmzoo": sorted(m for m in sys.modules if m.startswith("mmzoo"))}, out)
'''


@pytest.mark.slow  # a fresh interpreter that loads the pushed code
def test_remote_code_push_loads_without_mmzoo(trained_run, _hub_server_session, tmp_path):
    run = trained_run("clap")
    repo_id = f"{_hub_server_session.user}/clap-tones-remote"
    push_run(run, repo_id, remote_code=True)
    (tmp_path / "child.py").write_text(REMOTE_CHILD)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(_hub_server_session.env(hf_home=tmp_path / "hf-home"))
    proc = subprocess.run([sys.executable, str(tmp_path / "child.py"), repo_id, str(tmp_path / "got.pt")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = torch.load(tmp_path / "got.pt", weights_only=False)
    assert got["processor"] == "MmzooAudioProcessor" and got["mmzoo"] == []
    model, processor = AutoModel.from_pretrained(run).eval(), AutoProcessor.from_pretrained(run)
    batch = processor(text=["a low steady tone", "a burst of noise"], audio=[
        (0.3 * np.sin(2 * np.pi * f * np.arange(16000) / 16000)).astype(np.float32) for f in (200, 1200)])
    assert all(torch.equal(batch[k], got["batch"][k]) for k in batch)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits_per_audio, got["logits"])
    assert sum(s["score"] for s in got["scores"]) == pytest.approx(1.0, abs=1e-5)
