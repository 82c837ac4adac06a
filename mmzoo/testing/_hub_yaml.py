"""README metadata checks of the Hub's ``POST /api/validate-yaml`` for model repos.

Mirrors the checks the Hub documents for model cards (https://huggingface.co/docs/hub/model-cards):
YAML front matter that parses to a mapping, known ``license`` and ``pipeline_tag`` identifiers, string
lists for ``tags``/``datasets``/``base_model`` with repo-id shaped ``base_model`` entries, and a
``model-index`` whose every result names ``task.type``, ``dataset.type``/``dataset.name`` and metrics
with ``type`` and ``value``.
"""

from __future__ import annotations

import re
from typing import Any

LICENSES = frozenset("""
apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0 bigcode-openrail-m
afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc cc0-1.0 cc-by-2.0
cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0
cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0
cdla-permissive-1.0 cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl
gpl gpl-2.0 gpl-3.0 lgpl lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c ms-pl apple-ascl apple-amlr
mpl-2.0 odc-by odbl openrail++ osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr deepfloyd-if-license
llama2 llama3 llama3.1 llama3.2 llama3.3 llama4 gemma unknown other
""".split())

PIPELINE_TAGS = frozenset("""
text-classification token-classification table-question-answering question-answering zero-shot-classification
translation summarization feature-extraction text-generation fill-mask sentence-similarity text-to-speech
text-to-audio automatic-speech-recognition audio-to-audio audio-classification voice-activity-detection
depth-estimation image-classification object-detection image-segmentation text-to-image image-to-text
image-to-image image-to-video unconditional-image-generation video-classification reinforcement-learning
robotics tabular-classification tabular-regression tabular-to-text table-to-text multiple-choice text-ranking
text-retrieval time-series-forecasting text-to-video image-text-to-text image-text-to-image image-text-to-video
visual-question-answering document-question-answering zero-shot-image-classification graph-ml mask-generation
zero-shot-object-detection text-to-3d image-to-3d image-feature-extraction video-text-to-text keypoint-detection
visual-document-retrieval any-to-any video-to-video other
""".split())

_REPO_ID = re.compile(r"^(?:[\w][\w.-]*/)?[\w][\w.-]*$")


def split_front_matter(content: str) -> tuple[str | None, str]:
    """``(yaml_text or None, body)`` of a README, as the Hub reads it."""
    match = re.match(r"^---\s*\n(.*?)\n---\s*(?:\n|$)", content, flags=re.DOTALL)
    return (match.group(1), content[match.end():]) if match else (None, content)


def parse_metadata(content: str) -> dict[str, Any]:
    """Card metadata as a dict (empty when absent or invalid); used for ``cardData`` in repo info."""
    errors, _, data = check_readme(content)
    return data if not errors else {}


def check_readme(content: str) -> tuple[list[str], list[str], dict[str, Any]]:
    """Return ``(errors, warnings, metadata)`` for a model README."""
    import yaml  # a dependency of mmzoo; imported lazily to keep the server's import cheap

    text, _ = split_front_matter(content)
    if text is None:
        return [], ["Empty or missing yaml metadata in repo card"], {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        return [f"Invalid YAML in README.md metadata: {err}"], [], {}
    if data is None:
        return [], ["Empty or missing yaml metadata in repo card"], {}
    if not isinstance(data, dict):
        return ["README.md metadata must be a YAML mapping"], [], {}
    errors: list[str] = []
    for key in ("tags", "datasets", "base_model", "language", "metrics"):
        errors += _check_str_list(data, key)
    for license_id in _as_list(data.get("license")):
        if license_id not in LICENSES:
            errors.append(f'"license" must be one of the Hub license identifiers (or "other"), got {license_id!r}')
    if "pipeline_tag" in data and data["pipeline_tag"] not in PIPELINE_TAGS:
        errors.append(f'"pipeline_tag" must be a known task, got {data["pipeline_tag"]!r}')
    if "library_name" in data and not isinstance(data["library_name"], str):
        errors.append('"library_name" must be a string')
    for base in _as_list(data.get("base_model")):
        if isinstance(base, str) and (not _REPO_ID.match(base) or ".." in base):
            errors.append(f'"base_model" must be a Hub model id like "org/name", got {base!r}')
    if "model-index" in data:
        errors += _check_model_index(data["model-index"])
    return errors, [], data


def _as_list(value: Any) -> list[Any]:
    return [] if value is None else value if isinstance(value, list) else [value]


def _check_str_list(data: dict[str, Any], key: str) -> list[str]:
    if key in data and not all(isinstance(v, str) for v in _as_list(data[key])):
        return [f'"{key}" must be a string or a list of strings']
    return []


def _check_model_index(model_index: Any) -> list[str]:
    if not isinstance(model_index, list):
        return ['"model-index" must be a list']
    errors: list[str] = []
    for i, model in enumerate(model_index):
        where = f"model-index[{i}]"
        if not isinstance(model, dict) or not isinstance(model.get("name"), str):
            errors.append(f'"{where}.name" is required and must be a string')
            continue
        if not isinstance(model.get("results"), list):
            errors.append(f'"{where}.results" is required and must be a list')
            continue
        for j, result in enumerate(model["results"]):
            errors += _check_result(result, f"{where}.results[{j}]")
    return errors


def _check_result(result: Any, where: str) -> list[str]:
    if not isinstance(result, dict):
        return [f'"{where}" must be a mapping']
    errors = []
    task, dataset, metrics = result.get("task"), result.get("dataset"), result.get("metrics")
    if not isinstance(task, dict) or not isinstance(task.get("type"), str):
        errors.append(f'"{where}.task.type" is required')
    for key in ("type", "name"):
        if not isinstance(dataset, dict) or not isinstance(dataset.get(key), str):
            errors.append(f'"{where}.dataset.{key}" is required')
    if not isinstance(metrics, list) or not metrics:
        return errors + [f'"{where}.metrics" must be a non-empty list']
    for k, metric in enumerate(metrics):
        if not isinstance(metric, dict) or not isinstance(metric.get("type"), str):
            errors.append(f'"{where}.metrics[{k}].type" is required')
        elif metric.get("value") is None:
            errors.append(f'"{where}.metrics[{k}].value" is required')
    return errors
