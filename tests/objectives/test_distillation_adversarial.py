"""Distillation (relational KL, cosine) and adversarial objectives on their real fusions."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from mmzoo.encoders.tower import TowerOutput
from mmzoo.errors import SpecError
from mmzoo.encoders import TowersAndTokens
from mmzoo.fusion import FusionOutput
from mmzoo.losses.functional import adversarial_modality_loss, distillation_cosine, distillation_kl
from mmzoo.objectives import ObjectiveContext
from mmzoo.objectives.distillation import DistillationObjective
from mmzoo.specs.objectives import DistillationSpec
from tests.objectives.helpers import tiny_batch, tiny_model

DIMS = TowersAndTokens(text_width=8, image_width=8, embed_dim=4, vocab_size=10)


def tower(embeds):
    return TowerOutput(tokens=embeds[:, None], mask=torch.ones(len(embeds), 1), pooled=embeds, embeds=embeds)


def fake_context(text, image, teacher_embeds):
    return ObjectiveContext(None, tower(text), tower(image), {},
                            _fused=FusionOutput(extras={"teacher_embeds": teacher_embeds}))


def test_kl_is_zero_when_the_similarity_structure_matches():
    torch.manual_seed(0)
    objective = DistillationObjective(DistillationSpec(), DIMS, SimpleNamespace(teacher_widths={"text": 6}))
    text, image = torch.randn(5, 4), torch.randn(5, 4)
    rotation = torch.linalg.qr(torch.randn(6, 6))[0][:, :4]  # isometry R^4 -> R^6 keeps every cosine
    same = objective(fake_context(text, image, {"text": F.normalize(text, dim=-1) @ rotation.t()}))
    assert same.loss.abs() < 1e-5
    teacher = torch.randn(5, 6)
    out = objective(fake_context(text, image, {"text": teacher}))
    torch.testing.assert_close(out.loss, distillation_kl(F.normalize(text, dim=-1), F.normalize(text, dim=-1),
                                                         teacher, teacher))
    assert out.loss > 1e-3 and set(out.extras) == {"distillation_text"}


def test_cosine_projects_to_each_teacher_width():
    torch.manual_seed(0)
    fusion = SimpleNamespace(teacher_widths={"text": 6, "image": 3})
    objective = DistillationObjective(DistillationSpec(loss="cosine"), DIMS, fusion)
    assert {m: p.out_features for m, p in objective.to_teacher.items()} == {"text": 6, "image": 3}
    text, image = torch.randn(5, 4), torch.randn(5, 4)
    teachers = {"text": torch.randn(5, 6), "image": torch.randn(5, 3)}
    out = objective(fake_context(text, image, teachers))
    expected = (distillation_cosine(objective.to_teacher["text"](F.normalize(text, dim=-1)), teachers["text"])
                + distillation_cosine(objective.to_teacher["image"](F.normalize(image, dim=-1)), teachers["image"])) / 2
    torch.testing.assert_close(out.loss, expected)


def test_distillation_needs_teachers():
    with pytest.raises(SpecError, match="teachers"):
        DistillationObjective(DistillationSpec(), DIMS, SimpleNamespace())


@pytest.mark.parametrize("loss", ["kl", "cosine"])
def test_distillation_trains_the_student_not_the_teachers(loss):
    from tests.objectives.helpers import tiny_spec_dict

    import mmzoo

    spec = tiny_spec_dict("distillation", [{"type": "distillation", "loss": loss}])
    torch.manual_seed(0)
    model, processor = mmzoo.build_model(spec), mmzoo.build_processor(spec)
    out = model(**tiny_batch(processor), return_loss=True)
    out.loss.backward()
    assert out.loss > 0
    assert all(p.grad is None for p in model.fusion.teachers.parameters())
    assert model.text_tower.projection.weight.grad.abs().sum() > 0
    assert model.vision_tower.projection.weight.grad.abs().sum() > 0


def test_adversarial_loss_and_accuracy():
    torch.manual_seed(0)
    model, processor = tiny_model("adversarial", ["contrastive", "adversarial"])
    batch = tiny_batch(processor)
    text = model.encode_text(batch["input_ids"], batch["attention_mask"])
    image = model.encode_image(batch["pixel_values"])
    ctx = ObjectiveContext(model, text, image, batch)
    out = model.objectives["adversarial"](ctx)
    logits, labels = ctx.fused.extras["modality_logits"], ctx.fused.extras["modality_labels"]
    torch.testing.assert_close(out.loss, adversarial_modality_loss(logits, labels))
    assert out.extras["discriminator_accuracy"] == (logits.argmax(-1) == labels).float().mean()
    # the reversed gradient reaches the towers with the opposite sign of the discriminator's own descent
    out.loss.backward()
    assert model.fusion.discriminator[0].weight.grad.abs().sum() > 0
    assert model.text_tower.projection.weight.grad.abs().sum() > 0


def test_adversarial_binary_logits_accuracy():
    from mmzoo.objectives.adversarial import AdversarialObjective
    from mmzoo.specs.objectives import AdversarialSpec

    logits, labels = torch.tensor([2.0, -1.0, 0.5, -3.0]), torch.tensor([1, 0, 0, 0])
    ctx = ObjectiveContext(None, None, None, {},
                           _fused=FusionOutput(extras={"modality_logits": logits, "modality_labels": labels}))
    out = AdversarialObjective(AdversarialSpec(), DIMS, None)(ctx)
    assert out.extras["discriminator_accuracy"] == 0.75
    torch.testing.assert_close(out.loss, F.binary_cross_entropy_with_logits(logits, labels.float()))
