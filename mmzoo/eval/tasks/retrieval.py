"""``retrieval``: image->text and text->image recall@K and mean/median rank over all images and all captions.

Every caption of every image is a query (text->image) and a gallery item (image->text; an image is retrieved at
K when any of its captions is in the top K). Embeddings come from ``get_image_features`` / ``get_text_features``
in batches; ranks from :func:`mmzoo.eval.retrieval.retrieval_ranks` in chunks of ``chunk_size`` queries, so the
full similarity matrix is never built (exact ranks; cosine similarity).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, field_validator

from ..embed import can_shard, embed_images, embed_texts, map_sharded
from ..retrieval import retrieval_ranks
from ._data import as_captions, indexed_rows, iter_batches
from .base import EvaluationTask, TaskParams, TaskResult, load_metric, register_task
from .errors import EvaluationError


class RetrievalParams(TaskParams):
    chunk_size: int = Field(1024, ge=1, description="queries scored per step (memory: chunk_size x gallery)")
    recall_at: tuple[int, ...] = Field((1, 5, 10), min_length=1, description="the K of recall@K")
    ties: Literal["pessimistic", "optimistic"] = Field(
        "pessimistic", description="incorrect items scoring equal to the correct one rank above it (pessimistic)"
    )

    @field_validator("recall_at")
    @classmethod
    def _positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if min(value) < 1:
            raise ValueError(f"recall_at values must be >= 1, got {list(value)}")
        return tuple(sorted(set(value)))


@register_task("retrieval")
class RetrievalTask(EvaluationTask):
    Params = RetrievalParams
    columns = ("image", "captions")
    RUNTIME = frozenset({"batch_size", "chunk_size"})

    def run(self, model, processor, dataset, params: RetrievalParams) -> TaskResult:
        for method in ("get_image_features", "get_text_features"):
            if not callable(getattr(model, method, None)):
                raise EvaluationError(
                    f"retrieval: {type(model).__name__} has no {method}(); retrieval needs a model that embeds "
                    "images and texts into one space (an mmzoo model, CLIP...)"
                )
        images, texts, owners = self.embed(model, processor, dataset, params)
        ranks = retrieval_ranks(images, texts, torch.tensor(owners, device=images.device),
                                chunk_size=params.chunk_size, max_k=0, ties=params.ties)
        metrics = load_metric("retrieval_recall").compute(**ranks.metric_inputs(), recall_at=params.recall_at,
                                                          ties=params.ties)
        protocol = {"similarity": "cosine", "num_images": images.shape[0], "num_texts": texts.shape[0]}
        return TaskResult(metrics, protocol)

    def embed(self, model, processor, dataset, params: RetrievalParams):
        """``(image_embeds, text_embeds, owners)`` of every image and caption; each rank embeds its shard and
        the results are gathered (map-style data), or every rank embeds all (streams)."""
        if not can_shard(dataset):
            image_embeds, text_embeds, owners = [], [], []
            for start, batch in iter_batches(dataset, self.columns, params.batch_size, params.max_samples):
                captions = [as_captions(c, start + j) for j, c in enumerate(batch["captions"])]
                image_embeds.append(embed_images(model, processor, batch["image"], params.batch_size))
                texts = [text for row in captions for text in row]
                text_embeds.append(embed_texts(model, processor, texts, params.batch_size))
                owners += [start + j for j, row in enumerate(captions) for _ in row]
            return torch.cat(image_embeds), torch.cat(text_embeds), owners
        data = indexed_rows(dataset, self.columns, params.max_samples)
        captions = [as_captions(c, i) for i, c in enumerate(data["captions"])]
        texts = [text for row in captions for text in row]
        owners = [i for i, row in enumerate(captions) for _ in row]
        images = map_sharded(lambda rows: embed_images(model, processor, data[rows]["image"], params.batch_size),
                             len(data), params.batch_size)
        text_embeds = map_sharded(lambda rows: embed_texts(model, processor, [texts[i] for i in rows],
                                                           params.batch_size), len(texts), params.batch_size)
        return images, text_embeds, owners
