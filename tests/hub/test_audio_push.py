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
