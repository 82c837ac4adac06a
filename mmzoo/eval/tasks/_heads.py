"""Task heads over an evaluated model's own weights (no copy): e.g. the generation head of a trained MmzooModel."""

from __future__ import annotations

import copy

import torch


def objective_types(model) -> list[str]:
    """The spec's objective tags of an mmzoo model (empty for other models)."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "model_spec"):
        return []
    return [o.type for o in config.model_spec().objectives]


def describe_model(model) -> str:
    """``"model 'name' (ClassName, objectives [...])"`` for error messages."""
    config = getattr(model, "config", None)
    name = config.model_spec().name if config is not None and hasattr(config, "model_spec") else None
    objectives = objective_types(model)
    return (f"model {name!r} ({type(model).__name__}" + (f", objectives {objectives})" if objectives else ")")
            if name else f"model {type(model).__name__}")


def as_head(model, head_class):
    """``model`` as an instance of the mmzoo head class ``head_class``, sharing its parameters and buffers.

    The head is built on the meta device and its tensors are assigned from ``model`` (no copy, no init), so it
    costs no memory and always sees the current weights; ``model`` itself is returned when it already is one.
    """
    from ...modeling.auto import model_class_for

    if isinstance(model, head_class):
        return model
    cls = model_class_for(head_class, type(model.config))
    with torch.device("meta"):
        head = cls(copy.deepcopy(model.config))
    head.load_state_dict(model.state_dict(), strict=True, assign=True)
    buffers = dict(model.named_buffers())  # non-persistent buffers are not in the state dict
    for name, buffer in list(head.named_buffers()):
        if buffer.is_meta:
            module_name, _, leaf = name.rpartition(".")
            head.get_submodule(module_name)._buffers[leaf] = buffers[name]
    return head.eval()
