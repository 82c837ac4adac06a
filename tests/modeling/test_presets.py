"""Every tiny preset: build -> forward/backward -> save -> fresh process Auto* load -> identical outputs, equal spec."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

import mmzoo
from tests.common import TINY_PRESETS, batch

RELOAD = textwrap.dedent("""
    import sys, json, torch, mmzoo
    from transformers import AutoModel, AutoProcessor
    from tests.common import batch
    d = sys.argv[1]
    model = AutoModel.from_pretrained(d).eval()
    processor = AutoProcessor.from_pretrained(d)
    with torch.no_grad():
        out = model(**batch(processor))
    torch.save({"logits": out.logits_per_image, "text": out.text_embeds, "image": out.image_embeds,
                "ids": batch(processor)["input_ids"], "pixels": batch(processor)["pixel_values"]}, d + "/reloaded.pt")
    json.dump({"spec": model.config.model_spec().to_dict(), "processor": type(processor).__name__,
               "model": type(model).__name__}, open(d + "/reloaded.json", "w"))
""")


@pytest.mark.parametrize("name", TINY_PRESETS)
def test_preset_build_train_save_reload(name, tmp_path):
    torch.manual_seed(0)
    model = mmzoo.build_model(name)
    processor = mmzoo.build_processor(name)
    inputs = batch(processor)
    model.train()
    out = model(**inputs, return_loss=True)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert set(out.loss_terms) == {o.type for o in mmzoo.load_spec(name).objectives}
    out.loss.backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)

    model.eval()
    with torch.no_grad():
        expected = model(**inputs)
    mmzoo.builder.save_pretrained(model, processor, tmp_path)
    subprocess.run([sys.executable, "-c", RELOAD, str(tmp_path)], check=True, cwd=str(_repo_root()))
    got = torch.load(tmp_path / "reloaded.pt")
    meta = json.loads((tmp_path / "reloaded.json").read_text())
    assert torch.equal(got["ids"], inputs["input_ids"]) and torch.equal(got["pixels"], inputs["pixel_values"])
    assert torch.equal(got["logits"], expected.logits_per_image)
    assert torch.equal(got["text"], expected.text_embeds) and torch.equal(got["image"], expected.image_embeds)
    assert meta["spec"] == mmzoo.load_spec(name).to_dict()
    assert meta["processor"] == "MmzooProcessor" and meta["model"].startswith("Mmzoo")


def _repo_root():
    from pathlib import Path

    return Path(__file__).parents[2]


def test_get_features_match_forward():
    model = mmzoo.build_model("mm-clip-tiny").eval()
    processor = mmzoo.build_processor("mm-clip-tiny")
    inputs = batch(processor)
    with torch.no_grad():
        out = model(**inputs)
        img = model.get_image_features(inputs["pixel_values"]).pooler_output
        txt = model.get_text_features(inputs["input_ids"], inputs["attention_mask"]).pooler_output
    torch.testing.assert_close(torch.nn.functional.normalize(img, dim=-1), out.image_embeds)
    torch.testing.assert_close(torch.nn.functional.normalize(txt, dim=-1), out.text_embeds)
    scale = model.objectives["contrastive"].scale()
    torch.testing.assert_close(out.logits_per_image, scale * out.image_embeds @ out.text_embeds.t())


def test_gradient_checkpointing_same_gradients():
    torch.manual_seed(0)
    model = mmzoo.build_model("mm-clip-tiny")
    processor = mmzoo.build_processor("mm-clip-tiny")
    inputs = batch(processor)
    model.train()  # layers checkpoint only in training mode; dropout masks replay from the same seed

    calls = []
    layer = model.text_tower.model.encoder.layer[0].attention  # inside the checkpointed layer
    layer.register_forward_hook(lambda *a: calls.append(1))

    def grads():
        torch.manual_seed(1)
        model.zero_grad()
        model(**inputs, return_loss=True).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain = grads()
    plain_calls = len(calls)
    model.activation_checkpointing_enable()
    checkpointed = grads()
    assert model.is_activation_checkpointing
    assert len(calls) - plain_calls == 2 * plain_calls  # forward recomputed during backward
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(plain[name], checkpointed[name], msg=name)


def test_freeze_patterns():
    spec = mmzoo.load_spec("mm-clip-tiny")
    enc = spec.encoders[0].model_copy(update={"freeze": ["embeddings.*"]})
    model = mmzoo.build_model(spec.model_copy(update={"encoders": [enc, spec.encoders[1]]}))
    frozen = {n for n, p in model.text_tower.model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith("embeddings.") for n in frozen)
    bad = spec.encoders[0].model_copy(update={"freeze": ["nope.*"]})
    with pytest.raises(mmzoo.errors.SpecError, match=r"encoders.0.freeze: pattern 'nope\.\*' matches no parameter"):
        mmzoo.build_model(spec.model_copy(update={"encoders": [bad, spec.encoders[1]]}))


def test_frozen_tower_stays_frozen_after_reload(tmp_path):
    from transformers import AutoModel

    spec = mmzoo.load_spec("mm-clip-tiny")
    enc = spec.encoders[0].model_copy(update={"freeze": True})
    model = mmzoo.build_model(spec.model_copy(update={"encoders": [enc, spec.encoders[1]]}))
    model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path)
    assert not any(p.requires_grad for p in reloaded.text_tower.model.parameters())
    assert all(p.requires_grad for p in reloaded.vision_tower.model.parameters())
