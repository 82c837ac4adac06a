"""Batched embeddings for evaluation: images and texts through ``get_image_features`` / ``get_text_features``.

Works with any model exposing those two methods (CLIP's meaning: projected, unnormalised embeddings) and a
processor taking ``text=`` / ``images=`` (``MmzooProcessor``, ``CLIPProcessor``...). Everything runs under
``torch.inference_mode``; inputs go to the model's device and floating-point inputs to its dtype.

>>> image_embeds = embed_images(model, processor, images, batch_size=64)  # doctest: +SKIP
>>> text_embeds = embed_texts(model, processor, ["a red circle"], batch_size=256)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F


def model_device_dtype(model: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and floating dtype of the model's first parameter (CPU / float32 for a parameterless module)."""
    for param in model.parameters():
        return param.device, (param.dtype if param.is_floating_point() else torch.float32)
    return torch.device("cpu"), torch.float32


def to_model(inputs: Mapping[str, Any], model: torch.nn.Module) -> dict[str, Any]:
    """Tensors of ``inputs`` moved to the model's device; floating ones cast to its dtype."""
    device, dtype = model_device_dtype(model)
    out = {}
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device=device, dtype=dtype if value.is_floating_point() else None)
        out[key] = value
    return out


def _batches(items: Sequence[Any], batch_size: int):
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    for start in range(0, len(items), batch_size):
        yield items[start : start + batch_size]


def _concat(chunks: list[torch.Tensor], what: str) -> torch.Tensor:
    if not chunks:
        raise ValueError(f"no {what} to embed: the input is empty.")
    return torch.cat(chunks)


def features(output) -> torch.Tensor:
    """The embeddings of a ``get_*_features`` result: its ``pooler_output`` (transformers 5 models, mmzoo's), or
    the tensor itself (models that return bare embeddings)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@torch.inference_mode()
def embed_images(model, processor, images: Sequence[Any], batch_size: int = 64, *,
                 normalize: bool = False) -> torch.Tensor:
    """``(len(images), dim)`` embeddings from ``model.get_image_features(pixel_values=...)``, batch by batch.

    Args:
        model: exposes ``get_image_features(pixel_values=...)``.
        processor: ``processor(images=[...], return_tensors="pt")`` gives ``pixel_values``.
        images: PIL images (anything the processor accepts).
        batch_size: images per forward pass.
        normalize: L2-normalise the rows.

    Returns:
        A float tensor on the model's device.
    """
    from ..data.images import prepare_pil_images, target_size

    chunks, size = [], target_size(processor)
    for batch in _batches(images, batch_size):
        batch = prepare_pil_images(batch, size)  # lazy JPEGs draft-decoded at >= the input size; any mode to RGB
        inputs = to_model(processor(images=batch, return_tensors="pt"), model)
        chunks.append(features(model.get_image_features(pixel_values=inputs["pixel_values"])))
    embeds = _concat(chunks, "images")
    return F.normalize(embeds, dim=-1) if normalize else embeds


@torch.inference_mode()
def embed_audio(model, processor, clips: Sequence[Any], batch_size: int = 64, *, sampling_rate: int | None = None,
                normalize: bool = False) -> torch.Tensor:
    """``(len(clips), dim)`` embeddings from ``model.get_audio_features(**features)``, batch by batch.

    Args:
        model: exposes ``get_audio_features`` (mmzoo audio models, CLAP).
        processor: ``processor(audio=[...], sampling_rate=..., return_tensors="pt")`` gives the audio tower's input.
        clips: mono waveforms (lists / 1-D arrays), all at ``sampling_rate`` (default: the processor's).
        normalize: L2-normalise the rows.
    """
    chunks = []
    for batch in _batches(clips, batch_size):
        inputs = to_model(processor(audio=list(batch), sampling_rate=sampling_rate, return_tensors="pt"), model)
        chunks.append(features(model.get_audio_features(**inputs)))
    embeds = _concat(chunks, "audio clips")
    return F.normalize(embeds, dim=-1) if normalize else embeds


@torch.inference_mode()
def embed_texts(model, processor, texts: Sequence[str], batch_size: int = 256, *,
                normalize: bool = False) -> torch.Tensor:
    """``(len(texts), dim)`` embeddings from ``model.get_text_features(**tokenized)``, batch by batch.

    Texts are padded per batch and truncated to the processor's ``max_length``.

    Args:
        model: exposes ``get_text_features(input_ids=..., attention_mask=..., ...)``.
        processor: ``processor(text=[...], return_tensors="pt")`` gives ``input_ids`` (and ``attention_mask``).
        texts: the strings.
        batch_size: texts per forward pass.
        normalize: L2-normalise the rows.

    Returns:
        A float tensor on the model's device.
    """
    chunks = []
    for batch in _batches(texts, batch_size):
        inputs = to_model(processor(text=list(batch), return_tensors="pt"), model)
        chunks.append(features(model.get_text_features(**inputs)))
    embeds = _concat(chunks, "texts")
    return F.normalize(embeds, dim=-1) if normalize else embeds


# -- distributed evaluation ---------------------------------------------------------------------------------
def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group (``(0, 1)`` without one)."""
    from ..losses._distributed import world_info

    return world_info()


def shard_of(n: int) -> tuple[list[int], int]:
    """This rank's contiguous block of ``range(n)`` and how many of its entries are real.

    Every rank gets ``ceil(n / world_size)`` indices (a short block is padded by repeating an index), so all
    ranks run the same number of forward passes: under FSDP / ZeRO-3 each forward gathers parameters
    collectively and a rank with one batch fewer would leave the others waiting.
    """
    rank, size = world()
    per = -(-n // size)
    start = min(rank * per, n)
    own = list(range(start, min(start + per, n)))
    valid = len(own)
    filler = own[-1] if own else max(n - 1, 0)
    return own + [filler] * (per - valid), valid


def map_sharded(fn, n: int, batch_size: int):
    """``fn(indices)`` over ``range(n)`` in batches, each rank on its shard (:func:`shard_of`), the results of
    all ranks gathered in index order on every rank: a tensor of ``n`` rows when ``fn`` returns tensors
    (rows), else a list of ``n`` items. Single process: ``fn`` over all of ``range(n)``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    rank, size = world()
    indices, valid = (list(range(n)), n) if size == 1 else shard_of(n)
    parts = [fn(indices[i : i + batch_size]) for i in range(0, len(indices), batch_size)]
    if parts and isinstance(parts[0], torch.Tensor):
        local = torch.cat(parts)[:valid]
        if size == 1:
            return local
        from ..losses._distributed import gather_rows

        return gather_rows(local.contiguous())
    local = [item for part in parts for item in part][:valid]
    if size == 1:
        return local
    import torch.distributed as dist

    gathered: list[list] = [None] * size  # type: ignore[list-item]
    dist.all_gather_object(gathered, local)
    return [item for part in gathered for item in part]


def can_shard(dataset) -> bool:
    """Map-style data (``datasets.Dataset``): rows can be addressed by index, so each rank embeds its shard.
    Streams are evaluated whole on every rank (the same forwards everywhere, the same results)."""
    return hasattr(dataset, "select") and hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")


def synced_generation() -> bool:
    """``generate(synced_gpus=...)``: with several ranks, a rank that finished keeps stepping until all have, as
    FSDP / ZeRO-3 forwards are collective."""
    return world()[1] > 1


@contextlib.contextmanager
def parameters_for_evaluation(model):
    """Parameters an evaluation reads outside a module's own ``forward`` made whole for its duration.

    Evaluation calls ``get_image_features`` / ``pair_logits`` / heads directly, not ``model.forward``. Under
    FSDP2 the root unit's parameters (final norms, projections, logit scale) are gathered only by the root's
    forward, so the root is unsharded here (the wrapped layers still gather themselves per forward); under
    DeepSpeed ZeRO-3 every module gathers its own parameters in its forward, except the objectives' scalars
    and heads used by scoring, which are gathered here. A no-op elsewhere.
    """
    from torch.distributed.fsdp import FSDPModule

    if isinstance(model, FSDPModule):
        model.unshard()
        try:
            yield
        finally:
            model.reshard()
        return
    objectives = getattr(model, "objectives", None)
    partitioned = [p for p in objectives.parameters() if hasattr(p, "ds_id")] if objectives is not None else []
    if partitioned:
        import deepspeed

        with deepspeed.zero.GatheredParameters(partitioned):
            yield
        return
    yield
