"""A captioning model's saved folder generates after loading: generation_config.json with bos/eos/pad, the
generation head named in config.architectures, and the same captions from a fresh process as in memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

import mmzoo
from mmzoo.modeling import MmzooForConditionalGeneration

FRESH = """
import sys, json, torch, mmzoo
from transformers import AutoModelForImageTextToText
model = AutoModelForImageTextToText.from_pretrained(sys.argv[1]).eval()
pixel_values = torch.load(sys.argv[2])
print(json.dumps([type(model).__name__, model.generate(pixel_values=pixel_values, max_new_tokens=8).tolist()]))
"""


def test_saved_captioner_generates_the_same_captions_in_a_fresh_process(tmp_path):
    torch.manual_seed(0)
    model = mmzoo.build_model("mm-coca-tiny").eval()  # trained as MmzooModel (objectives), saved from there
    processor = mmzoo.build_processor("mm-coca-tiny")
    mmzoo.builder.save_pretrained(model, processor, tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    generation = json.loads((tmp_path / "run" / "generation_config.json").read_text())
    tokens = model.config.tokens
    assert config["architectures"] == ["MmzooForConditionalGeneration"]
    assert generation["bos_token_id"] == tokens["cls_token_id"] and generation["eos_token_id"] == tokens["sep_token_id"]
    assert generation["pad_token_id"] == tokens["pad_token_id"]

    pixel_values = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.save(pixel_values, tmp_path / "pixels.pt")
    in_memory = MmzooForConditionalGeneration.from_pretrained(tmp_path / "run").eval()
    expected = in_memory.generate(pixel_values=pixel_values, max_new_tokens=8).tolist()
    env = {**os.environ, "PYTHONPATH": str(Path(mmzoo.__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", FRESH, str(tmp_path / "run"), str(tmp_path / "pixels.pt")],
                         capture_output=True, text=True, env=env, check=True)
    name, ids = json.loads(out.stdout.strip().splitlines()[-1])
    assert name == "MmzooForConditionalGeneration" and ids == expected
    assert all(row[0] == tokens["cls_token_id"] for row in ids)  # generation starts at the start token
