"""The ``peft:`` block of a tower: parameter-efficient fine-tuning with LoRA (Hu et al. 2021) via the ``peft`` library.

```yaml
encoders:
  - modality: text
    model: sentence-transformers/all-MiniLM-L6-v2
    pretrained: true
    peft: {type: lora, r: 8, alpha: 16, dropout: 0.05}   # target_modules: default for the tower's family
```

With a ``peft:`` block the tower's own weights are frozen and only the LoRA matrices train (on top of the
tower's projection and everything outside the tower, unless frozen elsewhere). It composes with ``freeze:`` on
the other tower (LiT: a frozen image tower and a LoRA text tower, or the reverse).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from .base import SpecBase


class LoraSpec(SpecBase):
    """LoRA adapters on a tower's linear layers: ``W x + (alpha / r) B A x`` with ``A`` (r x in), ``B`` (out x r).

    Args:
        r: rank of the update.
        alpha: scaling numerator (the update is scaled by ``alpha / r``).
        dropout: dropout on the LoRA branch's input.
        target_modules: names (or suffixes) of the ``nn.Linear`` modules to adapt; ``None`` = the tower's
            attention query and value projections, by the names its family uses (``query``/``value`` for BERT,
            ``q_proj``/``v_proj`` for ViT, CLIP, SigLIP, Whisper, wav2vec2 ...; see ``mmzoo.adapters.DEFAULT_TARGETS``).
        bias: which biases train: ``none``, ``lora_only`` or ``all`` (of the tower).
    """

    type: Literal["lora"] = "lora"
    r: int = Field(8, ge=1, description="rank of the LoRA update")
    alpha: float = Field(16.0, gt=0, description="the update is scaled by alpha / r")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the LoRA branch")
    target_modules: list[str] | None = Field(
        None, description="linear modules to adapt (names or suffixes); default: the family's query/value"
    )
    bias: Literal["none", "lora_only", "all"] = "none"

    @field_validator("target_modules")
    @classmethod
    def _non_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or not all(isinstance(v, str) and v for v in value)):
            raise ValueError("target_modules must list at least one module name (or be omitted for the default)")
        return value
