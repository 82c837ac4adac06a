"""Image-text matching (ITM) accuracy, precision, recall and F1 (an `evaluate` metric module).

ITM is the binary "does this caption match this image" task of ViLBERT/UNITER/ALBEF pretraining
(Li et al. 2021, "Align before Fuse", ALBEF); the scores are the usual binary-classification definitions
(accuracy = correct / total; precision = TP / (TP + FP); recall = TP / (TP + FN); F1 = their harmonic mean).
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Binary image-text matching scores. Label 1 = the pair matches, 0 = it does not. `predictions` are 0/1 labels, or
match scores/probabilities together with `threshold` (prediction = score >= threshold). Precision, recall and F1
are 0.0 when their denominator is 0 (as scikit-learn's zero_division=0).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[float]`): predicted 0/1 labels, or scores when `threshold` is given.
    references (`list[int]`): true 0/1 labels.
    threshold (`float`, optional): binarise score predictions with `score >= threshold`.
Returns:
    `accuracy`, `precision`, `recall`, `f1` (floats in [0, 1]) and `num_examples`.
Examples:
    >>> metric = evaluate.load("mmzoo/eval/metrics/itm_accuracy")
    >>> metric.compute(predictions=[0.9, 0.2, 0.7], references=[1, 0, 0], threshold=0.5)["accuracy"]
    0.6666666666666666
"""

_CITATION = """\
@inproceedings{li2021albef,
  title={Align before Fuse: Vision and Language Representation Learning with Momentum Distillation},
  author={Li, Junnan and Selvaraju, Ramprasaath and Gotmare, Akhilesh and Joty, Shafiq and Xiong, Caiming
          and Hoi, Steven},
  booktitle={NeurIPS}, year={2021}}
"""


def _ratio(numerator: int, denominator: int) -> float:
    return float(numerator / denominator) if denominator else 0.0


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ItmAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # float predictions so that scores are never silently truncated to int labels
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, threshold=None):
        scores, labels = np.asarray(predictions, dtype=np.float64), np.asarray(references, dtype=np.int64)
        if scores.size == 0:
            raise ValueError("itm_accuracy got no predictions.")
        if not np.isin(labels, (0, 1)).all():
            raise ValueError(f"references must be 0/1 labels, got values {sorted(set(labels.tolist()) - {0, 1})[:5]}.")
        if threshold is None:
            if not np.isin(scores, (0.0, 1.0)).all():
                raise ValueError(
                    "predictions must be 0/1 labels; for scores or probabilities pass threshold=... (e.g. 0.5)."
                )
            predicted = scores.astype(np.int64)
        else:
            predicted = (scores >= threshold).astype(np.int64)
        tp = int(((predicted == 1) & (labels == 1)).sum())
        fp = int(((predicted == 1) & (labels == 0)).sum())
        fn = int(((predicted == 0) & (labels == 1)).sum())
        precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        return {
            "accuracy": float((predicted == labels).mean()),
            "precision": precision,
            "recall": recall,
            "f1": _ratio(2 * precision * recall, precision + recall),
            "num_examples": int(labels.size),
        }
