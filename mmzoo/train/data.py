"""Training data: load the recipe's sources, pick one caption per sample deterministically, collate.

Determinism (needed to resume a killed run on the same loss curve): the sample order is a permutation
seeded by ``(seed, epoch)`` (:class:`EpochSampler`), and the caption of sample ``i`` in epoch ``e`` is chosen
by a hash of ``(seed, e, i)`` — no free-running RNG, so it does not depend on what ran before.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data.collator import NEGATIVE_CAPTIONS
from ..errors import RecipeError
from ..utils.logging import get_logger

logger = get_logger(__name__)

PAIR_COLUMNS = ("image", "captions")
# NEGATIVE_CAPTIONS: an optional pair column kept when the data has it: captions that almost describe the item
# (hard negatives for ``objectives.itm.caption_negatives``; e.g. built-in shapes with ``negative_captions: true``)


class EmptyStreamError(RecipeError):
    """A streamed training source gave a rank no row in a whole pass (wrong split, too few rows, all bad)."""


def pick_caption(num_captions: int, seed: int, epoch: int, index: int) -> int:
    """Index of the caption used for sample ``index`` in ``epoch`` (stable across runs and processes)."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % num_captions


class EpochSampler(torch.utils.data.Sampler):
    """Yields ``(index, epoch)`` keys in a random order seeded by ``seed + epoch``.

    ``set_epoch`` is called by the Trainer (through accelerate) at the start of each epoch, also after a
    resume; the same permutation is drawn on every rank (accelerate shards the batches).
    """

    def __init__(self, num_samples: int, seed: int, shuffle: bool = True) -> None:
        self.num_samples, self.seed, self.shuffle, self.epoch = num_samples, seed, shuffle, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator).tolist()
        else:
            order = range(self.num_samples)
        epoch = self.epoch
        return iter([(i, epoch) for i in order])


class PairDataset(torch.utils.data.Dataset):
    """Rows of a loaded source as ``{"image", "captions": [one caption]}``.

    Indexed by an int (epoch 0) or an ``(index, epoch)`` key from :class:`EpochSampler`. ``pick="hash"``
    chooses the caption with :func:`pick_caption`; ``pick="first"`` takes the first (evaluation).
    """

    def __init__(self, dataset, seed: int = 0, pick: str = "hash") -> None:
        self.dataset, self.seed, self.pick = dataset, seed, pick

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        row = self.dataset[int(index)]
        return select_caption(row, self.seed, epoch, int(index), self.pick)


def select_caption(row: dict[str, Any], seed: int, epoch: int, index: int, pick: str = "hash") -> dict[str, Any]:
    """The row (its pair columns: ``image``, or ``audio`` [+ ``sampling_rate``]) with one chosen caption, and one
    chosen negative caption when the row has ``negative_captions``."""
    chosen = {"captions": _pick_one(row["captions"], seed, epoch, index, pick)}
    if row.get(NEGATIVE_CAPTIONS):  # its own draw: the negative is not tied to the positive's paraphrase
        chosen[NEGATIVE_CAPTIONS] = _pick_one(row[NEGATIVE_CAPTIONS], seed + 1, epoch, index, pick)
    return {**row, **chosen}


def _pick_one(texts: str | list[str], seed: int, epoch: int, index: int, pick: str) -> list[str]:
    texts = [texts] if isinstance(texts, str) else texts
    chosen = pick_caption(len(texts), seed, epoch, index) if pick == "hash" and len(texts) > 1 else 0
    return [texts[chosen]]


class TrainCollator:
    """The data layer's :class:`ImageTextCollator` (processor on the batch): tensors only, so that engines can
    concatenate, split and dispatch batches (``MmzooTrainer.compute_loss`` asks the model for the loss)."""

    def __init__(self, processor, max_length: int | None = None, modality: str = "image") -> None:
        from ..data import PAIR_COLLATORS

        self.collate = PAIR_COLLATORS.get(modality)(processor, max_length=max_length, caption_sampling="first")

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collate(rows)
        batch.pop("return_loss", None)
        return batch


@dataclass
class RunData:
    """The loaded train / eval datasets (normalised rows) and how many bad samples each source skipped."""

    train: Any
    eval: Any | None
    skipped: dict[str, dict[str, Any]] = field(default_factory=dict)  # "train"/"eval" -> {skipped, examples}


def load_run_data(recipe, cache_dir: str | None = None) -> RunData:
    """Load ``data.train`` and ``data.eval`` with :func:`mmzoo.data.load_source` (all normalised columns)."""
    from ..data import bad_sample_report, load_source

    base_dir = Path(recipe.base_dir or ".")
    out: dict[str, Any] = {}
    skipped: dict[str, dict[str, Any]] = {}
    for role in ("train", "eval"):
        spec = getattr(recipe.data, role)
        if spec is None:
            out[role] = None
            continue
        ds = load_source(spec, base_dir, cache_dir=cache_dir)
        report = bad_sample_report(ds)
        if report is not None and report.skipped:
            skipped[role] = {"skipped": report.skipped, "examples": list(report.examples), "source": report.source}
        out[role] = ds
    return RunData(out["train"], out["eval"], skipped)


def pair_columns(ds, key: str = "data.train", modality: str = "image"):
    """Only the ``image`` (or the modality's column, see :mod:`mmzoo.modalities`) and ``captions`` columns (so
    rows decode nothing else), plus ``sampling_rate`` for audio when present; error when one is missing."""
    from ..modalities import MODALITIES

    columns = list(ds.column_names or []) if ds.column_names is not None else list(ds.features or {})
    wanted = [MODALITIES.get(modality).column, "captions"] if modality != "image" else list(PAIR_COLUMNS)
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise RecipeError(
            f"{key}: the loaded data has columns {columns} but {modality}-text training needs {wanted} "
            f"(missing {missing}); map them with {key}.columns (e.g. columns: {{caption: text}})"
        )
    if modality == "audio" and "sampling_rate" in columns:
        wanted.append("sampling_rate")
    if NEGATIVE_CAPTIONS in columns:
        wanted.append(NEGATIVE_CAPTIONS)
    return ds.select_columns(wanted)


def streaming_pairs(ds, seed: int):
    """An ``IterableDataset`` of pairs (one pass, same on every rank: evaluation); the caption of the i-th
    streamed row is chosen by ``(seed, 0, i)``."""
    return ds.map(lambda row, i: select_caption(row, seed, 0, i), with_indices=True)


class RankStream(torch.utils.data.IterableDataset):
    """Streamed training pairs for one process: each rank reads only its own part of the stream.

    Every pass over the source ("stream epoch" ``e``) shuffles it with ``seed`` and ``e`` (shard order, then a
    ``buffer_size``-row shuffle buffer), then keeps this rank's part with
    :func:`datasets.distributed.split_dataset_by_node` (whole shards when their number divides by the world
    size, otherwise every ``world_size``-th row), so no row is read by two ranks in one pass. DataLoader workers
    split a rank's shards again (``datasets`` does it). The passes repeat without end: training stops at
    ``training.max_steps``, so every rank runs the same number of full, equal batches even when shards are
    uneven (a rank with less data starts its next pass sooner).

    Resuming a streamed run replays the stream: Trainer skips the batches already trained (same seeds, same
    order), which reads them again; ``ignore_data_skip`` starts the stream from the beginning instead.

    Args:
        dataset: a ``datasets.IterableDataset`` of normalised rows (``image``, ``captions``).
        seed: shuffle and caption seed. buffer_size: shuffle buffer rows (0: stream order).
        rank / world_size: default ``RANK`` / ``WORLD_SIZE`` (torchrun, accelerate launch), else 0 / 1.
    """

    def __init__(self, dataset, seed: int, buffer_size: int = 1000, rank: int | None = None,
                 world_size: int | None = None) -> None:
        import os

        self.dataset, self.seed, self.buffer_size = dataset, seed, buffer_size
        self.rank = int(os.environ.get("RANK", "0")) if rank is None else rank
        self.world_size = int(os.environ.get("WORLD_SIZE", "1")) if world_size is None else world_size

    def set_epoch(self, epoch: int) -> None:
        """Trainer's epochs do not apply: the passes over the stream are counted inside ``__iter__``."""

    def passes(self, epoch: int):
        """This rank's rows of stream pass ``epoch``."""
        from datasets.distributed import split_dataset_by_node

        data = self.dataset.shuffle(seed=self.seed, buffer_size=self.buffer_size) if self.buffer_size else self.dataset
        data.set_epoch(epoch)
        if self.world_size > 1:
            data = split_dataset_by_node(data, rank=self.rank, world_size=self.world_size)
        return data

    def __iter__(self):
        epoch = 0
        while True:
            rows = 0
            for index, row in enumerate(self.passes(epoch)):
                yield select_caption(row, self.seed, epoch, index)
                rows += 1
            if rows == 0:
                if torch.utils.data.get_worker_info() is not None:
                    return  # a DataLoader worker without a shard of its own; the others carry on
                raise EmptyStreamError(
                    f"data.train: the stream gave rank {self.rank} of {self.world_size} no rows; check the source "
                    "(split, max_samples) or use fewer processes than the source has rows"
                )
            epoch += 1


# --------------------------------------------------------------------------------------------------------- VQA
def qa_columns(ds, key: str) -> tuple[str, str]:
    """``("question", "answers")`` (one question per row) or ``("questions", "answers")`` (lists per image,
    as in the built-in ``shapes``)."""
    columns = set(ds.column_names or [])
    for question in ("question", "questions"):
        if {"image", question, "answers"} <= columns:
            return question, "answers"
    raise RecipeError(
        f"{key}: model.head vqa needs columns image, question (str) and answers (list[str]) -- or questions / "
        f"answers lists per image -- but the data has {sorted(columns)}; map them with {key}.columns "
        "(question:, answers:)"
    )


class VqaDataset(torch.utils.data.Dataset):
    """One ``{"image", "question", "answers"}`` item per question (rows with several questions are expanded).

    Indexed by an int or an ``(index, epoch)`` key from :class:`EpochSampler` (the epoch is not needed here).
    """

    def __init__(self, dataset, key: str = "data.train") -> None:
        if isinstance(dataset, torch.utils.data.IterableDataset) or not hasattr(dataset, "__len__"):
            raise RecipeError(f"{key}: model.head vqa needs map-style data; set {key}.streaming: false")
        self.question_column, self.answers_column = qa_columns(dataset, key)
        self.dataset = dataset.select_columns(["image", self.question_column, self.answers_column])
        questions = dataset[self.question_column]
        if self.question_column == "question":
            self.index = [(row, -1) for row in range(len(questions))]
        else:
            self.index = [(row, q) for row, qs in enumerate(questions) for q in range(len(qs))]

    def __len__(self) -> int:
        return len(self.index)

    def answers(self):
        """Every question's answer list, in item order (reads the answers column only)."""
        column = self.dataset[self.answers_column]
        for row, q in self.index:
            yield column[row] if q < 0 else column[row][q]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        row, q = self.index[int(key[0] if isinstance(key, tuple) else key)]
        item = self.dataset[row]
        question, answers = item[self.question_column], item[self.answers_column]
        if q >= 0:
            question, answers = question[q], answers[q]
        return {"image": item["image"], "question": question, "answers": list(answers)}


def answer_vocabulary(dataset: VqaDataset, size: int) -> list[str]:
    """The ``size`` most frequent answers (each annotator's answer counts once), ties broken alphabetically."""
    from collections import Counter

    counts = Counter(answer for answers in dataset.answers() for answer in answers)
    return [answer for answer, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:size]]


class VqaCollator:
    """Questions and images through the processor, plus soft ``labels`` ``(batch, num_answers)``: the VQA
    score ``min(#annotators who gave the answer / 3, 1)`` of each answer in the vocabulary."""

    def __init__(self, processor, answer_vocab: list[str], max_length: int | None = None) -> None:
        self.processor, self.max_length = processor, max_length
        self.answer_ids = {answer: i for i, answer in enumerate(answer_vocab)}

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        kwargs = {"padding": "max_length" if self.max_length else "longest", "truncation": True}
        if self.max_length:
            kwargs["max_length"] = self.max_length
        from ..data.images import prepare_image, target_size

        size = target_size(self.processor)
        images = [prepare_image(row["image"], size) for row in rows]
        encoded = self.processor(text=[row["question"] for row in rows], images=images, **kwargs)
        batch = {k: encoded[k] for k in ("input_ids", "attention_mask", "pixel_values") if k in encoded}
        labels = torch.zeros(len(rows), len(self.answer_ids))
        for i, row in enumerate(rows):
            for answer in set(row["answers"]):
                if answer in self.answer_ids:
                    labels[i, self.answer_ids[answer]] = min(row["answers"].count(answer) / 3, 1.0)
        batch["labels"] = labels
        return batch
