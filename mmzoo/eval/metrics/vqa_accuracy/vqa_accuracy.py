"""VQA soft accuracy with the official answer normalisation (an `evaluate` metric module).

Antol et al. 2015, "VQA: Visual Question Answering", and the official evaluation script (GT-Vision-Lab/VQA,
PythonEvaluationTools/vqaEvaluation/vqaEval.py), re-implemented here: for each of the 10 leave-one-out subsets of
the 10 human answers, acc = min(#humans in the subset who gave the predicted answer / 3, 1); the score is the mean.
"""

from __future__ import annotations

import re
from itertools import combinations

import datasets
import evaluate

_DESCRIPTION = """\
VQA accuracy: min(#matching human answers / 3, 1), averaged over the 10 "leave one human out" subsets of the
10 answers (Antol et al. 2015). Before matching, the prediction and every human answer are normalised as in the
official script: newlines/tabs to spaces and strip; punctuation removed (or replaced by a space when it is not next to
a space and the answer has no digit,digit comma); periods removed unless followed by a digit; lowercase; number words
"none", "zero".."ten" -> digits; articles a/an/the dropped; apostrophe-less contractions restored ("dont" -> "don't").

Differences from the official script (documented choices):
- Both sides are always normalised; the official script skips normalisation when all 10 humans agree (it relies
  on submissions being pre-normalised). For normalised inputs both give the same score.
- The contraction table is generated from the canonical contractions (each key = the contraction with one apostrophe
  dropped). It equals the official table except for its dead entries (capitalised keys such as "Im", never hit
  after lowercasing; identities such as "let's") and its reversed "somebody'd" -> "somebodyd" entry.
- n != 10 human answers: the same leave-one-out mean over the n subsets of n - 1 answers, with the threshold
  min(3, n - 1) matches for full credit; n = 1 is exact match. n = 10 is exactly the official formula.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]`): predicted answer per question.
    references (`list[list[str]]`): the human answers per question (10 in VQA v2; at least 1).
Returns:
    `vqa_accuracy` (float in [0, 1], mean over questions) and `num_examples`.
Examples:
    >>> metric = evaluate.load("mmzoo/eval/metrics/vqa_accuracy")
    >>> round(metric.compute(predictions=["Two."], references=[["2"] * 2 + ["3"] * 8])["vqa_accuracy"], 4)
    0.6
"""

_CITATION = """\
@inproceedings{antol2015vqa,
  title={VQA: Visual Question Answering},
  author={Antol, Stanislaw and Agrawal, Aishwarya and Lu, Jiasen and Mitchell, Margaret and Batra, Dhruv and
          Zitnick, C. Lawrence and Parikh, Devi}, booktitle={ICCV}, year={2015}}
"""

# Punctuation handled by the official script (note: no apostrophe, colon or period; periods are handled apart).
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
ARTICLES = frozenset({"a", "an", "the"})
# Canonical forms whose apostrophe-less spellings the official script restores.
_CANONICAL_CONTRACTIONS = """
ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't haven't he'd he'd've
he's how'd how'll how's isn't it'd it'd've it'll ma'am mightn't mightn't've might've mustn't must've needn't not've
o'clock oughtn't 'ow's'at shan't she'd've should've shouldn't shouldn't've somebody'd somebody'd've somebody'll
somebody's someone'd someone'd've someone'll someone's something'd something'd've something'll that's there'd
there'd've there're there's they'd they'd've they'll they're they've 'twas wasn't we'd've we've weren't what'll
what're what's what've when's where'd where's where've who'd who'd've who'll who's who've why'll why're why's won't
would've wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll you're you've
""".split()


def _contraction_table(canonical: list[str]) -> dict[str, str]:
    """Map every spelling with exactly one apostrophe dropped to the canonical form ("couldnt've" -> "couldn't've")."""
    table = {}
    for word in canonical:
        for i in (i for i, char in enumerate(word) if char == "'"):
            table[word[:i] + word[i + 1 :]] = word
    return table


CONTRACTIONS = _contraction_table(_CANONICAL_CONTRACTIONS)
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")


def _strip_punctuation(text: str) -> str:
    has_digit_comma = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in PUNCTUATION:
        # The test reads the original text, as in the official script.
        glued = not (mark + " " in text or " " + mark in text or has_digit_comma)
        out = out.replace(mark, " " if glued else "")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out)


def normalize_answer(answer: str) -> str:
    """Official VQA answer normalisation (see the module description), e.g. "Two dogs." -> "2 dogs"."""
    text = _strip_punctuation(answer.replace("\n", " ").replace("\t", " ").strip())
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    return " ".join(CONTRACTIONS.get(word, word) for word in words if word not in ARTICLES)


def soft_accuracy(prediction: str, answers: list[str]) -> float:
    """Leave-one-out VQA accuracy of one normalised prediction against n >= 1 normalised human answers."""
    if len(answers) == 1:
        return float(prediction == answers[0])
    threshold = min(3, len(answers) - 1)
    subsets = list(combinations(answers, len(answers) - 1))
    return sum(min(subset.count(prediction) / threshold, 1.0) for subset in subsets) / len(subsets)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class VqaAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
            ),
            reference_urls=["https://github.com/GT-Vision-Lab/VQA"],
        )

    def _compute(self, predictions, references):
        if not predictions:
            raise ValueError("vqa_accuracy got no predictions.")
        scores = []
        for index, (prediction, answers) in enumerate(zip(predictions, references)):
            if not answers:
                raise ValueError(f"references[{index}] is empty; every question needs at least one human answer.")
            scores.append(soft_accuracy(normalize_answer(prediction), [normalize_answer(a) for a in answers]))
        return {"vqa_accuracy": sum(scores) / len(scores), "num_examples": len(scores)}
