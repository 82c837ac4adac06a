"""retrieval_recall metric: hand-checked values, both input configs, agreement with mmzoo.eval.retrieval."""

from __future__ import annotations

import importlib.util

import evaluate
import numpy as np
import pytest
import torch

from mmzoo.eval.metrics import metric_path
from mmzoo.eval.retrieval import retrieval_ranks, retrieval_ranks_full


def _metric(name, tmp_path, **kwargs):
    """A packaged metric instantiated from its file, in memory (evaluate.load is tested in test_metrics_loading)."""
    spec = importlib.util.spec_from_file_location(f"_mmzoo_metric_{name}", metric_path(name) / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cls = next(v for v in vars(module).values() if isinstance(v, type) and issubclass(v, evaluate.Metric))
    return cls(keep_in_memory=True, cache_dir=str(tmp_path), **kwargs)


I2T_RANKS = [1, 6, 11, 3]
T2I_RANKS = [1, 1, 2, 20, 5]
EXPECTED = {
    "image_to_text_recall_at_1": 0.25,
    "image_to_text_recall_at_5": 0.5,
    "image_to_text_recall_at_10": 0.75,
    "image_to_text_mean_rank": 21 / 4,
    "image_to_text_median_rank": 4,  # floor(4.5), as VSE++
    "image_to_text_num_queries": 4,
    "text_to_image_recall_at_1": 0.4,
    "text_to_image_recall_at_5": 0.8,
    "text_to_image_recall_at_10": 0.8,
    "text_to_image_mean_rank": 29 / 5,
    "text_to_image_median_rank": 2,
    "text_to_image_num_queries": 5,
    "mean_recall": (0.25 + 0.5 + 0.75 + 0.4 + 0.8 + 0.8) / 6,
}

# (num_texts, num_images) similarity of the hand-checked fixture in test_retrieval.py (its matrix transposed).
SIMILARITY = [[1, 0, 1], [1, 0, 1], [0, 1, 1], [1, 1, 2]]
TEXT_TO_IMAGE = [0, 1, 1, 2]


def test_ranks_config_hand_checked(tmp_path):
    metric = _metric("retrieval_recall", tmp_path)
    out = metric.compute(
        ranks=I2T_RANKS + T2I_RANKS, directions=["image_to_text"] * 4 + ["text_to_image"] * 5
    )
    assert out == pytest.approx(EXPECTED)
    assert set(out) == set(EXPECTED)


def test_ranks_config_streams_batches(tmp_path):
    metric = _metric("retrieval_recall", tmp_path)
    metric.add_batch(ranks=T2I_RANKS[:2], directions=["text_to_image"] * 2)
    metric.add_batch(ranks=I2T_RANKS, directions=["image_to_text"] * 4)
    metric.add_batch(ranks=T2I_RANKS[2:], directions=["text_to_image"] * 3)
    assert metric.compute() == pytest.approx(EXPECTED)


def test_one_direction_and_custom_k(tmp_path):
    out = _metric("retrieval_recall", tmp_path).compute(
        ranks=T2I_RANKS, directions=["text_to_image"] * 5, recall_at=(2, 20)
    )
    assert out == pytest.approx(
        {
            "text_to_image_recall_at_2": 0.6,
            "text_to_image_recall_at_20": 1.0,
            "text_to_image_mean_rank": 5.8,
            "text_to_image_median_rank": 2,
            "text_to_image_num_queries": 5,
        }
    )


@pytest.mark.parametrize(
    ("ties", "i2t", "t2i"), [("pessimistic", [3, 2, 1], [2, 3, 2, 1]), ("optimistic", [1, 1, 1], [1, 3, 1, 1])]
)
def test_similarity_config_hand_checked(tmp_path, ties, i2t, t2i):
    metric = _metric("retrieval_recall", tmp_path, config_name="similarity")
    out = metric.compute(similarity=SIMILARITY, text_to_image=TEXT_TO_IMAGE, ties=ties, recall_at=(1, 2))
    assert out["image_to_text_recall_at_1"] == pytest.approx(np.mean(np.array(i2t) <= 1))
    assert out["image_to_text_recall_at_2"] == pytest.approx(np.mean(np.array(i2t) <= 2))
    assert out["image_to_text_mean_rank"] == pytest.approx(np.mean(i2t))
    assert out["text_to_image_recall_at_1"] == pytest.approx(np.mean(np.array(t2i) <= 1))
    assert out["text_to_image_mean_rank"] == pytest.approx(np.mean(t2i))
    assert out["text_to_image_median_rank"] == int(np.floor(np.median(t2i)))


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
def test_similarity_config_matches_chunked_ranks(tmp_path, ties):
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(-2, 3, (17, 4), generator=gen).float()
    text_to_image = torch.arange(17).repeat_interleave(torch.randint(1, 4, (17,), generator=gen))
    texts = images[text_to_image] + torch.randint(-1, 2, (len(text_to_image), 4), generator=gen).float()
    ranks = retrieval_ranks(images, texts, text_to_image, chunk_size=5, ties=ties, normalize=False)
    other_rule = "optimistic" if ties == "pessimistic" else "pessimistic"
    other = retrieval_ranks_full(images, texts, text_to_image, ties=other_rule, normalize=False)
    assert not torch.equal(ranks.text_to_image, other.text_to_image)  # ties matter in this fixture
    from_ranks = _metric("retrieval_recall", tmp_path).compute(**ranks.metric_inputs(), recall_at=(1, 3, 5))
    from_matrix = _metric("retrieval_recall", tmp_path, config_name="similarity").compute(
        similarity=(texts @ images.T).tolist(), text_to_image=text_to_image.tolist(), ties=ties, recall_at=(1, 3, 5)
    )
    assert from_matrix == from_ranks


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ranks": [1, 2], "directions": ["image_to_text", "sideways"]}, "directions must be one of"),
        ({"ranks": [0, 2], "directions": ["image_to_text"] * 2}, "1-based and must be >= 1"),
        ({"ranks": [1], "directions": ["image_to_text"], "recall_at": (0,)}, "recall_at values must be >= 1"),
        ({"ranks": [1], "directions": ["image_to_text"], "ties": "random"}, "ties='random' is not one of"),
    ],
)
def test_ranks_config_errors(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _metric("retrieval_recall", tmp_path).compute(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"similarity": [[1.0, 0.0], [0.0, 1.0]], "text_to_image": [0, 0]}, r"images \[1\] have no caption"),
        ({"similarity": [[1.0, 0.0], [0.0, 1.0]], "text_to_image": [0, 2]}, r"must lie in \[0, 2\)"),
        ({"similarity": [[1.0, 0.0], [0.0]], "text_to_image": [0, 1]}, "got row lengths \\[1, 2\\]"),
        ({"similarity": [[1.0, float("nan")], [0.0, 1.0]], "text_to_image": [0, 1]}, "NaN or infinite"),
    ],
)
def test_similarity_config_errors(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _metric("retrieval_recall", tmp_path, config_name="similarity").compute(**kwargs)


def test_unknown_config(tmp_path):
    with pytest.raises(ValueError, match="config_name='matrix' is not one of \\['ranks', 'similarity'\\]"):
        _metric("retrieval_recall", tmp_path, config_name="matrix")
