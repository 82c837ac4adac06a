"""vqa_accuracy, bleu and cider metrics against hand-computed values."""

from __future__ import annotations

import importlib.util
import math

import evaluate
import pytest

from mmzoo.eval.metrics import metric_path


def _module(name):
    spec = importlib.util.spec_from_file_location(f"_mmzoo_metric_{name}", metric_path(name) / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _metric(name, tmp_path, **kwargs):
    """A packaged metric instantiated from its file, in memory (evaluate.load is tested in test_metrics_loading)."""
    module = _module(name)
    cls = next(v for v in vars(module).values() if isinstance(v, type) and issubclass(v, evaluate.Metric))
    return cls(keep_in_memory=True, cache_dir=str(tmp_path), **kwargs)


# ---------------------------------------------------------------- VQA


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Two dogs.", "2 dogs"),  # period stripped, number word
        ("yes!", "yes"),  # glued punctuation -> space
        ("yes !", "yes"),  # punctuation next to a space -> removed
        ("1,000", "1000"),  # digit,digit: punctuation removed, not spaced
        ("red,blue", "red blue"),
        ("red, blue", "red blue"),
        ("3.5", "3.5"),  # period before a digit kept
        ("mr. smith", "mr smith"),
        ("t-shirt", "t shirt"),
        ("\tYES\n", "yes"),
        ("an apple", "apple"),
        ("The", ""),
        ("none", "0"),
        ("ten", "10"),
        ("dont", "don't"),
        ("couldnt've", "couldn't've"),
        ("Im", "im"),  # the official capitalised keys never match after lowercasing
        ("x/y", "x y"),
        ("what's", "what's"),
    ],
)
def test_vqa_normalization(raw, normalized):
    assert _module("vqa_accuracy").normalize_answer(raw) == normalized


def test_vqa_contraction_table_matches_official_entries():
    table = _module("vqa_accuracy").CONTRACTIONS
    official = {  # entries of the official vqaEval.py table
        "aint": "ain't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "hed": "he'd",
        "hed've": "he'd've", "he'dve": "he'd've", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
        "'ow'sat": "'ow's'at", "twas": "'twas", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
        "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "oclock": "o'clock",
        "maam": "ma'am", "wont": "won't", "youve": "you've", "whyre": "why're", "therere": "there're",
    }  # fmt: skip
    assert {key: table.get(key) for key in official} == official
    assert "shed" not in table and "its" not in table and "well" not in table  # real words stay
    # the official table has 120 keys: ours drops its 4 capitalised keys (dead after lowercasing), 2 identities
    # ("let's", "she's") and the reversed "somebody'd" -> "somebodyd", and adds "somebodyd" -> "somebody'd"
    assert len(table) == 120 - 7 + 1
    assert table["somebodyd"] == "somebody'd"


@pytest.mark.parametrize(("matches", "expected"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)])
def test_vqa_ten_answers_official_values(matches, expected):
    answers = ["2"] * matches + ["3"] * (10 - matches)
    assert _module("vqa_accuracy").soft_accuracy("2", answers) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        (["2"], 1.0),
        (["3"], 0.0),
        (["2", "3"], 0.5),  # threshold 1: leave out "2" -> 0, leave out "3" -> 1
        (["2", "2", "3"], 2 / 3),  # threshold 2: 1/2, 1/2, 1
        (["2", "2", "2", "3", "3"], 0.8),  # threshold 3: 2/3 x 3, 1 x 2
    ],
)
def test_vqa_fewer_answers(answers, expected):
    assert _module("vqa_accuracy").soft_accuracy("2", answers) == pytest.approx(expected)


def test_vqa_metric(tmp_path):
    out = _metric("vqa_accuracy", tmp_path).compute(
        predictions=["Two", "yes", "blue"],
        references=[["2"] * 3 + ["3"] * 7, ["Yes."] * 10, ["red"] * 10],
    )
    assert out == pytest.approx({"vqa_accuracy": (0.9 + 1.0 + 0.0) / 3, "num_examples": 3})


def test_vqa_errors(tmp_path):
    with pytest.raises(ValueError, match=r"references\[1\] is empty"):
        _metric("vqa_accuracy", tmp_path).compute(predictions=["a", "b"], references=[["a"], []])
    with pytest.raises(ValueError):  # a bare string is not a list of answers
        _metric("vqa_accuracy", tmp_path).compute(predictions=["a"], references=["a"])


# ---------------------------------------------------------------- BLEU

CAT = "the cat sat on the mat"
CAT_REFS = ["the cat is on the mat", "there is a cat on the mat"]
# clipped matches: 1-grams the x2, cat, on, mat = 5/6; 2-grams the cat, on the, the mat = 3/5; 3-grams on the mat = 1/4;
# 4-grams 0/3. Closest reference length 6 = candidate length, BP = 1.


def test_bleu_single_sentence(tmp_path):
    out = _metric("bleu", tmp_path).compute(predictions=[CAT], references=[CAT_REFS])
    assert out["precisions"] == pytest.approx([5 / 6, 3 / 5, 1 / 4, 0.0])
    assert out["bleu_1"] == pytest.approx(5 / 6)
    assert out["bleu_2"] == pytest.approx(math.sqrt(5 / 6 * 3 / 5))
    assert out["bleu_3"] == pytest.approx(0.5)
    assert out["bleu_4"] == 0.0  # no smoothing
    assert out["brevity_penalty"] == 1.0


def test_bleu_corpus_with_brevity_penalty(tmp_path):
    # second candidate: 2 words, closest reference 3 words ("a dog runs"); corpus c = 8, r = 9
    out = _metric("bleu", tmp_path).compute(
        predictions=[CAT, "A dog."], references=[CAT_REFS, ["a dog runs", "the dog runs fast"]]
    )
    bp = math.exp(1 - 9 / 8)
    assert (out["translation_length"], out["reference_length"]) == (8, 9)
    assert out["brevity_penalty"] == pytest.approx(bp)
    assert out["bleu_1"] == pytest.approx(bp * 7 / 8)
    assert out["bleu_2"] == pytest.approx(bp * math.sqrt(7 / 8 * 4 / 6))
    assert out["bleu_3"] == pytest.approx(bp * (7 / 8 * 4 / 6 * 1 / 4) ** (1 / 3))


def test_bleu_clipping_and_closest_length(tmp_path):
    # Papineni et al.'s example: modified unigram precision 2/7
    out = _metric("bleu", tmp_path).compute(
        predictions=["the the the the the the the"],
        references=[["The cat is on the mat.", "There is a cat on the mat."]],
    )
    assert out["precisions"][0] == pytest.approx(2 / 7)
    # equally close references (2 and 4 words for a 3-word candidate): the shorter one counts
    out = _metric("bleu", tmp_path).compute(predictions=["a b c"], references=[["a b", "a b c d"]])
    assert out["reference_length"] == 2 and out["brevity_penalty"] == 1.0


def test_bleu_single_reference_strings(tmp_path):
    metric = _metric("bleu", tmp_path)
    assert metric.compute(predictions=[CAT], references=[CAT_REFS[0]])["precisions"] == pytest.approx(
        [5 / 6, 3 / 5, 1 / 4, 0.0]
    )


# ---------------------------------------------------------------- CIDEr-D


def test_cider_perfect_two_word_captions(tmp_path):
    # every n-gram has df 1 of N = 2 images; orders 1 and 2 give cosine 1, orders 3 and 4 are empty: 10 * 2/4
    out = _metric("cider", tmp_path).compute(predictions=["a dog", "the cat"], references=[["a dog"], ["the cat"]])
    assert out["cider"] == pytest.approx(5.0)


def test_cider_hand_checked_idf_length_penalty(tmp_path):
    predictions = ["a b", "d x", "a d"]
    references = [["a b c", "a b"], ["d e"], ["a d"]]
    # N = 3; "a" and "d" occur in the references of 2 images, every other n-gram in 1 (or 0: "x", "d x").
    low, high = math.log(3) - math.log(2), math.log(3)
    penalty = math.exp(-(1**2) / (2 * 6**2))  # "a b" vs "a b c": 1 vs 2 bigrams
    sim_ref1 = math.sqrt(low**2 + high**2) / math.sqrt(low**2 + 2 * high**2) + 1 / math.sqrt(2)  # orders 1, 2
    image_a = 10 / 4 * ((sim_ref1 * penalty) + 2) / 2  # the second reference is identical: 1 + 1
    image_b = 10 / 4 * low**2 / (low**2 + high**2)  # only "d" matches
    image_c = 10 / 4 * 2
    out = _metric("cider", tmp_path).compute(predictions=predictions, references=references)
    assert out["cider"] == pytest.approx((image_a + image_b + image_c) / 3)


def test_cider_clips_candidate_counts(tmp_path):
    # "b b" vs "b c": tf-idf b 2w vs w, clipped dot = w*w, norms 2w and w*sqrt(2) -> 1/(2*sqrt(2)) at order 1
    out = _metric("cider", tmp_path).compute(predictions=["b b", "d e"], references=[["b c"], ["d e"]])
    assert out["cider"] == pytest.approx((10 / 4 / (2 * math.sqrt(2)) + 5.0) / 2)


def test_cider_single_image_is_zero(tmp_path):
    out = _metric("cider", tmp_path).compute(predictions=["a dog"], references=["a dog"])
    assert out == {"cider": 0.0, "num_examples": 1}
