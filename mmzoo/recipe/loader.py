"""Load a recipe YAML, apply ``--set key.path=value`` overrides, and resolve its model spec.

Dotted keys walk mappings by key and lists by index, or by the ``modality`` / ``type`` / ``task`` / ``name``
of an item (``encoders.text.pooling``, ``objectives.contrastive.weight``). Override values are parsed as
YAML (``--set training.learning_rate=1e-3`` gives a float, ``--set hub.tags=[a,b]`` a list). Every error
names the file and the dotted key.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import RecipeError, SpecError
from ..specs import ModelSpec
from ..specs.base import deprecated_keys, format_validation_error
from ..utils.redact import is_secret_key, show_value
from ..utils.safe_yaml import YamlInputError, load_yaml, load_yaml_file
from .schema import RecipeSpec, normalise_model_section

_ITEM_KEYS = ("modality", "type", "task", "name", "source")
_FREE_FORM = {"config", "params", "trainer_args", "lr_scheduler_kwargs"}  # mappings whose keys nobody checks


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> RecipeSpec:
    """Read, override and validate a recipe; its model spec is resolved once to check it.

    Args:
        path: recipe YAML file.
        overrides: ``"a.b.c=value"`` strings (the CLI's ``--set``), applied in order before validation.

    Returns:
        The :class:`RecipeSpec`, with ``name`` defaulting to the file's stem and ``base_dir`` set to the
        absolute folder that relative paths in it are resolved against (the recipe's folder by default).

    Raises:
        RecipeError: naming the file and the dotted key of each problem.

    >>> recipe = load_recipe("recipes/quickstart.yaml", ["training.max_steps=10"])  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: no such recipe file; pass the path of a recipe YAML (see recipes/)")
    try:
        data = load_yaml_file(path, "recipe")
    except YamlInputError as err:
        raise RecipeError(str(err)) from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping with model:, data: and training:; got {type(data).__name__}")
    if "model" in data:
        data["model"] = normalise_model_section(data["model"])
    for item in overrides:
        key, value = parse_assignment(item, where=str(path))
        if key.split(".")[0] == "model" and isinstance(data.get("model"), (str, dict)):
            data["model"] = normalise_model_section(data["model"])
        set_dotted(data, key, value, where=f"{path} → --set {key}", create=True)
    data.setdefault("name", _slug(path.stem))
    base = Path(data.get("base_dir") or ".")
    data["base_dir"] = str((path.parent / base).resolve() if not base.is_absolute() else base)
    try:
        recipe = RecipeSpec.model_validate(data)
    except ValidationError as err:
        message = format_validation_error(err, source=str(path), data=data)
        if overrides:
            message += f"\n  (--set overrides applied: {', '.join(map(_shown_override, overrides))})"
        raise RecipeError(message) from None
    spec = resolve_model_spec(recipe, source=str(path))
    check_recipe_fits_spec(recipe, spec, str(path))
    return recipe


def check_recipe_fits_spec(recipe: RecipeSpec, spec: ModelSpec, source: str = "<recipe>") -> None:
    """Checks that need both the recipe and its resolved model spec (on the inline tower configs; towers
    loaded from a folder are checked when the run builds them): attention heads divide the hidden size, and
    ``data.*.max_length`` fits the text tower's position embeddings."""
    for i, enc in enumerate(spec.encoders):
        config = dict(enc.config or {})
        hidden, heads = config.get("hidden_size"), config.get("num_attention_heads")
        if isinstance(hidden, int) and isinstance(heads, int) and heads > 0 and hidden % heads:
            raise RecipeError(
                f"{source} → model encoders.{enc.modality}.config: hidden_size {hidden} is not divisible by "
                f"num_attention_heads {heads}; use a hidden_size that is a multiple of the heads (e.g. "
                f"{heads * max(1, round(hidden / heads))}) or another number of heads"
            )
        if enc.modality == "text":
            check_text_length(recipe, config.get("max_position_embeddings"), source)


def check_text_length(recipe: RecipeSpec, positions: Any, source: str = "<recipe>") -> None:
    """``data.*.max_length`` must not exceed the text tower's ``max_position_embeddings``."""
    if not isinstance(positions, int):
        return
    for role in ("train", "eval"):
        data = getattr(recipe.data, role)
        length = getattr(data, "max_length", None) if data is not None else None
        if isinstance(length, int) and length > positions:
            raise RecipeError(
                f"{source} → data.{role}.max_length: {length} tokens, but the text tower has only {positions} "
                f"position embeddings (encoders.text.config.max_position_embeddings); set data.{role}.max_length "
                f"<= {positions}, or raise max_position_embeddings in model.overrides"
            )


def _shown_override(item: str) -> str:
    key, sep, raw = item.partition("=")
    return f"{key}{sep}{'***' if is_secret_key(key.split('.')[-1]) else show_value(raw)[1:-1]}" if sep else item


def parse_assignment(item: str, where: str = "--set") -> tuple[str, Any]:
    """``"a.b=1e-3"`` -> ``("a.b", 0.001)`` (the value is parsed as YAML)."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise RecipeError(f"{where}: --set {item!r} is not of the form key.path=value (e.g. training.max_steps=100)")
    try:
        value = load_yaml(raw, f"--set {key}") if raw.strip() else None
    except YamlInputError as err:
        raise RecipeError(f"{where}: --set {key}: value {show_value(raw, key)} is not valid YAML ({err})") from None
    return key, value


def set_dotted(data: dict[str, Any], key: str, value: Any, *, where: str, create: bool) -> None:
    """Set ``data[<dotted key>] = value`` in place.

    ``create=True`` adds missing mapping keys (validation then rejects unknown ones); with ``create=False``
    every key must exist, except new keys inside free-form mappings (``config``, ``params``...). Once the walk
    enters ``model.overrides`` the rest of the key is one dotted override key.
    """
    parts = key.split(".")
    node: Any = data
    trail: list[str] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if trail == ["model", "overrides"]:
            node[".".join(parts[i:])] = value
            return
        if isinstance(node, list):
            index = _list_index(node, part, where, ".".join(trail))
            if last:
                node[index] = value
                return
            node = node[index]
        elif isinstance(node, dict):
            if part not in node:
                # a deprecated key (e.g. max_logit_scale) is absent from a dump; the spec reads and converts it
                if not (create or (trail and trail[-1] in _FREE_FORM) or (last and part in deprecated_keys())):
                    close = difflib.get_close_matches(part, [str(k) for k in node], n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else f"; keys there: {sorted(map(str, node))}"
                    raise RecipeError(f"{where}: {'.'.join(trail + [part])} does not exist{hint}")
                if not last:
                    node[part] = {}
            if last:
                node[part] = value
                return
            node = node[part]
        else:
            raise RecipeError(
                f"{where}: cannot set {key}: {'.'.join(trail) or '(top)'} holds {show_value(node, trail[-1] if trail else None)}, "
                "not a mapping or list"
            )
        trail.append(part)


def _list_index(items: list[Any], part: str, where: str, trail: str) -> int:
    if part.lstrip("-").isdigit():
        index = int(part)
        if not -len(items) <= index < len(items):
            raise RecipeError(f"{where}: {trail}.{part}: index out of range ({trail} has {len(items)} items)")
        return index
    hits = [i for i, item in enumerate(items) if isinstance(item, dict) and part in (item.get(k) for k in _ITEM_KEYS)]
    if len(hits) != 1:
        names = [next((item.get(k) for k in _ITEM_KEYS if isinstance(item, dict) and item.get(k)), i)
                 for i, item in enumerate(items)]
        what = "no item" if not hits else f"{len(hits)} items"
        raise RecipeError(
            f"{where}: {trail}.{part}: {what} of {trail} is named {part!r}; use an index 0..{len(items) - 1} "
            f"or one of {names}"
        )
    return hits[0]


def resolve_model_spec(recipe: RecipeSpec, source: str | None = None) -> ModelSpec:
    """The recipe's model spec: its preset, file or inline spec with ``model.overrides`` applied."""
    from .._spec_io import load_spec

    where = source or "<recipe>"
    section = recipe.model
    try:
        if section.spec is not None:
            base, origin = section.spec, "model.spec"
        elif section.preset is not None:
            base, origin = load_spec(section.preset), f"model.preset {section.preset!r}"
        elif section.init_from is not None:
            folder = Path(recipe.base_dir or ".") / section.init_from
            base, origin = saved_model_spec(folder), f"model.init_from {str(folder)!r}"
        else:
            file = Path(recipe.base_dir or ".") / section.path
            base, origin = ModelSpec.from_file(file), f"model.path {str(file)!r}"
    except (SpecError, KeyError) as err:
        raise RecipeError(f"{where} → model: {err}") from None
    if not section.overrides:
        return base
    data = base.to_dict()
    for key, value in section.overrides.items():
        set_dotted(data, key, value, where=f"{where} → model.overrides.{key}", create=False)
    try:
        return ModelSpec.from_dict(data, source=f"{where} → {origin} + model.overrides")
    except SpecError as err:
        raise RecipeError(str(err)) from None


def saved_model_spec(folder: Path) -> ModelSpec:
    """The spec stored in a saved mmzoo model's ``config.json`` (no torch needed)."""
    config = folder / "config.json"
    if not config.is_file():
        raise SpecError(f"{config}: no such file; init_from needs a folder written by save_pretrained / mmzoo train")
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except ValueError as err:
        raise SpecError(f"{config}: not valid JSON ({err})") from None
    if not isinstance(data.get("spec"), dict):
        raise SpecError(f"{config}: not an mmzoo model (no `spec` in its config); init_from needs an mmzoo model")
    return ModelSpec.from_dict(data["spec"], source=f"{config} → spec")


def _slug(stem: str) -> str:
    slug = "".join(c if c.isalnum() or c in "._-" else "-" for c in stem).strip("-._")
    return slug or "run"
