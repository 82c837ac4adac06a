"""zeroshot_accuracy and itm_accuracy metrics against hand-computed values."""

from __future__ import annotations

import importlib.util

import evaluate
import pytest

from mmzoo.eval.metrics import metric_path


def _metric(name, tmp_path, **kwargs):
    """A packaged metric instantiated from its file, in memory (evaluate.load is tested in test_metrics_loading)."""
    spec = importlib.util.spec_from_file_location(f"_mmzoo_metric_{name}", metric_path(name) / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cls = next(v for v in vars(module).values() if isinstance(v, type) and issubclass(v, evaluate.Metric))
    return cls(keep_in_memory=True, cache_dir=str(tmp_path), **kwargs)


# true-class ranks (ties pessimistic): 1; 2 (tie with class 1); 3 (0.9 above, tie with class 1); 3
LOGITS = [[0.1, 0.5, 0.4], [0.3, 0.3, 0.1], [0.9, 0.05, 0.05], [0.2, 0.3, 0.5]]
LABELS = [1, 0, 2, 0]


def test_zeroshot_topk_hand_checked(tmp_path):
    out = _metric("zeroshot_accuracy", tmp_path).compute(predictions=LOGITS, references=LABELS, top_k=(1, 2, 3, 5))
    assert out == {
        "top1_accuracy": 0.25,
        "top2_accuracy": 0.5,
        "top3_accuracy": 1.0,
        "top5_accuracy": 1.0,  # k >= num_classes is trivially correct
        "num_examples": 4,
    }


def test_zeroshot_default_keys_and_constant_model(tmp_path):
    out = _metric("zeroshot_accuracy", tmp_path).compute(predictions=[[0.0] * 10] * 4, references=[0, 3, 5, 9])
    assert out == {"top1_accuracy": 0.0, "top5_accuracy": 0.0, "num_examples": 4}


@pytest.mark.parametrize(
    ("predictions", "references", "match"),
    [
        ([[0.1, 0.9], [0.2]], [0, 1], "row lengths"),
        ([[0.1, 0.9]], [2], r"class indices in \[0, 2\)"),
        ([[0.1, float("nan")]], [0], "NaN or infinite"),
    ],
)
def test_zeroshot_errors(tmp_path, predictions, references, match):
    with pytest.raises(ValueError, match=match):
        _metric("zeroshot_accuracy", tmp_path).compute(predictions=predictions, references=references)


# TP = 2 (0, 4), FP = 1 (1), FN = 2 (3, 5), TN = 1 (2)
ITM_PREDICTIONS = [1, 1, 0, 0, 1, 0]
ITM_REFERENCES = [1, 0, 0, 1, 1, 1]
ITM_EXPECTED = {"accuracy": 0.5, "precision": 2 / 3, "recall": 0.5, "f1": 4 / 7, "num_examples": 6}


def test_itm_hand_checked(tmp_path):
    out = _metric("itm_accuracy", tmp_path).compute(predictions=ITM_PREDICTIONS, references=ITM_REFERENCES)
    assert out == pytest.approx(ITM_EXPECTED)


def test_itm_scores_with_threshold(tmp_path):
    scores = [0.9, 0.6, 0.2, 0.4, 0.5, 0.1]  # >= 0.5 gives ITM_PREDICTIONS
    out = _metric("itm_accuracy", tmp_path).compute(predictions=scores, references=ITM_REFERENCES, threshold=0.5)
    assert out == pytest.approx(ITM_EXPECTED)


def test_itm_zero_division_is_zero(tmp_path):
    out = _metric("itm_accuracy", tmp_path).compute(predictions=[0, 0], references=[0, 1])
    assert out == {"accuracy": 0.5, "precision": 0.0, "recall": 0.0, "f1": 0.0, "num_examples": 2}


def test_itm_rejects_scores_without_threshold(tmp_path):
    with pytest.raises(ValueError, match="pass threshold="):
        _metric("itm_accuracy", tmp_path).compute(predictions=[0.7, 0.2], references=[1, 0])
    with pytest.raises(ValueError, match="references must be 0/1 labels, got values \\[2\\]"):
        _metric("itm_accuracy", tmp_path).compute(predictions=[1, 0], references=[2, 0])
