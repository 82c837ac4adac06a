"""``itm``: image-text matching accuracy of the model's ITM head on positives, random and minimal-pair negatives.

Each evaluated image is paired with its first caption (a positive) and with the first caption of another image (a
*random* negative), drawn by a ``seed``-ed permutation: the negative of row i is the next row in a random cyclic order
whose caption is not one of row i's captions. A pair is predicted matched when ``P(match) >= threshold``; the
top-level metrics (``accuracy``, ``f1``, ...) are over positives and random negatives.

When the data knows each scene's objects (the built-in ``shapes``: an ``objects`` column), every image also gets a
*minimal-pair* negative: the canonical caption of the same scene with one attribute (colour, shape, size or
position) of one object changed. ``minimal_pair_accuracy`` is the accuracy over positives and those negatives;
``minimal_pair_rejected_<attribute>`` the fraction of each attribute's minimal pairs scored below the threshold.
A model that only checks which words occur passes random negatives and fails minimal pairs.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from ...data.builtin import shapes
from ..embed import can_shard, map_sharded, to_model
from ._data import as_captions, column_names, indexed_rows, iter_batches
from ._heads import describe_model
from .base import EvaluationTask, TaskParams, TaskResult, load_metric, register_task
from .errors import EvaluationError


class ItmParams(TaskParams):
    batch_size: int = Field(32, ge=1, description="images per forward pass (each with 2 or 3 texts)")
    seed: int = Field(0, description="seed of the negative-caption permutation and of the minimal-pair edits")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="P(match) at or above which a pair is 'matched'")
    minimal_pairs: bool = Field(True, description="also score minimal-pair negatives when the data has `objects`")


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


def minimal_pair_negatives(objects: list[list[dict]], seed: int) -> list[tuple[str, str]]:
    """For each row's scene, ``(attribute, caption)`` of the scene with one attribute of one object changed."""
    rng = np.random.default_rng(seed)
    out = []
    for row in objects:
        attribute, changed = shapes.minimal_pair(shapes.scene_from_objects(row), rng)
        out.append((attribute, shapes.captions(changed)[0]))
    return out


@torch.inference_mode()
def itm_scores(model, processor, images, texts) -> torch.Tensor:
    """P(match) of each (image i, text i) pair, by ``model.score_pairs``."""
    inputs = to_model(processor(text=list(texts), images=list(images), return_tensors="pt"), model)
    rows = torch.arange(len(texts), device=inputs["input_ids"].device)
    return model.score_pairs(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                             pixel_values=inputs["pixel_values"], pairs=torch.stack([rows, rows], dim=1))


@register_task("itm")
class ItmTask(EvaluationTask):
    Params = ItmParams
    columns = ("image", "captions")

    def run(self, model, processor, dataset, params: ItmParams) -> TaskResult:
        objectives = getattr(model, "objectives", None)
        if objectives is None or "itm" not in objectives or not callable(getattr(model, "score_pairs", None)):
            raise EvaluationError(
                f"itm: {describe_model(model)} has no image-text matching head; itm needs an `itm` objective "
                "(and a fusion providing pair_embedding), e.g. the mm-albef presets"
            )
        captions = [as_captions(c, start + j)
                    for start, batch in iter_batches(dataset, ("captions",), 1024, params.max_samples)
                    for j, c in enumerate(batch["captions"])]
        negatives = shuffled_negatives(captions, params.seed)
        minimal = None
        if params.minimal_pairs and "objects" in (column_names(dataset) or ()):
            objects = [o for _, batch in iter_batches(dataset, ("objects",), 1024, params.max_samples)
                       for o in batch["objects"]]
            minimal = minimal_pair_negatives(objects, params.seed)
        copies = 2 if minimal is None else 3

        def scores_of(images, rows):  # (len(rows), copies): P(match) of the positive, random and minimal negative
            texts = [captions[i][0] for i in rows] + [captions[negatives[i]][0] for i in rows]
            if minimal is not None:
                texts += [minimal[i][1] for i in rows]
            return itm_scores(model, processor, list(images) * copies, texts).view(copies, len(rows)).t()

        if can_shard(dataset):  # each rank scores its shard of the pairs; the scores are gathered
            data = indexed_rows(dataset, ("image",), params.max_samples)
            scores = map_sharded(lambda rows: scores_of(data[rows]["image"], rows), len(data), params.batch_size)
        else:
            parts = []
            for start, batch in iter_batches(dataset, ("image",), params.batch_size, params.max_samples):
                parts.append(scores_of(batch["image"], range(start, start + len(batch["image"]))))
            scores = torch.cat(parts)
        scores = scores.float().cpu()
        n = len(captions)
        metric = load_metric("itm_accuracy")
        metric.add_batch(predictions=scores[:, :2].t().reshape(-1).tolist(), references=[1] * n + [0] * n)
        metrics = metric.compute(threshold=params.threshold)
        protocol = {"positives": "first caption", "negatives": "first caption of another image (seeded shuffle)",
                    "num_pairs": 2 * len(captions)}
        if minimal is not None:
            minimal_metric = load_metric("itm_accuracy")
            minimal_metric.add_batch(predictions=scores[:, [0, 2]].t().reshape(-1).tolist(),
                                     references=[1] * n + [0] * n)
            metrics["minimal_pair_accuracy"] = minimal_metric.compute(threshold=params.threshold)["accuracy"]
            for attribute in shapes.ATTRIBUTES:
                picked = [i for i in range(n) if minimal[i][0] == attribute]
                if picked:
                    rejected = scores[picked, 2] < params.threshold
                    metrics[f"minimal_pair_rejected_{attribute}"] = float(rejected.float().mean())
            protocol["minimal_pairs"] = ("canonical caption of the same scene with one attribute (color, shape, size "
                                         "or position) of one object changed (seeded)")
            protocol["num_pairs"] = 3 * len(captions)
        return TaskResult(metrics, protocol)
