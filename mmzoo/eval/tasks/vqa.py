"""``vqa``: VQA accuracy (``min(#humans who gave the answer / 3, 1)``, VQA v2 normalisation) of predicted answers.

Two ways to answer, picked from the model:

* classification: a ``MmzooForVisualQuestionAnswering`` (load it with ``AutoModelForVisualQuestionAnswering``)
  picks the best entry of ``config.answer_vocab``;
* generation: a model with a ``captioning`` objective continues the question prompt (its text without the
  closing SEP), greedy or beam search with the pinned ``max_new_tokens`` / ``num_beams``.

Data: ``question`` (str) + ``answers`` (list[str]) per row, or ``questions`` (list[str]) + ``answers``
(list[list[str]]) per image as in the built-in ``shapes``; every question of an evaluated row counts.
"""

from __future__ import annotations

import torch
from pydantic import Field

from ...modeling.heads import MmzooForConditionalGeneration, MmzooForVisualQuestionAnswering
from ..embed import can_shard, map_sharded, synced_generation, to_model
from ._data import column_names, indexed_rows, iter_batches
from ._heads import as_head, describe_model, objective_types
from .base import EvaluationTask, TaskParams, TaskResult, load_metric, register_task
from .errors import EvaluationError


class VqaParams(TaskParams):
    batch_size: int = Field(32, ge=1, description="questions per forward pass")
    max_new_tokens: int = Field(8, ge=1, description="generation: answer length limit in tokens")
    num_beams: int = Field(1, ge=1, description="generation: 1 = greedy")


@register_task("vqa")
class VqaTask(EvaluationTask):
    Params = VqaParams
    columns = ("image", "question", "answers")

    def check_data(self, dataset) -> None:
        _qa_columns(dataset)

    def run(self, model, processor, dataset, params: VqaParams) -> TaskResult:
        answer, mode = _answerer(model, processor, params)
        columns = _qa_columns(dataset)
        metric = load_metric("vqa_accuracy")
        num_questions = 0
        if can_shard(dataset):  # each rank answers its shard of the questions; the answers are gathered
            data = indexed_rows(dataset, columns, params.max_samples)
            texts = data.select_columns(list(columns[1:]))  # questions and answers, no image decoding
            owners, questions, answers = [], [], []
            for start, batch in iter_batches(texts, columns[1:], 1024):
                for j, (question, answer_list) in enumerate(zip(batch[columns[1]], batch[columns[2]])):
                    _, qs, ans = _flatten_qa({"image": [None], columns[1]: [question], columns[2]: [answer_list]},
                                             columns, start + j)
                    owners += [start + j] * len(qs)
                    questions += qs
                    answers += ans

            def answer_rows(rows):
                images = data.select_columns(["image"])[sorted(set(owners[i] for i in rows))]["image"]
                by_row = dict(zip(sorted(set(owners[i] for i in rows)), images))
                return answer([by_row[owners[i]] for i in rows], [questions[i] for i in rows])

            predictions = map_sharded(answer_rows, len(questions), params.batch_size)
            metric.add_batch(predictions=predictions, references=answers)
            num_questions = len(questions)
        else:
            for start, batch in iter_batches(dataset, columns, params.batch_size, params.max_samples):
                images, questions, answers = _flatten_qa(batch, columns, start)
                for i in range(0, len(questions), params.batch_size):
                    part = slice(i, i + params.batch_size)
                    predictions = answer(images[part], questions[part])
                    metric.add_batch(predictions=predictions, references=answers[part])
                num_questions += len(questions)
        metrics = metric.compute()
        protocol = {"mode": mode, "num_questions": num_questions}
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


def _flatten_qa(batch, columns, start: int) -> tuple[list, list[str], list[list[str]]]:
    """One (image, question, answers) triple per question of the batch."""
    images, questions, answers = [], [], []
    for j, (image, question, answer) in enumerate(zip(*(batch[c] for c in columns))):
        if columns[1] == "question":
            question, answer = [question], [answer]
        if len(question) != len(answer):
            raise EvaluationError(f"vqa: row {start + j} has {len(question)} questions but {len(answer)} answer lists")
        for q, a in zip(question, answer):
            a = [a] if isinstance(a, str) else list(a or [])
            if not isinstance(q, str) or not a:
                raise EvaluationError(f"vqa: row {start + j}: question {q!r} needs a text and at least one answer")
            images.append(image)
            questions.append(q)
            answers.append(a)
    return images, questions, answers


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
