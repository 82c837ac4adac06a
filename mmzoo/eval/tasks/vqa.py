"""``vqa``: VQA accuracy (``min(#humans who gave the answer / 3, 1)``, VQA v2 normalisation) of predicted answers.

Two ways to answer, picked from the model:

* classification: a ``MmzooForVisualQuestionAnswering`` (load it with ``AutoModelForVisualQuestionAnswering``)
  picks the best entry of ``config.answer_vocab``;
* generation: a model with a ``captioning`` objective continues the question prompt (its text without the
  closing SEP), greedy or beam search with the pinned ``max_new_tokens`` / ``num_beams``.

Data: ``question`` (str) + ``answers`` (list[str]) per row, or ``questions`` (list[str]) + ``answers``
(list[list[str]]) per image as in the built-in ``shapes``; every question of an evaluated row counts.

Reported next to ``vqa_accuracy``:

* ``vqa_accuracy_<type>`` per question type, when the data has ``question_type`` / ``question_types`` (``shapes``:
  color, shape, size, position, count, exists);
* ``image_ablation_accuracy``: the same questions answered with the images shuffled across the evaluated rows
  (a seeded derangement: no question keeps its own image), ``image_ablation_drop`` = accuracy minus that, and
  ``blind`` = 1 when the drop is below ``blind_margin``: a model that scores as well without its image answers from
  the question alone (a question-type prior), and the protocol's ``verdict`` says so.
"""

from __future__ import annotations

import torch
from pydantic import Field

from ...modeling.heads import MmzooForConditionalGeneration, MmzooForVisualQuestionAnswering
from ..embed import map_sharded, synced_generation, to_model
from ._data import column_names, iter_batches
from ._heads import as_head, describe_model, objective_types
from .base import EvaluationTask, TaskParams, TaskResult, load_metric, register_task
from .errors import EvaluationError


class VqaParams(TaskParams):
    batch_size: int = Field(32, ge=1, description="questions per forward pass")
    max_new_tokens: int = Field(8, ge=1, description="generation: answer length limit in tokens")
    num_beams: int = Field(1, ge=1, description="generation: 1 = greedy")
    image_ablation: bool = Field(True, description="also answer with the images shuffled across the rows")
    blind_margin: float = Field(0.05, ge=0.0, le=1.0, description="accuracy drop below which the model is 'blind'")
    seed: int = Field(0, description="seed of the image shuffle of the ablation")


@register_task("vqa")
class VqaTask(EvaluationTask):
    Params = VqaParams
    columns = ("image", "question", "answers")

    def check_data(self, dataset) -> None:
        _qa_columns(dataset)

    def run(self, model, processor, dataset, params: VqaParams) -> TaskResult:
        answer, mode = _answerer(model, processor, params)
        columns = _qa_columns(dataset)
        type_column = _type_column(dataset, columns)
        rows = []  # (image, [(question, answers, type)]) per evaluated row
        wanted = columns + ((type_column,) if type_column else ())
        for start, batch in iter_batches(dataset, wanted, params.batch_size, params.max_samples):
            rows += _rows_qa(batch, columns, type_column, start)
        predictions, references, types = _answer_rows(answer, rows, list(range(len(rows))), params.batch_size)
        metric = load_metric("vqa_accuracy")
        metrics = metric.compute(predictions=predictions, references=references)
        for kind in sorted(set(types) - {None}):
            picked = [i for i, t in enumerate(types) if t == kind]
            metrics[f"vqa_accuracy_{kind}"] = metric.compute(
                predictions=[predictions[i] for i in picked], references=[references[i] for i in picked]
            )["vqa_accuracy"]
        protocol = {"mode": mode, "num_questions": len(predictions)}
        if params.image_ablation and len(rows) > 1:
            order = _derangement(len(rows), params.seed)
            shuffled, _, _ = _answer_rows(answer, rows, order, params.batch_size)
            ablated = metric.compute(predictions=shuffled, references=references)["vqa_accuracy"]
            drop = metrics["vqa_accuracy"] - ablated
            metrics.update(image_ablation_accuracy=ablated, image_ablation_drop=drop,
                           blind=float(drop < params.blind_margin))
            protocol["image_ablation"] = {"images": "shuffled across the evaluated rows (seeded derangement)",
                                          "seed": params.seed, "blind_margin": params.blind_margin}
            protocol["verdict"] = (
                f"blind: accuracy drops by only {drop:.3f} when the images are shuffled, the answers come from the "
                "questions alone" if drop < params.blind_margin else
                f"looks at the image: accuracy drops by {drop:.3f} when the images are shuffled"
            )
        if mode == "generation":
            protocol["decoding"] = {"max_new_tokens": params.max_new_tokens, "num_beams": params.num_beams,
                                    "do_sample": False, "prompt": "question"}
        return TaskResult(metrics, protocol)

    def protocol(self, params: VqaParams) -> dict:
        return {"max_samples": params.max_samples}  # decoding params are recorded only when generating


def _qa_columns(dataset) -> tuple[str, str, str]:
    names = column_names(dataset)
    if names is None or {"image", "question", "answers"} <= set(names):
        return ("image", "question", "answers")
    if {"image", "questions", "answers"} <= set(names):
        return ("image", "questions", "answers")
    raise EvaluationError(
        f"vqa needs columns image, question (str) and answers (list[str]) — or questions/answers lists per image "
        f"— but the data has {names}; map them with the source's columns: (question:, answers:)"
    )


def _type_column(dataset, columns) -> str | None:
    """The question-type column matching the question column's layout, if the data has one."""
    names = column_names(dataset) or ()
    wanted = "question_type" if columns[1] == "question" else "question_types"
    return wanted if wanted in names else None


def _rows_qa(batch, columns, type_column, start: int) -> list[tuple]:
    """One ``(image, [(question, answers, type), ...])`` per row of the batch."""
    out = []
    for j, (image, question, answer) in enumerate(zip(*(batch[c] for c in columns))):
        kind = batch[type_column][j] if type_column else None
        if columns[1] == "question":
            question, answer, kind = [question], [answer], [kind]
        kind = list(kind) if kind else [None] * len(question)
        if len(question) != len(answer) or len(kind) != len(question):
            raise EvaluationError(
                f"vqa: row {start + j} has {len(question)} questions, {len(answer)} answer lists and {len(kind)} "
                "question types; they must line up"
            )
        qa = []
        for q, a, t in zip(question, answer, kind):
            a = [a] if isinstance(a, str) else list(a or [])
            if not isinstance(q, str) or not a:
                raise EvaluationError(f"vqa: row {start + j}: question {q!r} needs a text and at least one answer")
            qa.append((q, a, t))
        out.append((image, qa))
    return out


def _answer_rows(answer, rows, image_of, batch_size: int):
    """Answer every question of ``rows``, row i's questions asked about the image of row ``image_of[i]``."""
    images, questions, references, types = [], [], [], []
    for i, (_, qa) in enumerate(rows):
        for question, answers, kind in qa:
            images.append(rows[image_of[i]][0])
            questions.append(question)
            references.append(answers)
            types.append(kind)
    # each rank answers its shard of the questions; the answers are gathered (single process: all of them)
    predictions = map_sharded(lambda rows: answer([images[i] for i in rows], [questions[i] for i in rows]),
                              len(questions), batch_size)
    return list(predictions), references, types


def _derangement(n: int, seed: int) -> list[int]:
    """A seeded permutation of ``range(n)`` without fixed points (a random cyclic shift of a random order)."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    image_of = [0] * n
    for t, row in enumerate(order):
        image_of[row] = order[(t + 1) % n]
    return image_of


def _answerer(model, processor, params: VqaParams):
    """``(images, questions) -> answers`` for this model, and the mode name."""
    if isinstance(model, MmzooForVisualQuestionAnswering):
        return (lambda images, questions: _classify(model, processor, images, questions)), "classification"
    if isinstance(model, MmzooForConditionalGeneration) or "captioning" in objective_types(model):
        generator = as_head(model, MmzooForConditionalGeneration)
        return (lambda images, questions: _generate(generator, processor, images, questions, params)), "generation"
    raise EvaluationError(
        f"vqa: {describe_model(model)} cannot answer questions. It needs either an answer classifier "
        "(MmzooForVisualQuestionAnswering: a fusion providing pair_embedding plus config.answer_vocab; load it "
        "with AutoModelForVisualQuestionAnswering) or a text decoder (a `captioning` objective in the spec)"
    )


@torch.inference_mode()
def _classify(model, processor, images, questions) -> list[str]:
    inputs = to_model(processor(text=questions, images=images, return_tensors="pt"), model)
    return model.decode_answers(model(**inputs).logits)


@torch.inference_mode()
def _generate(model, processor, images, questions, params: VqaParams) -> list[str]:
    tokenizer = processor.tokenizer
    sep = model.generation_config.eos_token_id
    prompts = [ids[:-1] if ids and ids[-1] == sep else ids for ids in tokenizer(questions)["input_ids"]]
    prompt = tokenizer.pad({"input_ids": prompts}, padding_side="left", return_tensors="pt")
    longest, limit = prompt["input_ids"].shape[1] + params.max_new_tokens, model.caption_decoder.max_length
    if longest > limit:
        raise EvaluationError(
            f"vqa: a question of {prompt['input_ids'].shape[1]} tokens plus max_new_tokens {params.max_new_tokens} "
            f"exceeds the decoder's max_length {limit} (objectives.captioning.max_length); lower max_new_tokens"
        )
    inputs = to_model({**prompt, **processor(images=images, return_tensors="pt")}, model)
    ids = model.generate(**inputs, max_new_tokens=params.max_new_tokens, num_beams=params.num_beams,
                         do_sample=False, synced_gpus=synced_generation())
    new_tokens = ids[:, inputs["input_ids"].shape[1]:]
    return [text.strip() for text in processor.batch_decode(new_tokens, skip_special_tokens=True)]
