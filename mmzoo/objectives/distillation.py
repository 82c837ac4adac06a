"""Distillation from frozen unimodal teachers (relational KL, CLIP-KD / ALBEF style, or feature cosine)."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import SpecError
from ..losses.functional import distillation_cosine, distillation_kl
from .base import OBJECTIVES, Objective, ObjectiveContext, ObjectiveOutput


def teacher_widths(fusion) -> dict[str, int]:
    """{modality: width of the teacher's pooled features} of a fusion with teachers (the distillation fusion)."""
    widths = getattr(fusion, "teacher_widths", None)
    if not widths:
        raise SpecError(
            f"objectives(distillation): fusion {type(fusion).__name__} has no teachers (no teacher_widths); use "
            "fusion.type distillation with `teachers: {text: ..., image: ...}`"
        )
    return dict(widths)


@OBJECTIVES.register("distillation")
class DistillationObjective(Objective):
    """Reads the teachers' pooled features from ``ctx.fused.extras["teacher_embeds"]`` ({modality: (B, Dt)}).

    ``loss: kl`` (relational): for each modality with a teacher, KL between the teacher's and the student's
    in-batch similarity distributions (cosine / temperature), so widths may differ and nothing is learned
    besides the student. ``loss: cosine``: a learnable Linear maps the student embedding to the teacher's width,
    then ``1 - cos``. The loss is the mean over the taught modalities; per-modality terms go to extras.
    """

    def __init__(self, spec, dims, fusion) -> None:
        super().__init__(spec, dims, fusion)
        widths = teacher_widths(fusion)
        self.to_teacher = nn.ModuleDict(
            {m: nn.Linear(dims.embed_dim, w) for m, w in widths.items()} if spec.loss == "cosine" else {}
        )

    def forward(self, ctx: ObjectiveContext) -> ObjectiveOutput:
        teacher_embeds = ctx.fused.extras.get("teacher_embeds")
        if not teacher_embeds:
            raise ValueError(
                f"distillation: fusion {type(ctx.model.fusion).__name__} returned no extras['teacher_embeds']; "
                "the distillation objective needs fusion.type distillation"
            )
        students = {"text": ctx.text.normalized, "image": ctx.image.normalized}
        terms = {}
        for modality, teacher in teacher_embeds.items():
            student = students[modality]
            if self.spec.loss == "kl":
                terms[modality] = distillation_kl(student, student, teacher, teacher, self.spec.temperature)
            else:
                terms[modality] = distillation_cosine(self.to_teacher[modality](student), teacher)
        loss = torch.stack(list(terms.values())).mean()
        return ObjectiveOutput(loss, extras={f"distillation_{m}": t.detach() for m, t in terms.items()})
