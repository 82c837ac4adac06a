"""Corpus-level BLEU-1..4 for captioning, with multiple references (an `evaluate` metric module).

Papineni et al. 2002, "BLEU: a Method for Automatic Evaluation of Machine Translation": modified (clipped) n-gram
precisions summed over the corpus, their geometric mean with uniform weights, times the brevity penalty
BP = exp(1 - r / c) when c < r (c = total candidate length, r = sum of the reference lengths closest to each
candidate, the shorter one on a tie, as in the COCO caption evaluation code).
"""

from __future__ import annotations

import math
import re
from collections import Counter

import datasets
import evaluate

_DESCRIPTION = """\
Corpus BLEU-n for n = 1..max_order (cumulative: BLEU-n uses the 1..n-gram precisions). No smoothing: BLEU-n is 0
when some k <= n has no matching k-gram in the whole corpus. Default tokenisation approximates the COCO caption
toolkit (which runs the Java PTB tokenizer): lowercase, keep runs of letters/digits, drop punctuation; pass
`tokenizer=callable` to change it. Scores are fractions in [0, 1].
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): one candidate caption per example.
    references (`list[list[str]]` or `list[str]`): one or more reference captions per example.
    max_order (`int`, default 4): highest n-gram order.
    tokenizer (`callable`, optional): str -> list[str]; default lowercases and splits on non-alphanumerics.
Returns:
    `bleu_1` .. `bleu_{max_order}`, `precisions` (modified n-gram precisions), `brevity_penalty`, `length_ratio`,
    `translation_length`, `reference_length`.
Examples:
    >>> metric = evaluate.load("mmzoo/eval/metrics/bleu")
    >>> out = metric.compute(predictions=["the cat sat on the mat"],
    ...                      references=[["the cat is on the mat", "there is a cat on the mat"]])
    >>> round(out["bleu_3"], 6)
    0.5
"""

_CITATION = """\
@inproceedings{papineni2002bleu,
  title={BLEU: a Method for Automatic Evaluation of Machine Translation},
  author={Papineni, Kishore and Roukos, Salim and Ward, Todd and Zhu, Wei-Jing}, booktitle={ACL}, year={2002}}
"""

_WORD = re.compile(r"[^\W_]+")


def default_tokenizer(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngram_counts(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def closest_reference_length(candidate_length: int, reference_lengths: list[int]) -> int:
    return min(reference_lengths, key=lambda length: (abs(length - candidate_length), length))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Bleu(evaluate.Metric):
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
        )

    def _compute(self, predictions, references, max_order=4, tokenizer=None):
        if not predictions:
            raise ValueError("bleu got no predictions.")
        tokenize = tokenizer or default_tokenizer
        matches, totals = [0] * max_order, [0] * max_order
        candidate_length = reference_length = 0
        for index, (prediction, refs) in enumerate(zip(predictions, references)):
            refs = [refs] if isinstance(refs, str) else refs
            if not refs:
                raise ValueError(f"references[{index}] is empty; every caption needs at least one reference.")
            candidate, ref_tokens = tokenize(prediction), [tokenize(ref) for ref in refs]
            candidate_length += len(candidate)
            reference_length += closest_reference_length(len(candidate), [len(ref) for ref in ref_tokens])
            for n in range(1, max_order + 1):
                counts = ngram_counts(candidate, n)
                max_ref_counts = Counter()
                for ref in ref_tokens:
                    max_ref_counts |= ngram_counts(ref, n)  # element-wise max over references
                matches[n - 1] += sum((counts & max_ref_counts).values())  # clipped counts
                totals[n - 1] += sum(counts.values())
        precisions = [m / t if t else 0.0 for m, t in zip(matches, totals)]
        ratio = candidate_length / reference_length if reference_length else 0.0
        brevity_penalty = 1.0 if ratio > 1.0 else (math.exp(1 - 1 / ratio) if ratio > 0 else 0.0)
        out = {}
        for n in range(1, max_order + 1):
            head = precisions[:n]
            geo_mean = math.exp(sum(math.log(p) for p in head) / n) if min(head) > 0 else 0.0
            out[f"bleu_{n}"] = brevity_penalty * geo_mean
        out.update(
            precisions=precisions,
            brevity_penalty=brevity_penalty,
            length_ratio=ratio,
            translation_length=candidate_length,
            reference_length=reference_length,
        )
        return out
