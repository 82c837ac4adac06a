"""CIDEr-D caption consensus score (an `evaluate` metric module).

Vedantam, Zitnick and Parikh 2015, "CIDEr: Consensus-based Image Description Evaluation", in its CIDEr-D form as
computed by the COCO caption evaluation code (tylin/coco-caption, pycocoevalcap/cider/cider_scorer.py):

* for n = 1..4, each caption becomes a TF-IDF vector over its n-grams: g = count * (log(N) - log(max(1, df))),
  where N is the number of evaluated images and df the number of images whose references contain the n-gram
  (document frequencies come from the references of the evaluated corpus only);
* similarity with one reference: sum over the candidate's n-grams of min(g_cand, g_ref) * g_ref (candidate counts
  clipped by the reference counts), divided by the product of the (unclipped) vector norms, times the Gaussian length
  penalty exp(-(l_cand - l_ref)^2 / (2 sigma^2)) with sigma = 6;
* CIDEr-D(image) = 10 * mean over n of the mean over references of that similarity; the corpus score is the mean.
"""

from __future__ import annotations

import math
import re
from collections import Counter

import datasets
import evaluate

_DESCRIPTION = """\
CIDEr-D (Vedantam et al. 2015) as in the COCO caption toolkit: n = 1..4 TF-IDF n-gram vectors with document
frequencies from the references being evaluated, clipped candidate counts, Gaussian length penalty (sigma 6), x10.
The caption length is the toolkit's (number of bigrams, i.e. tokens - 1; only differs for empty captions).
Note that with a single image log(N) = 0, so every score is 0: evaluate a corpus. Default tokenisation approximates
the toolkit's PTB tokenizer (lowercase, keep runs of letters/digits, drop punctuation); pass `tokenizer=callable`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one candidate caption per image.
    references (`list[list[str]]` or `list[str]`): the reference captions of each image.
    sigma (`float`, default 6.0): width of the Gaussian length penalty.
    max_order (`int`, default 4): highest n-gram order.
    tokenizer (`callable`, optional): str -> list[str].
Returns:
    `cider` (corpus mean, 0..10 typically) and `num_examples`.
Examples:
    >>> metric = evaluate.load("mmzoo/eval/metrics/cider")
    >>> metric.compute(predictions=["a dog", "a cat"], references=[["a dog"], ["a cat"]])["cider"]
    5.0
"""

_CITATION = """\
@inproceedings{vedantam2015cider,
  title={CIDEr: Consensus-based Image Description Evaluation},
  author={Vedantam, Ramakrishna and Zitnick, C. Lawrence and Parikh, Devi}, booktitle={CVPR}, year={2015}}
"""

_WORD = re.compile(r"[^\W_]+")


def default_tokenizer(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(tokens: list[str], max_order: int) -> Counter:
    """Counts of all 1..max_order-grams of one caption."""
    return Counter(tuple(tokens[i : i + n]) for n in range(1, max_order + 1) for i in range(len(tokens) - n + 1))


def tfidf(counts: Counter, doc_freq: Counter, log_num_images: float, max_order: int):
    """Per-order TF-IDF vectors and their norms."""
    vectors = [{} for _ in range(max_order)]
    for gram, count in counts.items():
        vectors[len(gram) - 1][gram] = count * (log_num_images - math.log(max(1.0, doc_freq[gram])))
    norms = [math.sqrt(sum(weight * weight for weight in vec.values())) for vec in vectors]
    return vectors, norms


def similarity(candidate, reference, length_delta: float, sigma: float) -> list[float]:
    """Per-order clipped cosine similarity times the Gaussian length penalty."""
    (cand_vecs, cand_norms), (ref_vecs, ref_norms) = candidate, reference
    penalty = math.exp(-(length_delta**2) / (2 * sigma**2))
    scores = []
    for cand, ref, cand_norm, ref_norm in zip(cand_vecs, ref_vecs, cand_norms, ref_norms):
        dot = sum(min(weight, ref.get(gram, 0.0)) * ref.get(gram, 0.0) for gram, weight in cand.items())
        scores.append((dot / (cand_norm * ref_norm) if cand_norm and ref_norm else 0.0) * penalty)
    return scores


def caption_length(tokens: list[str]) -> int:
    return max(len(tokens) - 1, 0)  # the toolkit counts bigrams


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Cider(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
                ),
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            ],
            reference_urls=["https://github.com/tylin/coco-caption"],
        )

    def _compute(self, predictions, references, sigma=6.0, max_order=4, tokenizer=None):
        if not predictions:
            raise ValueError("cider got no predictions.")
        tokenize = tokenizer or default_tokenizer
        candidates = [tokenize(prediction) for prediction in predictions]
        refs_tokens = []
        for index, refs in enumerate(references):
            refs = [refs] if isinstance(refs, str) else refs
            if not refs:
                raise ValueError(f"references[{index}] is empty; every caption needs at least one reference.")
            refs_tokens.append([tokenize(ref) for ref in refs])

        ref_counts = [[ngrams(ref, max_order) for ref in refs] for refs in refs_tokens]
        doc_freq = Counter(gram for counts in ref_counts for gram in set().union(*counts))
        log_num_images = math.log(len(predictions))

        scores = []
        for cand_tokens, refs, counts in zip(candidates, refs_tokens, ref_counts):
            cand = tfidf(ngrams(cand_tokens, max_order), doc_freq, log_num_images, max_order)
            per_order = [0.0] * max_order
            for ref_tokens, ref_count in zip(refs, counts):
                ref = tfidf(ref_count, doc_freq, log_num_images, max_order)
                delta = caption_length(cand_tokens) - caption_length(ref_tokens)
                per_order = [a + b for a, b in zip(per_order, similarity(cand, ref, delta, sigma))]
            scores.append(10.0 * sum(per_order) / max_order / len(refs))
        return {"cider": sum(scores) / len(scores), "num_examples": len(scores)}
