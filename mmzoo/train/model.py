"""The model a run trains: built from the recipe's spec (or loaded with ``model.init_from``), with the
pretraining objectives (``model.head: pretraining``) or a VQA answer head (``model.head: vqa``)."""

from __future__ import annotations

from pathlib import Path

from ..errors import RecipeError


def build_run_model(recipe, spec, answer_vocab: list[str] | None = None):
    """``MmzooModel`` (pretraining) or ``MmzooForVisualQuestionAnswering`` over ``answer_vocab`` (vqa).

    Pretrained towers are loaded as the spec says; ``init_from`` loads every weight of a saved model (for
    vqa the answer head is new unless the saved model has the same answer vocabulary).
    """
    from ..builder import build_model
    from ..modeling import MmzooModel
    from ..modeling.heads import MmzooForVisualQuestionAnswering

    section = recipe.model
    source = Path(recipe.base_dir or ".") / section.init_from if section.init_from else None
    if section.head == "pretraining":
        return MmzooModel.from_pretrained(str(source)) if source else build_model(spec)
    if not answer_vocab:
        raise RecipeError("model.head vqa: the training data has no answers to build the answer vocabulary from")
    if source:
        return MmzooForVisualQuestionAnswering.from_pretrained(
            str(source), answer_vocab=list(answer_vocab), ignore_mismatched_sizes=True
        )
    base = build_model(spec)
    base.config.answer_vocab = list(answer_vocab)
    model = MmzooForVisualQuestionAnswering(base.config)
    missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
    stray = [k for k in missing if not k.startswith(MmzooForVisualQuestionAnswering.head_prefixes)]
    if stray or unexpected:  # the same MmzooModel underneath: only the new head may be missing
        raise RecipeError(
            f"model.head vqa: weights did not carry over (missing {stray[:3]}, unexpected {unexpected[:3]})"
        )
    return model
