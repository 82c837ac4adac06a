"""Gradient caching for an :class:`~mmzoo.MmzooModel` dual encoder: contrastive batches far larger than
activation memory allows, with the loss and gradients of the plain path.

The model-level wrapper of :func:`mmzoo.losses.grad_cache.grad_cache_step` (Gao et al. 2021): both towers
embed the batch in chunks without a graph, the model's own objective modules compute the loss on all
embeddings (so ``logit_scale`` / ``logit_bias`` get their gradients), then each chunk is re-encoded and
backpropagated with its cached embedding gradient. Peak activation memory is one chunk of one tower.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

from ..encoders.tower import TowerOutput
from ..losses.grad_cache import grad_cache_step
from ..objectives import ObjectiveContext
from ..specs import OBJECTIVE_SPECS

__all__ = ["GRAD_CACHE_OBJECTIVES", "check_grad_cache_model", "grad_cache_model_step"]

# objectives whose loss depends on the batch only through the two projected embeddings
# objectives whose loss reads only the two embeddings (declared on their spec classes)
GRAD_CACHE_OBJECTIVES = frozenset(tag for tag, cls in OBJECTIVE_SPECS.items() if cls.embeddings_only)
TEXT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def check_grad_cache_model(model: Any) -> None:
    """Raise ``ValueError`` unless ``model`` is a dual encoder trained only with contrastive/sigmoid objectives."""
    spec = model.config.model_spec()
    others = sorted(o.type for o in spec.objectives if o.type not in GRAD_CACHE_OBJECTIVES)
    if spec.fusion.type != "dual_encoder" or others:
        raise ValueError(
            f"gradient caching needs a dual encoder (fusion: dual_encoder) trained only with "
            f"{sorted(GRAD_CACHE_OBJECTIVES)} objectives, whose loss depends on the batch only through the two "
            f"embeddings; model {spec.name!r} has fusion {spec.fusion.type!r} and objectives "
            f"{[o.type for o in spec.objectives]}. Train it without gradient caching "
            "(remove training.grad_cache_chunk_size) and use gradient_checkpointing to save memory instead."
        )


def _embeds_only(embeds: Tensor) -> TowerOutput:
    """A TowerOutput carrying only the projected embeddings (all that contrastive/sigmoid objectives read)."""
    return TowerOutput(tokens=None, mask=None, pooled=None, embeds=embeds)


def grad_cache_model_step(
    model: Any,
    inputs: Mapping[str, Any],
    chunk_size: int,
    *,
    loss_scale: float = 1.0,
    on_terms: Callable[[dict[str, Tensor]], None] | None = None,
    wrapped: Any = None,
) -> Tensor:
    """Loss of ``model(**inputs, return_loss=True)``, with its gradients accumulated into ``.grad``, holding
    at most ``chunk_size`` examples' activations of one tower at a time.

    Args:
        model: an unwrapped :class:`~mmzoo.MmzooModel`.
        inputs: a collated batch with ``pixel_values`` and ``input_ids`` (``attention_mask``,
            ``token_type_ids`` optional); other keys are ignored. Text ``i`` pairs with image ``i``.
        chunk_size: examples per tower call (> 0); ``>= batch`` gives one chunk.
        loss_scale: multiplies the loss before backward (e.g. ``1 / gradient_accumulation_steps``).
        on_terms: called once with the unweighted, detached loss of each objective (for logging).
        wrapped: the engine's wrapper of ``model`` (``DistributedDataParallel``, accelerate's autocast
            forward). The last pair of chunks then runs as one ``wrapped(...)`` forward and its backward
            carries every gradient, so DDP all-reduces them in its buckets, overlapped with that backward;
            the other chunks' backwards run under ``wrapped.no_sync()``. ``None``: single process.

    Returns:
        The detached loss times ``loss_scale`` (what was backpropagated). Call ``optimizer.step()`` next.

    The loss and gradients equal those of ``model(**inputs, return_loss=True).loss * loss_scale`` followed
    by ``backward()`` (up to float rounding): dropout masks are replayed per chunk, and with one chunk the
    random draws are exactly those of the plain forward (text tower first, as ``MmzooModel.forward``).
    Gradient checkpointing and autocast (bf16: call it inside the autocast context) compose with it; each chunk
    runs forward twice.
    """
    check_grad_cache_model(model)
    missing = [k for k in ("input_ids", "pixel_values") if inputs.get(k) is None]
    if missing:
        raise ValueError(f"grad_cache_model_step: the batch lacks {missing} (it has {sorted(inputs)}); "
                         "it needs paired input_ids and pixel_values")
    n_text, n_image = inputs["input_ids"].shape[0], inputs["pixel_values"].shape[0]
    if n_text != n_image:
        raise ValueError(f"grad_cache_model_step: {n_text} texts but {n_image} images; text i must pair with image i")
    weights = {o.type: o.weight for o in model.config.model_spec().objectives}

    # normalised embeddings: what MmzooModel.forward returns as text_embeds / image_embeds (used by encode_last)
    def encode_text(chunk: dict[str, Tensor]) -> Tensor:
        out = model.encode_text(chunk["input_ids"], chunk.get("attention_mask"), chunk.get("token_type_ids"))
        return out.normalized

    def encode_image(chunk: dict[str, Tensor]) -> Tensor:
        return model.encode_image(chunk["pixel_values"]).normalized

    def encode_last(text_chunk: dict[str, Tensor], image_chunk: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        out = wrapped(**text_chunk, pixel_values=image_chunk["pixel_values"], return_loss=False)
        return out["text_embeds"], out["image_embeds"]

    def loss_fn(text_embeds: Tensor, image_embeds: Tensor) -> Tensor:
        ctx = ObjectiveContext(model=model, text=_embeds_only(text_embeds), image=_embeds_only(image_embeds),
                               inputs={})
        terms = {tag: objective(ctx).loss for tag, objective in model.objectives.items()}
        if on_terms is not None:
            on_terms({tag: term.detach() for tag, term in terms.items()})
        return sum(weights[tag] * term for tag, term in terms.items()) * loss_scale

    text_inputs = {k: inputs[k] for k in TEXT_KEYS if inputs.get(k) is not None}
    no_sync = getattr(wrapped, "no_sync", None)
    # text first: grad_cache_step draws dropout for its first modality first, as MmzooModel.forward does
    return grad_cache_step(
        encode_text, encode_image, text_inputs, {"pixel_values": inputs["pixel_values"]}, loss_fn, chunk_size,
        loss_params=list(model.objectives.parameters()),
        encode_last=encode_last if wrapped is not None else None, no_sync=no_sync,
    )
