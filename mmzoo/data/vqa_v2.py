"""VQA v2 (Goyal et al. 2017) read in its original layout: question and annotation JSON files + COCO images.

::

    <path>/v2_OpenEnded_mscoco_train2014_questions.json   {"questions": [{"image_id", "question", "question_id"}]}
    <path>/v2_mscoco_train2014_annotations.json          {"annotations": [{"question_id", "image_id",
                                                            "answers": [{"answer", ...} x 10], ...}]}
    <path>/v2_OpenEnded_mscoco_val2014_questions.json, v2_mscoco_val2014_annotations.json
    <path>/v2_OpenEnded_mscoco_test2015_questions.json, v2_OpenEnded_mscoco_test-dev2015_questions.json
    <images>/train2014/COCO_train2014_000000000009.jpg, <images>/val2014/..., <images>/test2015/...

Splits: ``train`` (train2014), ``validation`` (val2014), ``test`` (test2015) and ``test-dev`` (test-dev2015, images
in test2015/); the test splits have no annotations, so no ``answers`` column. One row per question: ``image``,
``question``, ``answers`` (the 10 human answers, in annotation order).

With ``normalize_answers: true`` (the default) each answer goes through the official VQA evaluation's
normalisation (punctuation, number words to digits, articles, contractions; the one owner of it is the
``vqa_accuracy`` metric), so "Two", "two." and "2" are one class of the answer vocabulary and the soft training
targets count them together. The metric normalises again when scoring (the normalisation is idempotent).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import field_validator

from ._layout import build_dataset, entries, field, read_json, resolve
from .errors import DataError
from .source_base import LayoutSourceSpec, register_source_spec

# recipe split -> (file subtype, image folder)
VQA_SPLITS = {
    "train": ("train2014", "train2014"),
    "validation": ("val2014", "val2014"),
    "val": ("val2014", "val2014"),
    "test": ("test2015", "test2015"),
    "test-dev": ("test-dev2015", "test2015"),
}
VQA_LAYOUT = ("expected the VQA v2 layout: <path>/v2_OpenEnded_mscoco_<subtype>_questions.json (+ "
              "v2_mscoco_<subtype>_annotations.json for train2014 / val2014) and the COCO images in "
              "<images>/<train2014|val2014|test2015>/COCO_<subtype>_<12-digit image id>.jpg")


def question_file(subtype: str) -> str:
    return f"v2_OpenEnded_mscoco_{subtype}_questions.json"


def annotation_file(subtype: str) -> str:
    return f"v2_mscoco_{subtype}_annotations.json"


def normalize_answer(answer: str) -> str:
    """The official VQA answer normalisation, owned by the ``vqa_accuracy`` metric (a self-contained ``evaluate``
    script in mmzoo.eval, above this layer) and provided to it as the ``vqa_answer_normalizer`` service."""
    from ..utils.services import service

    return service("vqa_answer_normalizer")(answer)


@register_source_spec
class VqaV2SourceSpec(LayoutSourceSpec):
    """VQA v2 questions + annotations (see the module docs for the layout).

    Args:
        path: folder holding the question / annotation JSON files, relative to the recipe's folder.
        images: folder holding the COCO image folders (``train2014/``, ``val2014/``, ``test2015/``); default
            ``path``.
        split: ``train``, ``validation``, ``test`` or ``test-dev``.
        normalize_answers: apply the official answer normalisation to the human answers.
    """

    source: Literal["vqa_v2"] = "vqa_v2"
    path: str
    images: str | None = None
    normalize_answers: bool = True

    location_field = "path"
    layout_name = "VQA v2"
    row_content_fields = frozenset({"normalize_answers"})

    @field_validator("split")
    @classmethod
    def _split(cls, value: str) -> str:
        if value not in VQA_SPLITS:
            raise ValueError(f"split {value!r} is not a VQA v2 split; set split: to one of {sorted(VQA_SPLITS)}")
        return value

    def dataset_info(self) -> tuple[dict[str, Any], dict[str, Any]]:
        subtype = VQA_SPLITS[self.split][0]
        return ({"name": "vqa:v2", "config": None, "split": self.split, "revision": None},
                {"source": self.source, "path": self.path, "vqa_subtype": subtype,
                 "normalize_answers": self.normalize_answers, **self._sample_limit()})

    def load_raw(self, base: Path, cache_dir: str | None):
        from .sources import RawSource

        subtype, image_folder = VQA_SPLITS[self.split]
        root = resolve(base, self.path)
        images = (resolve(base, self.images) if self.images else root) / image_folder
        questions_path = root / question_file(subtype)
        where = f"vqa_v2 {questions_path}"
        questions = entries(read_json(questions_path, "vqa_v2", VQA_LAYOUT), "questions", questions_path, VQA_LAYOUT)
        answers = self._answers(root / annotation_file(subtype), subtype) if subtype.startswith(("train", "val")) \
            else None
        if not images.is_dir():
            raise DataError(f"{where}: image folder {images} not found; {VQA_LAYOUT}")
        columns: dict[str, list] = {"image": [], "question": []}
        if answers is not None:
            columns["answers"] = []
        for i, entry in enumerate(questions):
            here = f"questions[{i}]"
            image_id = field(entry, "image_id", int, questions_path, here)
            columns["image"].append(f"COCO_{image_folder}_{image_id:012d}.jpg")
            columns["question"].append(field(entry, "question", str, questions_path, here))
            if answers is not None:
                question_id = field(entry, "question_id", int, questions_path, here)
                if question_id not in answers:
                    raise DataError(f"{questions_path}: {here}: question_id {question_id} has no entry in "
                                    f"{annotation_file(subtype)}; use the matching questions and annotations files")
                columns["answers"].append(answers[question_id])
        return RawSource(build_dataset(columns, self.streaming, f"VQA v2 {subtype}"), where, images)

    def _answers(self, path: Path, subtype: str) -> dict[int, list[str]]:
        """question_id -> the human answers (normalised when ``normalize_answers``)."""
        out = {}
        for i, entry in enumerate(entries(read_json(path, "vqa_v2", VQA_LAYOUT), "annotations", path, VQA_LAYOUT)):
            here = f"annotations[{i}]"
            texts = [field(a if isinstance(a, dict) else {}, "answer", str, path, f"{here}.answers[{j}]")
                     for j, a in enumerate(field(entry, "answers", list, path, here))]
            if self.normalize_answers:  # an answer that normalises to nothing ("the") keeps its text
                texts = [normalize_answer(t) or t for t in texts]
            out[field(entry, "question_id", int, path, here)] = texts
        return out
