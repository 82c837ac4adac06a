"""Tiny copies of published dataset layouts, in their exact original file formats, for tests and dry runs.

Each writer creates the annotation JSON files and small solid-colour JPEG images under ``root`` and returns what
it wrote (so tests can compare loaded rows with the source). :func:`write_all` lays them out the way the
full-size recipes expect (``recipes/*.yaml``, paths relative to their ``base_dir``)::

    data/coco/annotations/captions_{train,val}2017.json + data/coco/{train,val}2017/*.jpg      (coco_captions)
    data/coco/dataset_coco.json + data/coco/images/{train,val}2014/COCO_*.jpg                 (karpathy)
    data/flickr30k/dataset_flickr30k.json + data/flickr30k/flickr30k-images/*.jpg              (karpathy)
    data/vqa/v2_OpenEnded_mscoco_{train,val}2014_questions.json + v2_mscoco_*_annotations.json (vqa_v2;
        images in data/coco/images/{train,val}2014/)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (128, 128, 0)]
COLOR_NAMES = ["red", "green", "yellow", "blue", "orange", "purple", "cyan", "magenta", "lime", "pink", "teal",
               "olive"]


def write_image(path: Path, index: int, size: tuple[int, int] = (20, 16)) -> Path:
    """A solid JPEG of colour ``PALETTE[index]``."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, PALETTE[index % len(PALETTE)]).save(path, format="JPEG", quality=95)
    return path


def _captions(index: int, count: int) -> list[str]:
    color = COLOR_NAMES[index % len(COLOR_NAMES)]
    forms = ["A {c} square.", "a plain {c} picture", "The colour {c} fills the image.", "something {c}",
             "an image that is all {c}", "just {c}", "{c} everywhere"]
    return [forms[k % len(forms)].format(c=color) for k in range(count)]


def _dump(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


def write_coco_captions(root: str | Path, year: int = 2017) -> dict[str, list[dict[str, Any]]]:
    """``annotations/captions_{train,val}<year>.json`` and the images; returns split -> [{file, captions}].

    train: 3 images (5, 5 and 6 captions), val: 2 images (5 each); annotations interleaved across images as
    in the real files, plus one image without captions (COCO has none such, loaders must not invent rows).
    """
    root = Path(root)
    out: dict[str, list[dict[str, Any]]] = {}
    next_id = 1
    for split, counts, offset in (("train", [5, 5, 6], 0), ("val", [5, 5], 3)):
        images, annotations, expected = [], [], []
        for k, count in enumerate(counts):
            image_id = 1000 * (offset + k) + 9
            name = f"{image_id:012d}.jpg" if year == 2017 else f"COCO_{split}{year}_{image_id:012d}.jpg"
            write_image(root / f"{split}{year}" / name, offset + k)
            images.append({"license": 1, "file_name": name, "coco_url": f"http://images.cocodataset.org/{name}",
                           "height": 16, "width": 20, "date_captured": "2013-11-14 16:28:13", "id": image_id})
            expected.append({"file": name, "captions": [c.strip() for c in _captions(offset + k, count)],
                             "color": PALETTE[(offset + k) % len(PALETTE)]})
        for j in range(max(counts)):  # caption j of every image, then caption j + 1 ...: interleaved ids
            for k, count in enumerate(counts):
                if j < count:
                    annotations.append({"image_id": images[k]["id"], "id": next_id,
                                        "caption": _captions(offset + k, count)[j] + " "})
                    next_id += 1
        images.append({"license": 1, "file_name": "no_captions.jpg", "height": 16, "width": 20, "id": 77})
        _dump(root / "annotations" / f"captions_{split}{year}.json",
              {"info": {"description": "tiny COCO", "year": year}, "licenses": [{"id": 1, "name": "x"}],
               "images": images, "annotations": annotations})
        out[split] = expected
    return out


def write_karpathy(path: str | Path, images: str | Path, dataset: str = "coco") -> dict[str, list[dict[str, Any]]]:
    """A Karpathy split file at ``path`` and its images under ``images``; returns split -> [{file, captions}].

    Splits: train 2, restval 1 (COCO only), val 1, test 3 images; 5 sentences each except one test image with 6
    (the real COCO file has images with 6-7). COCO entries carry ``filepath`` (train2014 / val2014).
    """
    path, images = Path(path), Path(images)
    splits = ["train", "train", "val", "test", "test", "test"] + (["restval"] if dataset == "coco" else [])
    entries, out, sentid = [], {}, 0
    for imgid, split in enumerate(splits):
        count = 6 if imgid == 4 else 5
        texts = _captions(imgid, count)
        sentences = []
        for text in texts:
            tokens = text.lower().rstrip(".").split()
            sentences.append({"tokens": tokens, "raw": text, "imgid": imgid, "sentid": sentid})
            sentid += 1
        entry: dict[str, Any] = {"sentids": [s["sentid"] for s in sentences], "imgid": imgid,
                                 "sentences": sentences, "split": split}
        if dataset == "coco":
            folder = "val2014" if split in ("val", "test", "restval") else "train2014"
            cocoid = 100 + imgid
            entry.update(filepath=folder, filename=f"COCO_{folder}_{cocoid:012d}.jpg", cocoid=cocoid)
            relative = f"{folder}/{entry['filename']}"
        else:
            entry["filename"] = f"{1000092795 + imgid}.jpg"
            relative = entry["filename"]
        write_image(images / relative, imgid)
        entries.append(entry)
        out.setdefault(split, []).append({"file": relative, "captions": texts, "color": PALETTE[imgid]})
    _dump(path, {"images": entries, "dataset": dataset})
    return out


# (image index, question, 10 human answers, question type, answer type)
VQA_QUESTIONS = [
    (0, "How many squares are there?", ["2", "2", "two", "Two.", "2 ", "3", "3", "three", "4", "2"],
     "how many", "number"),
    (0, "Is it red?", ["Yes", "yes!", "no", "no", "no", "no", "no", "no", "no", "no"], "is it", "yes/no"),
    (1, "What animal is this?", ["a dog", "a dog", "dog", "the dog", "dogs", "dogs", "dogs", "cat", "cat", "cat"],
     "what animal is", "other"),
    (2, "What does the sign say?", ["dont know", "dont know", "don't know", "no", "no", "no", "no", "no", "no",
                                    "no"], "what does the", "other"),
]


def write_vqa_v2(path: str | Path, images: str | Path) -> dict[str, list[dict[str, Any]]]:
    """VQA v2 question + annotation files for train2014 and val2014 under ``path``, COCO images under
    ``images/<subtype>/``; returns subtype -> [{file, question, answers (raw)}] in question order.

    val2014 holds :data:`VQA_QUESTIONS` (known answers for hand-computed accuracies); train2014 the same
    questions on other image ids.
    """
    path, images = Path(path), Path(images)
    out = {}
    for subtype, id_offset in (("train2014", 500), ("val2014", 600)):
        questions, annotations, expected = [], [], []
        for q, (index, question, answers, qtype, atype) in enumerate(VQA_QUESTIONS):
            image_id = id_offset + index
            name = f"COCO_{subtype}_{image_id:012d}.jpg"
            write_image(images / subtype / name, index)
            question_id = image_id * 1000 + q
            questions.append({"image_id": image_id, "question": question, "question_id": question_id})
            annotations.append({
                "question_type": qtype, "multiple_choice_answer": answers[0], "image_id": image_id,
                "answer_type": atype, "question_id": question_id,
                "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1} for k, a in enumerate(answers)],
            })
            expected.append({"file": f"{subtype}/{name}", "question": question, "answers": answers})
        # the official files do not list questions in annotation order: reverse one of them
        common = {"info": {"description": "tiny VQA v2"}, "license": {"name": "x"}, "data_subtype": subtype}
        _dump(path / f"v2_OpenEnded_mscoco_{subtype}_questions.json",
              {**common, "task_type": "Open-Ended", "data_type": "mscoco", "questions": questions})
        _dump(path / f"v2_mscoco_{subtype}_annotations.json", {**common, "annotations": annotations[::-1]})
        out[subtype] = expected
    return out


def write_all(base: str | Path) -> dict[str, Any]:
    """Every layout under ``base`` where the full-size recipes look for it (see the module docs)."""
    base = Path(base)
    coco = base / "data" / "coco"
    return {
        "coco_captions": write_coco_captions(coco),
        "karpathy_coco": write_karpathy(coco / "dataset_coco.json", coco / "images", "coco"),
        "karpathy_flickr30k": write_karpathy(base / "data/flickr30k/dataset_flickr30k.json",
                                             base / "data/flickr30k/flickr30k-images", "flickr30k"),
        "vqa_v2": write_vqa_v2(base / "data" / "vqa", coco / "images"),
    }
