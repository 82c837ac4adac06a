"""Facts a card states about a run, read from the run folder itself (never from the preset it started from).

* :func:`describe_spec`: a one-line description regenerated from the spec as trained (towers, widths, image and
  patch sizes, fusion, objectives), so ``--set`` overrides show.
* :func:`learned_scalars`: the temperature / scale / bias the objectives learned, read from ``model.safetensors``.
* ``run_info.json`` (written by :mod:`mmzoo.train.run_info`): wall time, hardware, samples seen, final losses,
  where the model spec came from, and for checkpoints the step they hold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..specs import ModelSpec
from ..utils.files import RUN_INFO  # noqa: F401  (written by mmzoo.train.run_info, read by the card)


def _tower(enc) -> str:
    config = enc.config or {}
    kind = str(config.get("model_type") or "").upper() or None
    parts = []
    if config.get("num_hidden_layers") is not None:
        parts.append(f"{config['num_hidden_layers']} layers")
    if config.get("hidden_size") is not None:
        parts.append(f"width {config['hidden_size']}")
    if enc.modality == "image":
        if config.get("image_size") is not None:
            parts.append(f"{config['image_size']} px images")
        if config.get("patch_size") is not None:
            parts.append(f"{config['patch_size']} px patches")
    source = f"`{enc.model}`" if enc.model else (kind or "inline")
    if enc.model and config:
        source += " with config overrides"
    detail = f" ({', '.join(parts)})" if parts else ""
    return f"{source} {enc.modality} tower{detail}, {enc.pooling} pooled"


def describe_spec(spec: ModelSpec) -> str:
    """One sentence describing the architecture of ``spec`` as it was trained."""
    family = "Dual encoder" if spec.fusion.type == "dual_encoder" else f"`{spec.fusion.type}` fusion model"
    towers = " and ".join(_tower(e) for e in spec.encoders)
    objectives = " + ".join(o.type for o in spec.objectives)
    return f"{family}: {towers}; shared embedding width {spec.projection_dim}; objectives {objectives}."


def description(spec: ModelSpec, info: dict[str, Any] | None) -> str:
    """The user's own description when they wrote one (their spec file / inline spec / a ``description``
    override), else the one regenerated from the spec (a preset's text goes stale once overrides apply)."""
    origin = (info or {}).get("model_origin") or {}
    if spec.description and (origin.get("description_from") == "user" or (not origin and not info)):
        return spec.description
    return describe_spec(spec)


def learned_scalars(run_dir: str | Path, spec: ModelSpec) -> dict[str, dict[str, float]]:
    """``{objective: {"temperature" | "bias": value}}`` the objectives learned, read from the run's
    ``model.safetensors``: each objective's scalar parameters (``objectives.<type>.<name>``), converted by its spec
    (``learned_values``: the one convention, temperature tau with ``logit_scale`` = log(1 / tau))."""
    file = Path(run_dir) / "model.safetensors"
    if not file.is_file():
        return {}
    from safetensors import safe_open

    out: dict[str, dict[str, float]] = {}
    with safe_open(str(file), framework="np") as weights:
        keys = list(weights.keys())
        for objective in spec.objectives:
            prefix = f"objectives.{objective.type}."
            scalars = {}
            for key in keys:
                name = key[len(prefix):]
                if key.startswith(prefix) and "." not in name:
                    tensor = weights.get_tensor(key)
                    if tensor.size == 1:
                        scalars[name] = float(tensor.reshape(-1)[0])
            found = objective.learned_values(scalars)
            if found:
                out[objective.type] = found
    return out


def hardware_line(hardware: dict[str, Any] | None) -> str:
    if not hardware:
        return "unknown"
    if hardware.get("accelerator"):
        return f"{hardware.get('count', 1)} × {hardware['accelerator']}"
    cpu = hardware.get("cpu") or "CPU"
    threads = f", {hardware['threads']} torch threads" if hardware.get("threads") else ""
    return f"CPU only: {cpu} ({hardware.get('cores', '?')} cores{threads})"


def default_commit_message(spec: ModelSpec, info: dict[str, Any] | None, version: str) -> str:
    """``"Upload <run>: <model>, <N> steps (<samples> samples)"`` from the run, else the spec's name."""
    info = info or {}
    name = info.get("run_name") or spec.name
    what = f"Upload {name}"
    if info.get("checkpoint_step") is not None:
        what += f" checkpoint at step {info['checkpoint_step']}"
    details = []
    if spec.name != name:
        details.append(f"model {spec.name}" + (" + overrides" if (info.get("model_origin") or {}).get("overrides")
                                                else ""))
    if info.get("global_step") is not None:
        details.append(f"{info['global_step']} steps, {info.get('samples_seen', '?')} samples")
    return f"{what} ({'; '.join(details)}) with mmzoo {version}" if details else f"{what} with mmzoo {version}"
