"""``itm``: image-text matching accuracy of the model's ITM head on positives and shuffled negatives.

Each evaluated image is paired with its first caption (a positive) and with the first caption of another image (a
negative), drawn by a ``seed``-ed permutation: the negative of row i is the next row in a random cyclic order
whose caption is not one of row i's captions. A pair is predicted matched when ``P(match) >= threshold``.
"""

from __future__ import annotations

import torch
from pydantic import Field

from ..embed import can_shard, map_sharded, to_model
from ._data import as_captions, indexed_rows, iter_batches
from ._heads import describe_model
from .base import EvaluationTask, TaskParams, TaskResult, load_metric, register_task
from .errors import EvaluationError


class ItmParams(TaskParams):
    batch_size: int = Field(32, ge=1, description="images per forward pass (each with 2 texts)")
    seed: int = Field(0, description="seed of the negative-caption permutation")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="P(match) at or above which a pair is 'matched'")


def shuffled_negatives(captions: list[list[str]], seed: int) -> list[int]:
    """For each row, the index of a different row whose first caption is none of this row's captions."""
    n = len(captions)
    if n < 2:
        raise EvaluationError(f"itm needs at least 2 images to draw negatives, got {n}; raise max_samples")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    position = {row: t for t, row in enumerate(order)}
    negatives = []
    for i in range(n):
        own = set(captions[i])
        for step in range(1, n):
            j = order[(position[i] + step) % n]
            if captions[j][0] not in own:
                negatives.append(j)
                break
        else:
            raise EvaluationError(f"itm: every other image's caption equals one of row {i}'s captions; no negative")
    return negatives


@torch.inference_mode()
def itm_scores(model, processor, images, texts) -> torch.Tensor:
    """P(match) of each (image i, text i) pair from the fused pair embedding and the ITM objective's head."""
    inputs = to_model(processor(text=list(texts), images=list(images), return_tensors="pt"), model)
    fused = model(**inputs).fused_embeds
    return model.objectives["itm"].head(fused).float().softmax(-1)[:, 1]


@register_task("itm")
class ItmTask(EvaluationTask):
    Params = ItmParams
    columns = ("image", "captions")

    def run(self, model, processor, dataset, params: ItmParams) -> TaskResult:
        objectives = getattr(model, "objectives", None)
        if objectives is None or "itm" not in objectives:
            raise EvaluationError(
                f"itm: {describe_model(model)} has no image-text matching head; itm needs an `itm` objective "
                "(and a fusion providing pair_embedding), e.g. the mm-albef presets"
            )
        captions = [as_captions(c, start + j)
                    for start, batch in iter_batches(dataset, ("captions",), 1024, params.max_samples)
                    for j, c in enumerate(batch["captions"])]
        negatives = shuffled_negatives(captions, params.seed)
        metric = load_metric("itm_accuracy")

        def scores_of(images, rows):  # (len(rows), 2): P(match) of the positive and of the negative pair
            texts = [captions[i][0] for i in rows] + [captions[negatives[i]][0] for i in rows]
            return itm_scores(model, processor, list(images) * 2, texts).view(2, len(rows)).t()

        if can_shard(dataset):  # each rank scores its shard of the pairs; the scores are gathered
            data = indexed_rows(dataset, ("image",), params.max_samples)
            scores = map_sharded(lambda rows: scores_of(data[rows]["image"], rows), len(data), params.batch_size)
            metric.add_batch(predictions=scores.t().reshape(-1).cpu().tolist(),
                             references=[1] * len(captions) + [0] * len(captions))
        else:
            for start, batch in iter_batches(dataset, ("image",), params.batch_size, params.max_samples):
                rows = range(start, start + len(batch["image"]))
                scores = scores_of(batch["image"], rows)
                metric.add_batch(predictions=scores.t().reshape(-1).cpu().tolist(),
                                 references=[1] * len(rows) + [0] * len(rows))
        metrics = metric.compute(threshold=params.threshold)
        protocol = {"positives": "first caption", "negatives": "first caption of another image (seeded shuffle)",
                    "num_pairs": 2 * len(captions)}
        return TaskResult(metrics, protocol)
