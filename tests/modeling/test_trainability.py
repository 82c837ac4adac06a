"""One owner of what trains (``MmzooModel.apply_trainability``), applied on both construction paths."""

from __future__ import annotations

import torch
from transformers import AutoModel

import mmzoo
from mmzoo.modeling import modeling_mmzoo
from tests.common import batch


def _fixed_temperature_spec():
    spec = mmzoo.load_spec("mm-clip-tiny").to_dict()
    spec["objectives"][0].update(learnable_temperature=False, init_temperature=0.05)
    return spec


def test_fixed_temperature_survives_from_pretrained_and_training(tmp_path):
    model = mmzoo.build_model(_fixed_temperature_spec())
    scale = model.objectives["contrastive"].logit_scale
    assert not scale.requires_grad
    model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path)
    reloaded_scale = reloaded.objectives["contrastive"].logit_scale
    assert not reloaded_scale.requires_grad
    before = reloaded_scale.detach().clone()
    # a real optimisation step over the trainable parameters leaves the temperature where the spec put it
    reloaded.train()
    optimizer = torch.optim.SGD([p for p in reloaded.parameters() if p.requires_grad], lr=1.0)
    reloaded(**batch(mmzoo.build_processor("mm-clip-tiny")), return_loss=True).loss.backward()
    optimizer.step()
    assert torch.equal(reloaded_scale.detach(), before)
    assert torch.allclose(reloaded.objectives["contrastive"].scale(), torch.tensor(1 / 0.05))


def test_learnable_temperature_is_trainable_after_reload(tmp_path):
    mmzoo.build_model("mm-clip-tiny").save_pretrained(tmp_path)
    assert AutoModel.from_pretrained(tmp_path).objectives["contrastive"].logit_scale.requires_grad


def test_teachers_are_frozen_on_both_paths_without_calling_train(tmp_path):
    spec = mmzoo.load_spec("mm-clip-tiny").to_dict()
    teacher = {"config": spec["encoders"][1]["config"], "pretrained": False, "pooling": "cls"}
    spec.update(fusion={"type": "distillation", "teachers": {"image": teacher}},
                objectives=[{"type": "contrastive"}, {"type": "distillation"}])
    model = mmzoo.build_model(spec)
    assert not any(p.requires_grad for p in model.fusion.teachers.parameters())
    model.save_pretrained(tmp_path)
    # transformers' own loading path, then the parameters as loaded (no train()/eval() in between)
    reloaded, _ = modeling_mmzoo.MmzooModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(p.requires_grad for p in reloaded.fusion.teachers.parameters())
    assert all(p.requires_grad for p in reloaded.vision_tower.parameters())


def test_trainability_steps_are_the_extension_point(tmp_path, monkeypatch):
    """An adapter library (PEFT) appends a step; both paths run it after the spec's own rules."""
    seen = []

    def freeze_projections(model, spec):
        seen.append(spec.name)
        model.text_tower.projection.requires_grad_(False)

    monkeypatch.setattr(modeling_mmzoo, "TRAINABILITY_STEPS", [*modeling_mmzoo.TRAINABILITY_STEPS, freeze_projections])
    model = mmzoo.build_model("mm-clip-tiny")
    model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path)
    assert len(seen) >= 2 and set(seen) == {"mm-clip-tiny"}  # build, and from_pretrained after loading
    assert not any(p.requires_grad for p in reloaded.text_tower.projection.parameters())
