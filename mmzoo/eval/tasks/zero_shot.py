"""``zero_shot_classification``: classify images by similarity to prompted class names (CLIP, Radford et al. 2021).

Each class is embedded as the normalised mean of its normalised prompt embeddings, one prompt per template
(CLIP's prompt ensembling); an image's logits are ``model.pair_logits(image, classes)`` (the model's own scoring;
a plain dot product for models without it). Class names default to the label column's ``ClassLabel`` names.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from ..embed import can_shard, embed_images, embed_texts, map_sharded
from ._data import indexed_rows, iter_batches, require_columns
from .base import EvaluationTask, TaskParams, TaskResult, load_metric, register_task
from .errors import EvaluationError

DEFAULT_TEMPLATES = ("a photo of a {}.",)


class ZeroShotParams(TaskParams):
    class_names: tuple[str, ...] | None = Field(
        None, description="name of each label id, in order; default the label column's ClassLabel names"
    )
    templates: tuple[str, ...] = Field(DEFAULT_TEMPLATES, min_length=1, description="prompts; {} is the class name")
    top_k: tuple[int, ...] = Field((1, 5), min_length=1, description="top-k accuracies (k > #classes is skipped)")
    label_column: str = Field("label", description="column of integer class ids")

    @field_validator("templates")
    @classmethod
    def _placeholder(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [t for t in value if "{}" not in t]
        if bad:
            raise ValueError(f"every template needs a {{}} placeholder for the class name; got {bad}")
        return value

    @field_validator("top_k")
    @classmethod
    def _positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if min(value) < 1:
            raise ValueError(f"top_k values must be >= 1, got {list(value)}")
        return tuple(sorted(set(value)))


def class_embeddings(model, processor, class_names, templates, batch_size: int = 256) -> torch.Tensor:
    """``(num_classes, dim)`` unit vectors: per class, the normalised mean of its normalised prompt embeddings."""
    prompts = [template.replace("{}", name) for name in class_names for template in templates]
    embeds = embed_texts(model, processor, prompts, batch_size, normalize=True)
    embeds = embeds.view(len(class_names), len(templates), -1).mean(dim=1)
    return F.normalize(embeds, dim=-1)


@torch.inference_mode()
def zero_shot_logits(model, image_embeds: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """``(num_images, num_classes)`` logits of unit image embeddings against unit class embeddings."""
    pair_logits = getattr(model, "pair_logits", None)
    return pair_logits(image_embeds, classes) if callable(pair_logits) else image_embeds @ classes.t()


@register_task("zero_shot_classification")
class ZeroShotClassificationTask(EvaluationTask):
    Params = ZeroShotParams
    columns = ("image",)

    def check_data(self, dataset) -> None:
        pass  # the label column is a parameter: checked in run()

    def run(self, model, processor, dataset, params: ZeroShotParams) -> TaskResult:
        require_columns(dataset, ("image", params.label_column), self.name,
                        "Set label_column: to the column holding integer class ids.")
        class_names = params.class_names or _class_label_names(dataset, params.label_column)
        classes = class_embeddings(model, processor, class_names, params.templates, params.batch_size)
        metric = load_metric("zeroshot_accuracy")
        num_classes = len(class_names)
        columns = ("image", params.label_column)

        def check(labels, start):
            bad = [(start + j, y) for j, y in enumerate(labels) if not isinstance(y, int) or not 0 <= y < num_classes]
            if bad:
                raise EvaluationError(
                    f"zero_shot_classification: row {bad[0][0]} has label {bad[0][1]!r}, not a class id in "
                    f"[0, {num_classes}) ({num_classes} class_names); fix class_names or label_column"
                )

        def logits_of(images):
            return zero_shot_logits(model, embed_images(model, processor, images, params.batch_size, normalize=True),
                                    classes).float()

        if can_shard(dataset):  # each rank scores its shard of the images; the logits are gathered
            data = indexed_rows(dataset, columns, params.max_samples)
            labels = data[params.label_column]
            check(labels, 0)
            logits = map_sharded(lambda rows: logits_of(data[rows]["image"]), len(data), params.batch_size)
            metric.add_batch(predictions=logits.cpu().tolist(), references=labels)
        else:
            for start, batch in iter_batches(dataset, columns, params.batch_size, params.max_samples):
                check(batch[params.label_column], start)
                metric.add_batch(predictions=logits_of(batch["image"]).cpu().tolist(),
                                 references=batch[params.label_column])
        top_k = tuple(k for k in params.top_k if k <= num_classes)
        if not top_k:
            raise EvaluationError(
                f"zero_shot_classification: top_k {list(params.top_k)} all exceed the {num_classes} classes; "
                "set top_k: [1]"
            )
        metrics = metric.compute(top_k=top_k)
        protocol = {"class_names": list(class_names), "top_k": list(top_k), "class_embedding": "prompt ensemble"}
        return TaskResult(metrics, protocol)


def _class_label_names(dataset, column: str) -> list[str]:
    feature = (getattr(dataset, "features", None) or {}).get(column)
    names = getattr(feature, "names", None)
    if not names:
        raise EvaluationError(
            f"zero_shot_classification: column {column!r} is not a ClassLabel with names ({feature!r}); "
            "set class_names: [...] (the name of each label id, in order) in the evaluation entry"
        )
    return list(names)
