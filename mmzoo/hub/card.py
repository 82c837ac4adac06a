"""Model cards for mmzoo runs: ``ModelCardData`` metadata + Jinja templates from ``model_cards/``.

A card is rendered from a run directory alone (``config.json`` with the spec, optional ``recipe.yaml`` and
``eval_results.json``); no model is built. Every generated card ends with a marker holding the sha256 of its
own text, so a later push can tell an untouched generated card from one a person edited on the Hub.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, EvalResultEntry, ModelCard, ModelCardData, eval_result_entries_to_yaml
from huggingface_hub.utils import HFValidationError, validate_repo_id

from ..errors import HubError
from ..specs import ModelSpec
from ..modalities import MODALITIES, paired_modalities
from ..version import __version__
from . import _markdown as md
from . import snippets
from .pictures import EXAMPLES, LOSS_CURVE
from .facts import RUN_INFO, describe_spec, description, hardware_line, learned_scalars

DEFAULT_LICENSE = "apache-2.0"
SECRET_KEYS = frozenset({"token", "hf_token", "api_key", "password", "secret"})
_MARKER = re.compile(r"\n?<!-- mmzoo-card-sha256: ([0-9a-f]{64}) .*?-->\n?")

# eval task tag -> (model-index task type: a Hub task id, pretty name). The Hub has no image-text retrieval or
# matching task: retrieval ranks embeddings (feature-extraction), matching scores a label text against an image
# (zero-shot-image-classification). tests/hub/test_card.py checks every id against the Hub's task list.
TASK_TYPES: dict[str, tuple[str, str]] = {
    "retrieval": ("feature-extraction", "Image-Text Retrieval"),
    "zero_shot_classification": ("zero-shot-image-classification", "Zero-Shot Image Classification"),
    "itm": ("zero-shot-image-classification", "Image-Text Matching"),
    "vqa": ("visual-question-answering", "Visual Question Answering"),
    "captioning": ("image-to-text", "Image Captioning"),
}
# (eval task tag, protocol modality) -> task type and name, for results of non-image models (mmzoo.modalities)
MODALITY_TASK_TYPES: dict[tuple[str, str], tuple[str, str]] = {
    ("retrieval", "audio"): ("feature-extraction", "Audio-Text Retrieval"),
}


def task_type(result: dict[str, Any], default: tuple[Any, Any]) -> tuple[Any, Any]:
    """``(Hub task type, task name)`` of one eval result (its protocol's ``modality`` picks audio names)."""
    modality = (result.get("protocol") or {}).get("modality")
    return MODALITY_TASK_TYPES.get((result["task"], modality)) or TASK_TYPES.get(result["task"], default)


# words of metric keys shown differently in readable metric names
_METRIC_WORDS = {"image": "Image", "audio": "Audio", "text": "Text", "to": "→", "recall": "Recall", "at": "@", "mean": "Mean",
                 "median": "Median", "rank": "Rank", "accuracy": "Accuracy", "bleu": "BLEU", "cider": "CIDEr",
                 "meteor": "METEOR", "rouge": "ROUGE", "spice": "SPICE", "top": "Top", "vqa": "VQA", "f1": "F1",
                 "auc": "AUC", "roc": "ROC", "map": "mAP", "ndcg": "nDCG", "mrr": "MRR", "loss": "Loss"}


def metric_name(key: str) -> str:
    """A readable metric name: ``text_to_image_recall_at_1`` -> ``Text→Image Recall@1``."""
    words = [_METRIC_WORDS.get(w, w.capitalize() if w.isalpha() else w) for w in re.split(r"[_\s]+", key) if w]
    out = ""
    for word in words:
        glue = "" if not out or word in ("→", "@") or out.endswith(("→", "@")) else " "
        out += glue + word
    return out or key


@dataclass(frozen=True)
class Run:
    """The files of a run directory that a card and a push need (``recipe`` without secret keys)."""

    path: Path
    config: dict[str, Any]
    spec: ModelSpec
    recipe: dict[str, Any] | None
    eval_results: dict[str, Any] | None
    info: dict[str, Any] | None = None  # run_info.json: wall time, hardware, samples, losses (mmzoo.train.run_info)
    precision: dict[str, Any] | None = None  # precision.json: the precision trained in and why (mmzoo.train.precision)


def load_run(run_dir: str | Path) -> Run:
    """Read ``config.json`` (required), ``recipe.yaml`` and ``eval_results.json`` (optional) of a run."""
    path = Path(run_dir)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise HubError(f"{config_file}: no such file; pass a run directory written by mmzoo (save_pretrained/train)")
    config = _read(config_file, json.loads)
    if config.get("model_type", "").split("_")[0] != "mmzoo" or not isinstance(config.get("spec"), dict):
        raise HubError(f"{config_file}: not an mmzoo config (model_type {config.get('model_type')!r}, no `spec` "
                       "dict); push runs written by mmzoo")
    spec = ModelSpec.from_dict(config["spec"], source=f"{config_file} → spec")
    recipe = _read(path / "recipe.yaml", yaml.safe_load) if (path / "recipe.yaml").is_file() else None
    recipe = _without_secrets(recipe) if recipe is not None else None
    results = _read(path / "eval_results.json", json.loads) if (path / "eval_results.json").is_file() else None
    if results is not None and not isinstance(results.get("results"), list):
        raise HubError(f"{path / 'eval_results.json'}: expected {{'results': [...]}}, got keys {sorted(results)}")
    info = _read(path / RUN_INFO, json.loads) if (path / RUN_INFO).is_file() else None
    from ..train.precision import PRECISION_FILE

    precision = _read(path / PRECISION_FILE, json.loads) if (path / PRECISION_FILE).is_file() else None
    return Run(path, config, spec, recipe, results, info, precision)


def _without_secrets(node: Any) -> Any:
    """Drop secret-looking keys (token, password...) so they reach neither the card nor the Hub."""
    if isinstance(node, dict):
        return {k: _without_secrets(v) for k, v in node.items() if str(k).lower() not in SECRET_KEYS}
    return [_without_secrets(v) for v in node] if isinstance(node, list) else node


def _read(file: Path, parse) -> Any:
    try:
        return parse(file.read_text(encoding="utf-8"))
    except (ValueError, yaml.YAMLError) as err:
        raise HubError(f"{file}: cannot be parsed ({err}); rewrite it or rerun the step that wrote it") from None


# -- metadata ------------------------------------------------------------------------------------------------
def is_hub_id(source: str | None) -> bool:
    """True for a Hub repo id (``org/name``); False for local paths, ``mmzoo:`` built-ins and invalid ids."""
    if not source or source.startswith(("mmzoo:", ".", "/", "~")) or Path(source).expanduser().exists():
        return False
    try:
        validate_repo_id(source)
    except HFValidationError:
        return False
    return True


def base_models(spec: ModelSpec) -> list[str]:
    """Hub ids of the checkpoints whose weights initialised a tower (local folders cannot be named)."""
    return [e.model for e in spec.encoders if e.pretrained and is_hub_id(e.model)]


def pipeline_tag(spec: ModelSpec, config: dict[str, Any] | None = None) -> str:
    """The Hub pipeline tag of the model's main head (see :mod:`mmzoo.hub.snippets`)."""
    return snippets.pipeline_tag(spec, config or {})


def eval_results(run: Run) -> list[EvalResult]:
    """One ``EvalResult`` per metric of ``eval_results.json`` (the card's ``model-index``)."""
    out = []
    for result in (run.eval_results or {}).get("results", []):
        task_kind, task_name = task_type(result, (result["task"], result["task"]))
        dataset = result.get("dataset") or {}
        for metric, value in sorted((result.get("metrics") or {}).items()):
            out.append(EvalResult(
                task_type=task_kind, task_name=task_name,
                dataset_type=dataset.get("name", "unknown"), dataset_name=dataset.get("name", "unknown"),
                dataset_config=dataset.get("config"), dataset_split=dataset.get("split"),
                dataset_revision=dataset.get("revision"),
                metric_type=metric, metric_name=metric_name(metric), metric_value=value,
            ))
    return out


def eval_result_files(run: Run) -> dict[str, str]:
    """``.eval_results/<dataset>.yaml`` texts (Hub eval-results format), one entry per metric."""
    entries: dict[str, list[EvalResultEntry]] = {}
    for result in (run.eval_results or {}).get("results", []):
        dataset = result.get("dataset") or {}
        name = dataset.get("name", "unknown")
        protocol = _inline(result.get("protocol"))
        task_name = task_type(result, (None, result["task"]))[1]
        for metric, value in sorted((result.get("metrics") or {}).items()):
            notes = f"{task_name}: {metric_name(metric)}" + (f" ({protocol})" if protocol else "")
            entries.setdefault(name, []).append(EvalResultEntry(
                dataset_id=name, task_id=f"{result['task']}/{metric}", value=value,
                dataset_revision=dataset.get("revision"), notes=notes,
            ))
    return {f".eval_results/{_slug(name)}.yaml": yaml.safe_dump(eval_result_entries_to_yaml(items), sort_keys=False)
            for name, items in entries.items()}


def card_data(run: Run, repo_id: str | None = None, license: str | None = None,
              tags: list[str] | tuple[str, ...] = ()) -> ModelCardData:
    spec, hub = run.spec, (run.recipe or {}).get("hub") or {}
    model_name = (repo_id or spec.name).split("/")[-1]
    modality_tags = [t for m in paired_modalities(spec) for t in MODALITIES.get(m).tags]  # vision-language, audio...
    all_tags = ["mmzoo", "multimodal", *modality_tags, spec.fusion.type, *(o.type for o in spec.objectives),
                *(hub.get("tags") or []), *tags]
    metrics = sorted({m for r in (run.eval_results or {}).get("results", []) for m in r.get("metrics") or {}})
    return ModelCardData(
        model_name=model_name,
        library_name="mmzoo",
        license=license or hub.get("license") or DEFAULT_LICENSE,
        base_model=base_models(spec) or None,
        datasets=_datasets(run) or None,
        pipeline_tag=pipeline_tag(spec, run.config),
        tags=list(dict.fromkeys(all_tags)),
        metrics=metrics or None,
        eval_results=eval_results(run) or None,
    )


def _datasets(run: Run) -> list[str]:
    """Hub dataset ids named in the recipe's data section or the eval results (built-ins are not Hub ids)."""
    names = [r.get("dataset", {}).get("name") for r in (run.eval_results or {}).get("results", [])]
    names += [name for name, hub in _data_names(run.recipe) if hub]
    return [n for n in dict.fromkeys(names) if isinstance(n, str) and is_hub_id(n)]


def _data_names(recipe: dict[str, Any] | None) -> list[tuple[str, bool]]:
    """``(shown name, is a Hub id)`` of each data source of the recipe; each source spec knows its own
    (``dataset_info()`` names it: ``mmzoo:NAME`` for built-ins, ``karpathy:coco``...; ``hub_dataset()``)."""
    from ..data import DataSpec

    try:
        data = DataSpec.model_validate((recipe or {}).get("data"))
    except ValueError:  # not a data section this mmzoo can read: name nothing rather than guess
        return []
    return list(dict.fromkeys((source.hub_dataset() or source.dataset_info()[0]["name"], bool(source.hub_dataset()))
                              for source in data.sources()))


# -- rendering -----------------------------------------------------------------------------------------------
def templates_dir() -> Path:
    """``mmzoo/model_cards`` in an installed wheel, else the repo's top-level ``model_cards/``."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "model_cards", package.parent / "model_cards"):
        if (candidate / "base.md.jinja").is_file():
            return candidate
    raise HubError(f"model card templates not found in {package / 'model_cards'} or {package.parent / 'model_cards'}; "
                   "reinstall mmzoo")


PICTURES = ((LOSS_CURVE, "Training and evaluation curves"), (EXAMPLES, "Held-out examples with the model's top results"))


def render_card(run_dir: str | Path | Run, repo_id: str | None = None, *, license: str | None = None,
                tags: list[str] | tuple[str, ...] = (), template: str = "base.md.jinja",
                remote_code: bool = False) -> ModelCard:
    """Render the model card of a run.

    Args:
        run_dir: run directory (or a loaded :class:`Run`).
        repo_id: Hub id used in the usage snippets and as model name (default: the spec's name).
        license: Hub license id; default ``recipe.yaml → hub.license`` or ``apache-2.0``.
        tags: extra tags.
        template: template file in ``model_cards/``.
        remote_code: the snippets load the repo's own code (``trust_remote_code=True``, no ``import mmzoo``),
            for repos pushed with ``remote_code=True``.

    Example:
        >>> card = render_card("runs/mm-clip-tiny", "me/mm-clip-tiny")  # doctest: +SKIP
        >>> card.data.library_name  # doctest: +SKIP
        'mmzoo'
    """
    import jinja2

    run = run_dir if isinstance(run_dir, Run) else load_run(run_dir)
    data = card_data(run, repo_id, license, tags)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates_dir()), keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    env.filters.update(md=md.text, cell=md.cell, code=md.code_span, code_cell=md.code_cell, fence=md.fence)
    text = env.get_template(template).render(card_data=data.to_yaml(),
                                             **_context(run, data, repo_id, remote_code))
    return ModelCard(stamp(text))


def _context(run: Run, data: ModelCardData, repo_id: str | None, remote_code: bool = False) -> dict[str, Any]:
    spec, recipe, info = run.spec, run.recipe, run.info or {}
    learned = learned_scalars(run.path, spec)
    objectives = [{"type": o.type, "weight": o.weight, "settings": _inline(o.to_dict(), skip=("type", "weight")),
                   "learned": ", ".join(f"{k} {v:.4g}" for k, v in learned.get(o.type, {}).items())}
                  for o in spec.objectives]
    repo = repo_id or f"<user>/{spec.name}"
    text, architecture = description(spec, run.info), describe_spec(spec)
    return {
        "model_name": data.model_name, "repo_id": repo,
        "description": text,
        "run_description": (recipe or {}).get("description") or "",
        "family": "dual encoder" if spec.fusion.type == "dual_encoder" else f"{spec.fusion.type} fusion model",
        "summary": "" if text == architecture else architecture,
        "mmzoo_version": __version__, "projection_dim": spec.projection_dim,
        "encoders": [_encoder_row(e) for e in spec.encoders],
        "fusion": {"type": spec.fusion.type, "settings": _inline(spec.fusion.to_dict(), skip=("type",))},
        "objectives": objectives, "spec_yaml": spec.to_yaml(),
        "datasets": list(dict.fromkeys(name for name, _ in _data_names(recipe))) or data.datasets or [],
        "hyperparameters": _flatten((recipe or {}).get("training") or {}),
        "recipe_yaml": yaml.safe_dump(recipe, sort_keys=False) if recipe else "",
        "results": [_result_row(r) for r in (run.eval_results or {}).get("results", [])],
        "zero_shot": spec.scores_pairs, "base_models": data.base_model or [],
        "usages": snippets.usages(spec, run.config, repo, remote_code), "remote_code": remote_code,
        "facts": _facts(info) + _precision_facts(run.precision), "checkpoint_step": info.get("checkpoint_step"),
        "evaluated": run.eval_results is not None,
        "pictures": [(file, caption) for file, caption in PICTURES if (run.path / file).is_file()],
        **_peft_context(run),
    }


def _peft_context(run: Run) -> dict[str, Any]:
    """LoRA settings per tower and the trainable / total parameter counts (counted on a meta-device model)."""
    if not any(e.peft for e in run.spec.encoders):
        return {"peft": [], "parameters": None}
    from ..adapters import card_facts

    facts = card_facts(run.config)
    counts = facts["parameters"]
    return {"peft": facts["peft"],
            "parameters": {"trainable": f"{counts['trainable']:,}", "total": f"{counts['total']:,}",
                           "percent": f"{100 * counts['trainable'] / counts['total']:.2f}"}}


def _facts(info: dict[str, Any]) -> list[tuple[str, str]]:
    """(fact, value) rows of the card's "Training run" table, from ``run_info.json``."""
    if not info:
        return []
    rows = []
    if info.get("wall_time_s") is not None:
        rows.append(("Wall time", f"{info['wall_time_s'] / 60:.1f} min ({info['wall_time_s']:.0f} s)"))
    rows.append(("Hardware", hardware_line(info.get("hardware"))))
    if info.get("global_step") is not None:
        rows.append(("Optimizer steps", str(info["global_step"])))
    if info.get("samples_seen") is not None:
        rows.append(("Samples seen", f"{info['samples_seen']:,}" + (f" ({info['epochs']:.2f} epochs)"
                                                                    if info.get("epochs") else "")))
    for key, label in (("final_train_loss", "Final training loss"), ("mean_train_loss", "Mean training loss"),
                       ("final_eval_loss", "Final evaluation loss")):
        if info.get(key) is not None:
            terms = info.get(key.replace("loss", "terms")) or {}
            extra = ", ".join(f"{k} {v:.4f}" for k, v in terms.items())
            rows.append((label, f"{info[key]:.4f}" + (f" ({extra})" if extra else "")))
    if info.get("resumed_from"):
        rows.append(("Resumed from", str(info["resumed_from"])))
    return rows


def _precision_facts(choice: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The "Precision" row, from ``precision.json``: what the run trained in, why, and the calibration's
    measurement when ``precision: auto`` chose (no local path: the cache file it may come from is left out)."""
    if not choice or not choice.get("precision"):
        return []
    if choice.get("requested") != "auto":
        return [("Precision", f"{choice['precision']} (set in the recipe)")]
    text = f"{choice['precision']}, chosen by `precision: auto`: {choice.get('reason', '')}"
    seconds = choice.get("seconds_per_step") or {}
    if {"fp32", "bf16"} <= seconds.keys():
        text += (f"; calibration: fp32 {seconds['fp32']:.3f} s/step, bf16 {seconds['bf16']:.3f} s/step, bf16 "
                 f"speedup {choice.get('speedup_bf16') or seconds['fp32'] / seconds['bf16']:.2f}x")
    return [("Precision", text.replace("|", "/"))]


def _encoder_row(enc) -> dict[str, Any]:
    source = enc.model if enc.model else f"inline `{enc.config['model_type']}` config"
    if enc.config and enc.model:
        source += " (with config overrides)"
    projection = enc.projection
    return {"modality": enc.modality, "source": source, "pretrained": enc.pretrained, "pooling": enc.pooling,
            "freeze": "base weights (LoRA adapters train)" if enc.peft else
                      ("yes" if enc.freeze else "no") if isinstance(enc.freeze, bool) else ", ".join(enc.freeze),
            "projection": f"{projection.type} → {projection.dim or 'projection_dim'}"}


def _result_row(result: dict[str, Any]) -> dict[str, Any]:
    dataset = result.get("dataset") or {}
    name = dataset.get("name", "unknown") + (f" / {dataset['config']}" if dataset.get("config") else "")
    metrics = [(k, f"{v:.4f}" if isinstance(v, float) else v) for k, v in sorted((result.get("metrics") or {}).items())]
    metrics = [(metric_name(k), v) for k, v in metrics]
    return {"task_name": task_type(result, (None, result["task"]))[1], "dataset": name,
            "split": dataset.get("split"), "metrics": metrics, "protocol": _inline(result.get("protocol"))}


def _inline(mapping: Any, skip: tuple[str, ...] = ()) -> str:
    if not isinstance(mapping, dict):
        return "" if mapping is None else str(mapping)
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in mapping.items() if k not in skip)


def _flatten(mapping: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for key, value in mapping.items():
        if isinstance(value, dict):
            rows += _flatten(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", json.dumps(value) if isinstance(value, (list, bool)) or value is None else value))
    return rows


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "results"


def code_blocks(text: str, language: str = "python") -> list[str]:
    """The bodies of the fenced ``language`` blocks of a Markdown text, in order (any fence of 3+ backticks)."""
    pattern = re.compile(r"^(`{3,})" + re.escape(language) + r"[ \t]*\n(.*?)^\1[ \t]*$", re.DOTALL | re.MULTILINE)
    return [m.group(2) for m in pattern.finditer(text)]


# -- "human-edited" detection ----------------------------------------------------------------------------------
def _digest(text: str) -> str:
    return hashlib.sha256(_MARKER.sub("\n", text.replace("\r\n", "\n")).rstrip("\n").encode()).hexdigest()


def stamp(text: str) -> str:
    """Append the marker with the sha256 of ``text`` (see :func:`is_generated_card`)."""
    text = _MARKER.sub("\n", text).rstrip("\n") + "\n"
    return (f"{text}\n<!-- mmzoo-card-sha256: {_digest(text)} (generated by mmzoo {__version__}; edit freely: "
            "mmzoo keeps edited cards unless overwrite_card=True) -->\n")


def is_generated_card(text: str) -> bool:
    """True when ``text`` is a card mmzoo generated and nobody changed since (its marker hash still matches)."""
    match = _MARKER.search(text.replace("\r\n", "\n"))
    return match is not None and match.group(1) == _digest(text)
