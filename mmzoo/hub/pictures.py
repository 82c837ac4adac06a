"""Pictures of a run for its folder and model card: loss curves and a gallery of held-out examples.

* ``loss_curve.png``: training loss (total and per objective), evaluation loss (and terms) and the evaluation
  tasks' metrics over optimizer steps, from the Trainer's log history.
* ``examples.png``: a few held-out images with what the model makes of them: its top retrieved captions (models
  with embeddings), its generated caption (captioning decoder) or its top answers (VQA head).

matplotlib is optional (``pip install 'mmzoo[plots]'``): without it :func:`write_pictures` returns an empty list
and says why once; training and pushing work the same.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

from ..utils.logging import get_logger

logger = get_logger(__name__)

LOSS_CURVE, EXAMPLES = "loss_curve.png", "examples.png"
GALLERY_SIZE = 4
RETRIEVAL_POOL = 32  # captions the gallery's images retrieve from
# headline evaluation metrics plotted (when a task logs none of them, all its metrics are)
HEADLINE = re.compile(r"(recall_at_1|mean_recall|accuracy|vqa_score|cider|bleu_4|f1|auc)$")
PLOTS_HINT = "pip install 'mmzoo[plots]'"


def matplotlib_available() -> bool:
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError:
        return False
    return True


def write_pictures(out: str | Path, log_history: list[dict[str, Any]], model=None, processor=None,
                   eval_dataset=None) -> list[Path]:
    """Write ``loss_curve.png`` (and ``examples.png`` when a model and eval data are given) into ``out``."""
    if not matplotlib_available():
        logger.warning("pictures: matplotlib is not installed, so the run has no loss curve or example images; "
                       "%s to get them", PLOTS_HINT)
        return []
    out = Path(out)
    jobs = [(LOSS_CURVE, lambda: loss_curve(log_history, out / LOSS_CURVE))]
    if model is not None and processor is not None and eval_dataset is not None:
        jobs.append((EXAMPLES, lambda: gallery(model, processor, eval_dataset, out / EXAMPLES)))
    written = []
    for name, draw in jobs:
        try:
            if draw() is not None:
                written.append(out / name)
        except Exception as err:  # a picture is never worth the run: the model and results are saved anyway
            logger.warning("pictures: could not draw %s (%s: %s); the run goes on without it", name,
                           type(err).__name__, err)
    return written


# -- loss curves -------------------------------------------------------------------------------------------------
def curve_series(log_history: list[dict[str, Any]]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``{panel: {series: [(step, value)]}}``: training loss, evaluation loss, evaluation metrics."""
    panels: dict[str, dict[str, list[tuple[int, float]]]] = {"Training loss": {}, "Evaluation loss": {},
                                                              "Evaluation metrics": {}}
    for entry in log_history:
        step = entry.get("step")
        if step is None:
            continue
        for key, value in entry.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            if key == "loss" or key.startswith("loss/"):
                panel = "Training loss"
            elif key == "eval_loss" or key.startswith("eval_loss/"):
                panel = "Evaluation loss"
            elif key.startswith("eval_") and "/" in key and not key.endswith(("_rank", "runtime", "per_second")):
                panel = "Evaluation metrics"
            else:
                continue
            name = "total" if key in ("loss", "eval_loss") else key.split("/", 1)[1] if key.startswith(
                ("loss/", "eval_loss/")) else key.removeprefix("eval_")
            panels[panel].setdefault(name, []).append((int(step), float(value)))
    metrics = panels["Evaluation metrics"]
    headline = {k: v for k, v in metrics.items() if HEADLINE.search(k)}
    tasks_with_headline = {k.split("/")[0] for k in headline}
    panels["Evaluation metrics"] = {**headline, **{k: v for k, v in metrics.items()
                                                   if k.split("/")[0] not in tasks_with_headline}}
    return {name: series for name, series in panels.items() if series}


def loss_curve(log_history: list[dict[str, Any]], path: str | Path) -> Path | None:
    """Plot :func:`curve_series` to ``path``; ``None`` when nothing was logged."""
    from matplotlib.figure import Figure

    panels = curve_series(log_history)
    if not panels:
        return None
    fig = Figure(figsize=(5 * len(panels), 3.6), layout="constrained")
    for ax, (title, series) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels.items()):
        for name, points in sorted(series.items()):
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o" if len(points) < 20 else None, markersize=3, label=name)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    fig.savefig(path, dpi=100)
    return Path(path)


# -- gallery -----------------------------------------------------------------------------------------------------
def gallery_rows(model, processor, eval_dataset, n: int = GALLERY_SIZE) -> list[dict[str, Any]]:
    """``[{"image": PIL image, "truth": str, "lines": [str]}]`` for the first ``n`` held-out rows."""
    import torch

    from ..eval.tasks._data import as_captions, column_names

    columns = set(column_names(eval_dataset) or [])
    if "audio" in columns and "image" not in columns:  # audio data: no example pictures (the loss curve stays)
        return []
    config = model.config
    spec = config.model_spec()
    vqa = bool(getattr(config, "answer_vocab", None)) and {"question", "answers"} <= columns and hasattr(
        model, "decode_answers")
    caption_key = "captions" if "captions" in columns else "caption" if "caption" in columns else None
    wanted = ["image"] + (["question", "answers"] if vqa else [caption_key] if caption_key else [])
    pool_size = n if vqa else RETRIEVAL_POOL
    rows = list(_rows(eval_dataset, wanted, pool_size))
    if not rows:
        return []
    shown = rows[:n]
    out = [{"image": r["image"], "truth": "", "lines": []} for r in shown]
    model_was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            if vqa:
                from ..eval.embed import to_model

                inputs = to_model(processor(text=[r["question"] for r in shown], images=[r["image"] for r in shown],
                                            return_tensors="pt"), model)
                probs = model(**inputs).logits.float().sigmoid()
                top = probs.topk(min(3, probs.shape[-1]), dim=-1)
                for item, row, values, indices in zip(out, shown, top.values.tolist(), top.indices.tolist()):
                    item["truth"] = f"Q: {row['question']}  (truth: {_first(row['answers'])})"
                    item["lines"] = [f"{config.answer_vocab[i]} ({p:.2f})" for p, i in zip(values, indices)]
                return out
            if caption_key is None:
                return []
            captions = [as_captions(r[caption_key], i)[0] for i, r in enumerate(rows)]
            for item, caption in zip(out, captions):
                item["truth"] = f"truth: {caption}"
            if spec.generates_text:
                for item, caption in zip(out, _generated(model, processor, [r["image"] for r in shown])):
                    item["lines"].append(f"generated: {caption}")
            _retrieved(model, processor, [r["image"] for r in shown], captions, out)
    finally:
        model.train(model_was_training)
    return out


def _rows(dataset, columns, n):
    from ..eval.tasks._data import iter_batches

    for _, batch in iter_batches(dataset, tuple(c for c in columns if c), n, n):
        for i in range(len(batch["image"])):
            yield {c: batch[c][i] for c in columns if c}
        return


def _first(answers) -> str:
    if isinstance(answers, str):
        return answers
    answers = list(answers or [])
    return str(answers[0]) if answers else "?"


def _generated(model, processor, images) -> list[str]:
    from ..eval.tasks.captioning import CaptioningParams, _caption_model, generate_captions

    decoder = model.config.model_spec().objective("captioning")
    params = CaptioningParams(max_new_tokens=min(20, decoder.max_length - 1))
    return generate_captions(_caption_model(model, params), processor, images, params)


def _retrieved(model, processor, images, captions: list[str], out: list[dict[str, Any]]) -> None:
    """Top-3 captions of the pool for each shown image, by cosine similarity of the embeddings (✓ = its own)."""
    import torch

    from ..eval.embed import embed_images, embed_texts

    if not hasattr(model, "get_image_features"):
        return
    image_embeds = torch.nn.functional.normalize(embed_images(model, processor, images).float(), dim=-1)
    text_embeds = torch.nn.functional.normalize(embed_texts(model, processor, captions).float(), dim=-1)
    scores = image_embeds @ text_embeds.T
    top = scores.topk(min(3, len(captions)), dim=-1)
    for row, (item, values, indices) in enumerate(zip(out, top.values.tolist(), top.indices.tolist())):
        for rank, (score, j) in enumerate(zip(values, indices), 1):
            mark = " ✓" if captions[j] == captions[row] else ""
            item["lines"].append(f"{rank}. {captions[j]} ({score:.2f}){mark}")


def gallery(model, processor, eval_dataset, path: str | Path, n: int = GALLERY_SIZE) -> Path | None:
    """Draw :func:`gallery_rows` to ``path`` (one column per example: image, truth, model results)."""
    from matplotlib.figure import Figure

    rows = gallery_rows(model, processor, eval_dataset, n)
    if not rows:
        return None
    fig = Figure(figsize=(3.2 * len(rows), 4.6), layout="constrained")
    for ax, row in zip(fig.subplots(1, len(rows), squeeze=False)[0], rows):
        ax.imshow(row["image"].convert("RGB"))
        ax.set_xticks([])
        ax.set_yticks([])
        lines = [textwrap.fill(row["truth"], 34)] + [textwrap.fill(line, 34) for line in row["lines"]]
        ax.set_xlabel("\n".join(lines), fontsize=7, loc="left")
    fig.suptitle("Held-out examples: the model's top results")
    fig.savefig(path, dpi=100)
    return Path(path)
