"""Image-text retrieval recall@K, mean rank and median rank (an `evaluate` metric module).

Recall@K as used for Flickr30k/COCO retrieval (Karpathy & Fei-Fei 2015, "Deep Visual-Semantic Alignments for
Generating Image Descriptions"; Faghri et al. 2018, "VSE++", whose code defines MedR = floor(median rank)).
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Recall@K, mean rank and median rank for image->text and text->image retrieval, from the 1-based rank of the first
correct item of every query. Image->text: an image counts as retrieved at K when ANY of its captions is in the top K
(its rank is that of its best caption). Text->image: each caption has exactly one correct image.

Two input configurations (`evaluate.load(path, config_name=...)`):
- "ranks" (default, scales to any size): one row per query, `ranks` (int >= 1) and `directions`
  ("image_to_text" or "text_to_image"). Compute the ranks with `mmzoo.eval.retrieval.retrieval_ranks(...)` and pass
  `RetrievalRanks.metric_inputs()`.
- "similarity" (small sets): one row per text, `similarity` = that text's row of the (num_texts, num_images)
  similarity matrix (CLIP's `logits_per_text`) and `text_to_image` = the index of its image.

Ties (similarity config): ties="pessimistic" (default) counts incorrect items scoring >= the best correct one,
ties="optimistic" only those scoring strictly higher; the same rule as mmzoo.eval.retrieval.
Recalls are fractions in [0, 1]; the median rank is floor(median) as in VSE++.
"""

_KWARGS_DESCRIPTION = """
Args:
    ranks (`list[int]`): "ranks" config; 1-based rank of the first correct item for each query.
    directions (`list[str]`): "ranks" config; "image_to_text" or "text_to_image" for each query.
    similarity (`list[list[float]]`): "similarity" config; (num_texts, num_images) similarity rows.
    text_to_image (`list[int]`): "similarity" config; image index of each text.
    recall_at (`tuple[int, ...]`, default (1, 5, 10)): the K values.
    ties (`str`, default "pessimistic"): tie rule for the similarity config.
Returns:
    For each direction D present ("image_to_text", "text_to_image"): `D_recall_at_K` for every K,
    `D_mean_rank`, `D_median_rank`, `D_num_queries`; plus `mean_recall` (mean of all recalls) when both are present.
Examples:
    >>> metric = evaluate.load("mmzoo/eval/metrics/retrieval_recall")
    >>> out = metric.compute(ranks=[1, 6, 1, 2], directions=["image_to_text"] * 2 + ["text_to_image"] * 2)
    >>> out["image_to_text_recall_at_5"], out["text_to_image_median_rank"]
    (0.5, 1)
"""

_CITATION = """\
@inproceedings{karpathy2015deep,
  title={Deep Visual-Semantic Alignments for Generating Image Descriptions},
  author={Karpathy, Andrej and Fei-Fei, Li}, booktitle={CVPR}, year={2015}}
@inproceedings{faghri2018vse,
  title={VSE++: Improving Visual-Semantic Embeddings with Hard Negatives},
  author={Faghri, Fartash and Fleet, David J and Kiros, Jamie Ryan and Fidler, Sanja}, booktitle={BMVC}, year={2018}}
"""

DIRECTIONS = ("image_to_text", "text_to_image")
TIES = ("pessimistic", "optimistic")

_FEATURES = {
    "ranks": datasets.Features({"ranks": datasets.Value("int64"), "directions": datasets.Value("string")}),
    "similarity": datasets.Features(
        {"similarity": datasets.Sequence(datasets.Value("float64")), "text_to_image": datasets.Value("int64")}
    ),
}


def ranks_from_similarity(similarity: np.ndarray, text_to_image: np.ndarray, ties: str) -> dict[str, np.ndarray]:
    """1-based image->text and text->image ranks from a (num_texts, num_images) similarity matrix."""
    num_texts, num_images = similarity.shape
    if not np.isfinite(similarity).all():
        raise ValueError("similarity contains NaN or infinite values.")
    if num_texts and (text_to_image.min() < 0 or text_to_image.max() >= num_images):
        raise ValueError(f"text_to_image values must lie in [0, {num_images}) (the number of similarity columns).")
    texts = np.arange(num_texts)
    is_caption = text_to_image[:, None] == np.arange(num_images)[None, :]  # (num_texts, num_images)
    uncaptioned = np.flatnonzero(~is_caption.any(0))
    if uncaptioned.size:
        raise ValueError(f"images {uncaptioned[:5].tolist()} have no caption; every image needs one for image->text.")

    correct = similarity[texts, text_to_image]
    best = np.full(num_images, -np.inf)
    np.maximum.at(best, text_to_image, correct)
    if ties == "pessimistic":
        i2t = 1 + ((similarity >= best[None, :]) & ~is_caption).sum(0)
        t2i = 1 + ((similarity >= correct[:, None]) & ~is_caption).sum(1)
    else:
        i2t = 1 + (similarity > best[None, :]).sum(0)
        t2i = 1 + (similarity > correct[:, None]).sum(1)
    return {"image_to_text": i2t, "text_to_image": t2i}


def summarize(ranks: np.ndarray, prefix: str, recall_at) -> dict:
    out = {f"{prefix}_recall_at_{k}": float((ranks <= k).mean()) for k in recall_at}
    out[f"{prefix}_mean_rank"] = float(ranks.mean())
    out[f"{prefix}_median_rank"] = int(np.floor(np.median(ranks)))
    out[f"{prefix}_num_queries"] = int(ranks.size)
    return out


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RetrievalRecall(evaluate.Metric):
    def _info(self):
        if self.config_name == "default":
            self.config_name = "ranks"
        if self.config_name not in _FEATURES:
            raise ValueError(f"retrieval_recall config_name={self.config_name!r} is not one of {sorted(_FEATURES)}.")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=_FEATURES[self.config_name],
            reference_urls=["https://github.com/fartashf/vsepp/blob/master/evaluation.py"],
        )

    def _compute(self, recall_at=(1, 5, 10), ties="pessimistic", **inputs):
        if ties not in TIES:
            raise ValueError(f"ties={ties!r} is not one of {TIES}.")
        if any(int(k) < 1 for k in recall_at):
            raise ValueError(f"recall_at values must be >= 1, got {recall_at}.")
        if "similarity" in inputs:
            by_direction = self._ranks_from_similarity(inputs["similarity"], inputs["text_to_image"], ties)
        else:
            by_direction = self._ranks_by_direction(inputs["ranks"], inputs["directions"])
        out = {}
        for direction, ranks in by_direction.items():
            out.update(summarize(ranks, direction, recall_at))
        if len(by_direction) == len(DIRECTIONS):
            recalls = [out[f"{d}_recall_at_{k}"] for d in DIRECTIONS for k in recall_at]
            out["mean_recall"] = float(np.mean(recalls))
        return out

    @staticmethod
    def _ranks_by_direction(ranks, directions) -> dict[str, np.ndarray]:
        ranks, directions = np.asarray(ranks, dtype=np.int64), np.asarray(directions)
        if ranks.size == 0:
            raise ValueError("retrieval_recall got no ranks; pass ranks=[...] and directions=[...].")
        unknown = sorted(set(directions.tolist()) - set(DIRECTIONS))
        if unknown:
            raise ValueError(f"directions must be one of {DIRECTIONS}, got {unknown}.")
        if ranks.min() < 1:
            raise ValueError(f"ranks are 1-based and must be >= 1, got {int(ranks.min())}.")
        return {d: ranks[directions == d] for d in DIRECTIONS if (directions == d).any()}

    @staticmethod
    def _ranks_from_similarity(similarity, text_to_image, ties) -> dict[str, np.ndarray]:
        lengths = {len(row) for row in similarity}
        if len(similarity) == 0 or len(lengths) != 1:
            raise ValueError(
                f"similarity must be a non-empty (num_texts, num_images) matrix; got row lengths {sorted(lengths)}."
            )
        return ranks_from_similarity(
            np.asarray(similarity, dtype=np.float64), np.asarray(text_to_image, dtype=np.int64), ties
        )
