"""Distillation fusion: frozen unimodal teacher towers whose pooled features guide the student towers."""

from __future__ import annotations

import torch
from torch import nn

from .._sources import hf_config_from_dict
from ..encoders.tower import Tower, tower_model
from .base import FUSIONS, Fusion, FusionOutput


def teacher_config(config, modality: str):
    """The HF config of the ``modality`` teacher, rebuilt from ``config.teacher_configs`` (dicts)."""
    stored = (getattr(config, "teacher_configs", None) or {}).get(modality)
    if stored is None:
        raise ValueError(
            f"fusion.teachers.{modality}: the model config has no teacher_configs[{modality!r}]; build the model "
            "with mmzoo.build_model(spec) so the teacher configs are stored"
        )
    if not isinstance(stored, dict):  # already a config object
        return stored
    return hf_config_from_dict(stored, f"teacher_configs.{modality}")


@FUSIONS.register("distillation")
class DistillationFusion(Fusion):
    """Frozen teachers (``teachers``: ModuleDict "text"/"image" -> Tower without projection), always in eval mode.

    The forward runs them under no_grad on the batch inputs (input_ids/attention_mask/token_type_ids for text,
    pixel_values for image) and returns extras {"teacher_embeds": {modality: pooled (B, D_teacher)}}.
    ``teacher_widths`` gives D_teacher per modality. Pretrained weights are loaded by the builder into
    ``teachers[modality].model``. A text teacher reads the student's token ids, so it must share its tokenizer.
    """

    def __init__(self, spec, dims, config=None) -> None:
        super().__init__(spec, dims, config)
        self.teachers = nn.ModuleDict()
        for modality, teacher in spec.teachers.items():
            hf_config = teacher_config(config, modality)
            if modality == "text":
                self._check_vocab(hf_config, teacher)
            self.teachers[modality] = Tower(tower_model(hf_config, teacher.pooling), modality, teacher.pooling,
                                            projection_dim=None)
        self.train(self.training)  # puts the teachers in eval mode
        self.teacher_widths = {m: tower.width for m, tower in self.teachers.items()}

    def _check_vocab(self, hf_config, teacher) -> None:
        vocab = getattr(hf_config, "vocab_size", None)
        if vocab is not None and vocab != self.dims.vocab_size:
            raise ValueError(
                f"fusion.teachers.text: the teacher {teacher.model or hf_config.model_type!r} has vocab_size {vocab} "
                f"but the student's text vocabulary has {self.dims.vocab_size} tokens; the teacher reads the "
                "student's token ids, so both must use the same tokenizer. Pick a teacher with the student's "
                "tokenizer, or set the student's text encoder `tokenizer:` to the teacher's"
            )

    def train(self, mode: bool = True) -> DistillationFusion:
        """Switch the fusion's mode; the teachers stay in eval mode (no dropout, fixed statistics)."""
        super().train(mode)
        self.teachers.eval()
        return self

    def apply_trainability(self) -> None:
        """The teachers are frozen (the model applies this on construction and after ``from_pretrained``)."""
        self.teachers.requires_grad_(False)

    def forward(self, text, image, inputs=None) -> FusionOutput:
        if inputs is None:
            raise ValueError("distillation fusion needs the batch `inputs` (input_ids, pixel_values) to run teachers")
        embeds = {}
        with torch.no_grad():
            for modality, tower in self.teachers.items():
                keys = ("input_ids", "attention_mask", "token_type_ids") if modality == "text" else ("pixel_values",)
                embeds[modality] = tower(**{k: inputs[k] for k in keys if inputs.get(k) is not None}).pooled
        return FusionOutput(extras={"teacher_embeds": embeds})
