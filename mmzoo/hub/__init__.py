"""Publishing to the Hugging Face Hub: model cards (``card``) and one-commit pushes (``push``)."""

from .card import is_generated_card, load_run, render_card
from .push import PushResult, push_run

__all__ = ["PushResult", "is_generated_card", "load_run", "push_run", "render_card"]
