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
from ..version import __version__

DEFAULT_LICENSE = "apache-2.0"
SECRET_KEYS = frozenset({"token", "hf_token", "api_key", "password", "secret"})
_MARKER = re.compile(r"\n?<!-- mmzoo-card-sha256: ([0-9a-f]{64}) .*?-->\n?")

# eval task tag -> (model-index task type, pretty name)
TASK_TYPES: dict[str, tuple[str, str]] = {
    "retrieval": ("image-text-retrieval", "Image-Text Retrieval"),
    "zero_shot": ("zero-shot-image-classification", "Zero-Shot Image Classification"),
    "zeroshot": ("zero-shot-image-classification", "Zero-Shot Image Classification"),
    "zero_shot_classification": ("zero-shot-image-classification", "Zero-Shot Image Classification"),
    "itm": ("image-text-matching", "Image-Text Matching"),
    "vqa": ("visual-question-answering", "Visual Question Answering"),
    "captioning": ("image-to-text", "Image Captioning"),
}


@dataclass(frozen=True)
class Run:
    """The files of a run directory that a card and a push need (``recipe`` without secret keys)."""

    path: Path
    config: dict[str, Any]
    spec: ModelSpec
    recipe: dict[str, Any] | None
    eval_results: dict[str, Any] | None


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
    return Run(path, config, spec, recipe, results)


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


def pipeline_tag(spec: ModelSpec) -> str:
    return "zero-shot-image-classification" if spec.scores_pairs else "feature-extraction"


def eval_results(run: Run) -> list[EvalResult]:
    """One ``EvalResult`` per metric of ``eval_results.json`` (the card's ``model-index``)."""
    out = []
    for result in (run.eval_results or {}).get("results", []):
        task_type, task_name = TASK_TYPES.get(result["task"], (result["task"], result["task"]))
        dataset = result.get("dataset") or {}
        for metric, value in sorted((result.get("metrics") or {}).items()):
            out.append(EvalResult(
                task_type=task_type, task_name=task_name,
                dataset_type=dataset.get("name", "unknown"), dataset_name=dataset.get("name", "unknown"),
                dataset_config=dataset.get("config"), dataset_split=dataset.get("split"),
                dataset_revision=dataset.get("revision"),
                metric_type=metric, metric_name=metric, metric_value=value,
            ))
    return out


def eval_result_files(run: Run) -> dict[str, str]:
    """``.eval_results/<dataset>.yaml`` texts (Hub eval-results format), one entry per metric."""
    entries: dict[str, list[EvalResultEntry]] = {}
    for result in (run.eval_results or {}).get("results", []):
        dataset = result.get("dataset") or {}
        name = dataset.get("name", "unknown")
        protocol = _inline(result.get("protocol"))
        for metric, value in sorted((result.get("metrics") or {}).items()):
            entries.setdefault(name, []).append(EvalResultEntry(
                dataset_id=name, task_id=f"{result['task']}/{metric}", value=value,
                dataset_revision=dataset.get("revision"), notes=protocol or None,
            ))
    return {f".eval_results/{_slug(name)}.yaml": yaml.safe_dump(eval_result_entries_to_yaml(items), sort_keys=False)
            for name, items in entries.items()}


def card_data(run: Run, repo_id: str | None = None, license: str | None = None,
              tags: list[str] | tuple[str, ...] = ()) -> ModelCardData:
    spec, hub = run.spec, (run.recipe or {}).get("hub") or {}
    model_name = (repo_id or spec.name).split("/")[-1]
    all_tags = ["mmzoo", "multimodal", "vision-language", spec.fusion.type, *(o.type for o in spec.objectives),
                *(hub.get("tags") or []), *tags]
    metrics = sorted({m for r in (run.eval_results or {}).get("results", []) for m in r.get("metrics") or {}})
    return ModelCardData(
        model_name=model_name,
        library_name="mmzoo",
        license=license or hub.get("license") or DEFAULT_LICENSE,
        base_model=base_models(spec) or None,
        datasets=_datasets(run) or None,
        pipeline_tag=pipeline_tag(spec),
        tags=list(dict.fromkeys(all_tags)),
        metrics=metrics or None,
        eval_results=eval_results(run) or None,
    )


def _datasets(run: Run) -> list[str]:
    """Hub dataset ids named in the recipe's data section or the eval results (built-ins are not Hub ids)."""
    names = [r.get("dataset", {}).get("name") for r in (run.eval_results or {}).get("results", [])]
    names += _recipe_hub_datasets(run.recipe)
    return [n for n in dict.fromkeys(names) if isinstance(n, str) and is_hub_id(n)]


def _recipe_hub_datasets(recipe: dict[str, Any] | None) -> list[str]:
    """Hub ids the recipe's data sources read (each source spec knows its own: ``hub_dataset()``)."""
    from ..data import DataSpec

    try:
        data = DataSpec.model_validate((recipe or {}).get("data"))
    except ValueError:  # not a data section mmzoo can read: name nothing rather than guess
        return []
    return [name for source in data.sources() if (name := source.hub_dataset())]


def _find_values(node: Any, keys: tuple[str, ...]) -> list[Any]:
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in keys and isinstance(v, str)]
        return found + [x for v in node.values() for x in _find_values(v, keys)]
    if isinstance(node, list):
        return [x for v in node for x in _find_values(v, keys)]
    return []


# -- rendering -----------------------------------------------------------------------------------------------
def templates_dir() -> Path:
    """``mmzoo/model_cards`` in an installed wheel, else the repo's top-level ``model_cards/``."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "model_cards", package.parent / "model_cards"):
        if (candidate / "base.md.jinja").is_file():
            return candidate
    raise HubError(f"model card templates not found in {package / 'model_cards'} or {package.parent / 'model_cards'}; "
                   "reinstall mmzoo")


def render_card(run_dir: str | Path | Run, repo_id: str | None = None, *, license: str | None = None,
                tags: list[str] | tuple[str, ...] = (), template: str = "base.md.jinja") -> ModelCard:
    """Render the model card of a run.

    Args:
        run_dir: run directory (or a loaded :class:`Run`).
        repo_id: Hub id used in the usage snippet and as model name (default: the spec's name).
        license: Hub license id; default ``recipe.yaml → hub.license`` or ``apache-2.0``.
        tags: extra tags.
        template: template file in ``model_cards/``.

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
    text = env.get_template(template).render(card_data=data.to_yaml(), **_context(run, data, repo_id))
    return ModelCard(stamp(text))


def _context(run: Run, data: ModelCardData, repo_id: str | None) -> dict[str, Any]:
    spec, recipe = run.spec, run.recipe
    objectives = [{"type": o.type, "weight": o.weight, "settings": _inline(o.to_dict(), skip=("type", "weight"))}
                  for o in spec.objectives]
    return {
        "model_name": data.model_name, "repo_id": repo_id or f"<user>/{spec.name}", "description": spec.description,
        "family": "dual encoder" if spec.fusion.type == "dual_encoder" else f"{spec.fusion.type} fusion model",
        "summary": f"{spec.encoder('image').pooling}-pooled image tower and {spec.encoder('text').pooling}-pooled "
                   f"text tower projected to {spec.projection_dim} dims, trained with "
                   + " + ".join(f"{o.weight:g} × {o.type}" for o in spec.objectives) + ".",
        "mmzoo_version": __version__, "projection_dim": spec.projection_dim,
        "encoders": [_encoder_row(e) for e in spec.encoders],
        "fusion": {"type": spec.fusion.type, "settings": _inline(spec.fusion.to_dict(), skip=("type",))},
        "objectives": objectives, "spec_yaml": spec.to_yaml(),
        "datasets": data.datasets or _find_values((recipe or {}).get("data"), ("dataset", "name")),
        "hyperparameters": _flatten((recipe or {}).get("training") or {}),
        "recipe_yaml": yaml.safe_dump(recipe, sort_keys=False) if recipe else "",
        "results": [_result_row(r) for r in (run.eval_results or {}).get("results", [])],
        "zero_shot": spec.scores_pairs, "base_models": data.base_model or [],
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
    return {"task_name": TASK_TYPES.get(result["task"], (None, result["task"]))[1], "dataset": name,
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
