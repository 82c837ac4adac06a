"""A *trained* captioner generates the same captions after loading: in a fresh process through
``AutoModelForImageTextToText.from_pretrained(dir)``, and from the remote-code export with mmzoo unimportable
(``trust_remote_code=True``); its captions stop at the end token (SEP, then only padding).

The captioner trains for a few dozen steps on single-shape scenes: enough to learn the caption template and the
closing SEP (an untrained decoder never emits SEP, so "stops at the end token" would not be tested by it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mmzoo
from mmzoo.builder import save_pretrained
from mmzoo.data import load_builtin
from mmzoo.hub.remote_code import export_remote_code
from mmzoo.modeling import MmzooForConditionalGeneration
from tests.common import BLOCK_MMZOO, SHAPES_TOWERS

SPEC = {
    "name": "captioner-trained",
    **SHAPES_TOWERS,
    "fusion": {"type": "dual_encoder"},
    "objectives": [{"type": "contrastive", "init_temperature": 0.1},
                   {"type": "captioning", "num_layers": 1, "num_heads": 4, "max_length": 32, "dropout": 0.0}],
}
MAX_NEW_TOKENS = 24

FRESH = """
import json, sys, torch
{prelude}
from transformers import AutoModelForImageTextToText
model = AutoModelForImageTextToText.from_pretrained(sys.argv[1], {kwargs}).eval()
pixel_values = torch.load(sys.argv[2])
ids = model.generate(pixel_values=pixel_values, max_new_tokens={max_new_tokens})
print(json.dumps([type(model).__module__, type(model).__name__, ids.tolist()]))
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run folder, pixel values of held-out scenes, in-memory generated ids, tokens) after 60 steps."""
    torch.manual_seed(0)
    model, processor = mmzoo.build_model(SPEC), mmzoo.build_processor(SPEC)
    ds = load_builtin("shapes", split="train", num_samples=140, min_shapes=1, max_shapes=1, image_size=48)
    batch = processor(text=[c[0] for c in ds["captions"]], images=list(ds["image"]), return_tensors="pt")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(60):
        idx = torch.randperm(len(ds), generator=g)[:32]
        out = model(input_ids=batch["input_ids"][idx], attention_mask=batch["attention_mask"][idx],
                    pixel_values=batch["pixel_values"][idx], return_loss=True)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    model.eval()
    run = save_pretrained(model, processor, tmp_path_factory.mktemp("captioner") / "run")
    test = load_builtin("shapes", split="test", num_samples=6, min_shapes=1, max_shapes=1, image_size=48)
    pixel_values = processor(images=list(test["image"]), return_tensors="pt")["pixel_values"]
    torch.save(pixel_values, run.parent / "pixels.pt")
    in_memory = MmzooForConditionalGeneration(model.config).eval()
    in_memory.load_state_dict(model.state_dict(), strict=False)  # the trained weights, never saved and loaded
    with torch.no_grad():
        ids = in_memory.generate(pixel_values=pixel_values, max_new_tokens=MAX_NEW_TOKENS).tolist()
    return run, ids, model.config.tokens, processor


def _generate_in_child(folder: Path, pixels: Path, remote_code: bool, hf_home: Path) -> tuple[str, str, list]:
    source = FRESH.format(prelude=BLOCK_MMZOO if remote_code else "import mmzoo", max_new_tokens=MAX_NEW_TOKENS,
                          kwargs="trust_remote_code=True" if remote_code else "")
    env = {k: v for k, v in os.environ.items() if not (remote_code and k == "PYTHONPATH")}
    if not remote_code:
        env["PYTHONPATH"] = str(Path(mmzoo.__file__).parents[1])
    env.update(HF_HOME=str(hf_home), HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", source, str(folder), str(pixels)], capture_output=True, text=True,
                         env=env, cwd=folder.parent, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    return tuple(json.loads(out.stdout.strip().splitlines()[-1]))


def test_trained_captions_stop_at_the_end_token(trained):
    run, ids, tokens, processor = trained
    start, end, pad = tokens["cls_token_id"], tokens["sep_token_id"], tokens["pad_token_id"]
    for row in ids:
        assert row[0] == start and end in row, f"caption does not stop at SEP within {MAX_NEW_TOKENS} tokens: {row}"
        after = row[row.index(end) + 1:]
        assert all(t == pad for t in after), f"tokens after SEP must be padding: {row}"
    lengths = {row.index(end) for row in ids}
    assert max(lengths) < MAX_NEW_TOKENS  # stopped early, not cut by the limit
    texts = processor.batch_decode(torch.tensor(ids), skip_special_tokens=True)
    assert all(text.startswith("a ") for text in texts), texts  # the learnt template, not noise


def test_trained_captioner_generates_the_same_in_a_fresh_process(trained, tmp_path):
    run, ids, _, _ = trained
    config = json.loads((run / "config.json").read_text())
    assert config["architectures"] == ["MmzooForConditionalGeneration"]
    module, name, got = _generate_in_child(run, run.parent / "pixels.pt", remote_code=False, hf_home=tmp_path)
    assert name == "MmzooForConditionalGeneration" and module.startswith("mmzoo.")
    assert got == ids


def test_remote_code_export_generates_the_same_without_mmzoo(trained, tmp_path):
    run, ids, _, _ = trained
    exported = tmp_path / "exported"
    shutil.copytree(run, exported)
    export_remote_code(exported)
    config = json.loads((exported / "config.json").read_text())
    assert config["architectures"] == ["MmzooForConditionalGeneration"]
    assert config["auto_map"]["AutoModelForImageTextToText"] == "modeling_mmzoo.MmzooForConditionalGeneration"
    generation = json.loads((exported / "generation_config.json").read_text())
    assert generation["eos_token_id"] == json.loads((run / "generation_config.json").read_text())["eos_token_id"]
    module, name, got = _generate_in_child(exported, run.parent / "pixels.pt", remote_code=True,
                                           hf_home=tmp_path / "hf-home")
    assert module.startswith("transformers_modules.") and name == "MmzooForConditionalGeneration"
    assert got == ids
