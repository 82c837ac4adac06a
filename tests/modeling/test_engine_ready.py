"""Models every distributed engine accepts: no 0-d parameters (FSDP / ZeRO refuse them), no parameter without a
gradient (DDP with find_unused_parameters=False), ``_no_split_modules`` for wrapping policies, input embeddings
reachable, and checkpoints of the older layout (0-d scalars, tower poolers) still loading."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel

import mmzoo
from mmzoo.specs import ModelSpec
from mmzoo.presets import preset_path
from tests.common import TINY_PRESETS, batch


def perturbed(model, seed: int = 0):
    """The model with every parameter moved off its initial value (a stand-in for a trained model)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return model


def assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def unreached_names(model, spec) -> set[str]:
    ids = {id(p) for m in model.unreached_modules(spec) for p in m.parameters()}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def backward(model, processor, **extra):
    model.train()
    out = model(**batch(processor), **extra)
    out.loss.backward()


@pytest.mark.parametrize("preset", TINY_PRESETS)
def test_no_scalar_parameters_and_every_parameter_gets_a_gradient(preset):
    """Every trainable parameter gets a gradient (DDP with find_unused_parameters=False), and what the model froze
    as unreached (e.g. visualbert's projections: mlm + itm read them only in ITM's no-grad negative sampling)
    really gets none when made trainable again: the owner freezes exactly the parameters outside the loss."""
    model = mmzoo.build_model(preset)
    scalars = [n for n, p in model.named_parameters() if p.dim() == 0]
    assert not scalars, f"0-d parameters (FSDP/ZeRO refuse them): {scalars}"
    processor = mmzoo.build_processor(preset)
    backward(model, processor, return_loss=True)
    unused = {n for n, p in model.named_parameters() if p.requires_grad and p.grad is None}
    assert not unused, f"trainable parameters without gradient: {sorted(unused)}"

    frozen = unreached_names(model, model.config.model_spec())
    model.zero_grad(set_to_none=True)
    for n, p in model.named_parameters():
        if n in frozen:
            p.requires_grad_(True)
    backward(model, processor, return_loss=True)
    reached = {n for n, p in model.named_parameters() if n in frozen and p.grad is not None}
    assert not reached, f"frozen as unreached but the loss reaches them: {sorted(reached)}"


def test_visualbert_projections_are_frozen_and_clip_projections_train(tmp_path):
    model = mmzoo.build_model("mm-visualbert-tiny")
    assert not any(p.requires_grad for p in model.text_tower.projection.parameters())
    model.save_pretrained(tmp_path)
    assert not any(p.requires_grad for p in AutoModel.from_pretrained(tmp_path).vision_tower.projection.parameters())
    assert all(p.requires_grad for p in mmzoo.build_model("mm-clip-tiny").text_tower.projection.parameters())


@pytest.mark.parametrize("preset", ["mm-albef-tiny", "mm-visualbert-tiny"])
def test_vqa_head_trains_every_parameter_it_keeps_trainable(preset):
    """The VQA loss reads the fused pair embedding only: the pretraining objectives and the projections are frozen
    (kept, saved), everything else gets a gradient."""
    from mmzoo.modeling.heads import MmzooForVisualQuestionAnswering

    model = mmzoo.build_model(preset, model_class=MmzooForVisualQuestionAnswering, answer_vocab=["yes", "no"])
    processor = mmzoo.build_processor(preset)
    labels = torch.tensor([0, 1, 0, 1])
    backward(model, processor, labels=labels)
    unused = {n for n, p in model.named_parameters() if p.requires_grad and p.grad is None}
    assert not unused, f"trainable parameters without gradient: {sorted(unused)}"
    assert not any(p.requires_grad for p in model.objectives.parameters())
    assert all(p.requires_grad for p in (*model.fusion.parameters(), *model.vqa_head.parameters()))


def test_pooler_is_built_only_for_pooling_pooler():
    spec = ModelSpec.from_file(preset_path("mm-clip-tiny")).to_dict()
    assert mmzoo.build_model(spec).text_tower.model.pooler is None
    spec["encoders"][0]["pooling"] = spec["encoders"][1]["pooling"] = "pooler"
    model = mmzoo.build_model(spec)
    assert model.text_tower.model.pooler is not None and model.vision_tower.model.pooler is not None


@pytest.mark.parametrize("preset,keys", [
    ("mm-clip-tiny", ["objectives.contrastive.logit_scale"]),
    ("mm-siglip-tiny", ["objectives.sigmoid.logit_scale", "objectives.sigmoid.logit_bias"]),
])
def test_old_checkpoint_with_scalar_shapes_and_poolers_loads(tmp_path, preset, keys):
    model = perturbed(mmzoo.build_model(preset))
    model.save_pretrained(tmp_path)
    # rewrite the checkpoint in the layout mmzoo wrote before: 0-d scalars and the towers' pooler weights
    state = load_file(tmp_path / "model.safetensors")
    assert all(state[k].shape == (1,) for k in keys)
    for k in keys:
        state[k] = state[k].reshape(())
    width = model.text_tower.width
    state["text_tower.model.pooler.dense.weight"] = torch.randn(width, width)
    state["text_tower.model.pooler.dense.bias"] = torch.randn(width)
    save_file(state, tmp_path / "model.safetensors", metadata={"format": "pt"})

    loaded, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert_same_state(model, loaded)
    assert all(loaded.get_parameter(k).shape == (1,) for k in keys)

    # torch's own load_state_dict (Trainer resume) accepts the 0-d shape as well
    fresh = mmzoo.build_model(preset)
    old_state = {k: (v.reshape(()) if k in keys else v) for k, v in model.state_dict().items()}
    fresh.load_state_dict(old_state)
    assert_same_state(model, fresh)


def test_no_split_modules_name_the_towers_and_mmzoos_layers():
    model = mmzoo.build_model("mm-vilbert-tiny")
    names = set(model._no_split_modules)
    classes = {type(m).__name__ for m in model.modules()}
    assert {"BertLayer", "ViTLayer", "TransformerLayer", "CoAttentionBlock"} <= names
    assert names <= classes, f"declared classes absent from the model: {names - classes}"
    # accelerate's FSDP wrapping policy resolves every name to a module class of the model
    from accelerate.utils.dataclasses import get_module_class_from_name

    assert all(get_module_class_from_name(model, n) is not None for n in names)


def test_input_embeddings_are_the_text_towers():
    model = mmzoo.build_model("mm-clip-tiny")
    assert model.get_input_embeddings() is model.text_tower.model.embeddings.word_embeddings
    new = torch.nn.Embedding(*model.get_input_embeddings().weight.shape)
    model.set_input_embeddings(new)
    assert model.text_tower.model.embeddings.word_embeddings is new


def test_unreached_projections_are_found_on_every_tower_kind():
    """The projections the owner may freeze are those of every tower the model has (text + image, or text +
    audio), never a teacher's (which has none)."""
    from mmzoo.modeling.modeling_mmzoo import tower_projections

    clap = mmzoo.build_model("mm-clap-tiny")
    assert tower_projections(clap) == [clap.text_tower.projection, clap.audio_tower.projection]
    clip = mmzoo.build_model("mm-clip-tiny")
    assert tower_projections(clip) == [clip.text_tower.projection, clip.vision_tower.projection]
