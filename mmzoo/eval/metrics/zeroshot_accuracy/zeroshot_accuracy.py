"""Zero-shot classification top-k accuracy from logits over class prompts (an `evaluate` metric module).

Protocol of Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision" (CLIP):
each image is scored against one text embedding per class; a prediction is correct at k when the true class is among
the k highest logits.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Top-k accuracy of zero-shot classification. `predictions` are the per-class logits (or similarities) of each image,
`references` the true class index. Ties are counted pessimistically: the true class has rank
1 + #(other classes with a logit >= its logit), so a constant model scores chance level, not 100%.
With k >= the number of classes, top-k accuracy is trivially 1.0 (reported as such).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): (num_examples, num_classes) logits.
    references (`list[int]`): true class index per example.
    top_k (`tuple[int, ...]`, default (1, 5)): the k values.
Returns:
    `top{k}_accuracy` (float in [0, 1]) for every k, and `num_examples`.
Examples:
    >>> metric = evaluate.load("mmzoo/eval/metrics/zeroshot_accuracy")
    >>> metric.compute(predictions=[[0.1, 0.9], [0.8, 0.2]], references=[1, 1], top_k=(1,))
    {'top1_accuracy': 0.5, 'num_examples': 2}
"""

_CITATION = """\
@inproceedings{radford2021clip,
  title={Learning Transferable Visual Models From Natural Language Supervision},
  author={Radford, Alec and Kim, Jong Wook and Hallacy, Chris and others}, booktitle={ICML}, year={2021}}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ZeroshotAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float64")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, top_k=(1, 5)):
        lengths = {len(row) for row in predictions}
        if not predictions or len(lengths) != 1 or 0 in lengths:
            raise ValueError(f"predictions must be a (num_examples, num_classes) matrix; got row lengths {lengths}.")
        logits = np.asarray(predictions, dtype=np.float64)
        labels = np.asarray(references, dtype=np.int64)
        if not np.isfinite(logits).all():
            raise ValueError("predictions contain NaN or infinite logits.")
        num_classes = logits.shape[1]
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(
                f"references must be class indices in [0, {num_classes}), got {labels.min()}..{labels.max()}."
            )
        if any(int(k) < 1 for k in top_k):
            raise ValueError(f"top_k values must be >= 1, got {top_k}.")
        true_logit = logits[np.arange(len(labels)), labels]
        rank = (logits >= true_logit[:, None]).sum(1)  # counts the true class itself, so rank is 1-based
        out = {f"top{k}_accuracy": float((rank <= k).mean()) for k in top_k}
        out["num_examples"] = len(labels)
        return out
