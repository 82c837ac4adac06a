"""Parameter-efficient fine-tuning: LoRA adapters on towers (the ``peft:`` block of an encoder spec), applied with
the ``peft`` library (``pip install mmzoo[peft]``), and saving / loading the adapters alone.

The LoRA layers are part of the architecture the spec describes: :class:`~mmzoo.modeling.MmzooModel` injects them
when it is constructed (``peft.inject_adapter_in_model``), so ``save_pretrained`` writes the full model (base and
adapter weights, the default) and ``from_pretrained`` of that folder rebuilds it exactly.

An adapter-only folder (:func:`save_adapters`) holds ``config.json`` (the full spec), the processor, and
``mmzoo_adapters.safetensors``: every weight except the frozen weights of pretrained towers (so the LoRA
matrices, and the projections, fusion, heads and any tower trained from scratch). Load it with
``MmzooModel.from_pretrained(folder)`` / ``AutoModel.from_pretrained(folder)``: mmzoo first builds the base —
``from_pretrained(base_model)`` when the folder names one (``save_adapters(..., base_model="org/base")``), else
``mmzoo.build_model(spec)``, which loads the pretrained towers from their sources — then loads the adapter
weights on top (:func:`load_adapters`)::

    mmzoo.save_adapters(model, "runs/lit-lora-adapters", processor)      # ~1 MB instead of ~100 MB
    model = AutoModel.from_pretrained("runs/lit-lora-adapters")           # base (MiniLM) + adapters
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import BuildError
from .modalities import tower_attr, tower_of

if TYPE_CHECKING:
    import torch

ADAPTER_WEIGHTS = "mmzoo_adapters.safetensors"
ADAPTER_INFO = "mmzoo_adapters.json"
ADAPTER_NAME = "default"
LORA_MARKER = ".lora_"

# Attention query / value projection names LoRA adapts by default: the first pair a tower has (by the leaf
# names of its nn.Linear modules; the names differ between families and transformers versions).
DEFAULT_TARGETS: tuple[tuple[str, ...], ...] = (
    ("query", "value"),  # BERT, RoBERTa, ELECTRA ... (and ViT before transformers 5)
    ("q_proj", "v_proj"),  # CLIP, SigLIP, ViT (transformers 5), Whisper, wav2vec2, CLAP ...
    ("q_lin", "v_lin"),  # DistilBERT
    ("q", "v"),  # T5
    ("c_attn",),  # GPT-2 (fused qkv)
)


def _require_peft():
    try:
        import peft
    except ImportError as err:
        raise BuildError("a `peft:` block needs the peft library: pip install 'mmzoo[peft]' (or pip install peft)") \
            from err
    return peft


def linear_names(tower_model: torch.nn.Module) -> list[str]:
    import torch

    return sorted({n.rsplit(".", 1)[-1] for n, m in tower_model.named_modules() if isinstance(m, torch.nn.Linear)})


def target_modules(enc, tower_model: torch.nn.Module, where: str) -> list[str]:
    """The spec's ``peft.target_modules``, or the first :data:`DEFAULT_TARGETS` pair the tower has."""
    if enc.peft.target_modules:
        return list(enc.peft.target_modules)
    names = set(linear_names(tower_model))
    for pair in DEFAULT_TARGETS:
        if set(pair) <= names:
            return list(pair)
    raise BuildError(f"{where}.peft.target_modules: no default LoRA targets for a {tower_model.config.model_type!r} "
                     f"tower (its linear modules are named {sorted(names)}); list the linear modules to adapt, "
                     "e.g. target_modules: [query, value]")


def lora_config(enc, tower_model: torch.nn.Module, where: str):
    """The ``peft.LoraConfig`` of an encoder spec's ``peft:`` block for ``tower_model``."""
    peft = _require_peft()
    return peft.LoraConfig(r=enc.peft.r, lora_alpha=enc.peft.alpha, lora_dropout=enc.peft.dropout,
                           target_modules=target_modules(enc, tower_model, where), bias=enc.peft.bias)


def inject_lora(tower_model: torch.nn.Module, enc, where: str) -> None:
    """Add the LoRA layers of ``enc.peft`` to an HF tower model, in place."""
    peft = _require_peft()
    config = lora_config(enc, tower_model, where)
    try:
        peft.inject_adapter_in_model(config, tower_model, adapter_name=ADAPTER_NAME)
    except ValueError as err:  # e.g. target modules not found
        raise BuildError(f"{where}.peft: {err}; linear modules of this tower are named "
                         f"{linear_names(tower_model)}") from None


def set_lora_trainability(tower_model: torch.nn.Module, enc) -> None:
    """A LoRA tower trains only its adapters (and biases as ``peft.bias`` says); its own weights stay frozen."""
    for name, param in tower_model.named_parameters():
        is_bias = name.endswith("bias")
        if LORA_MARKER in name:
            param.requires_grad_(True)
        elif enc.peft.bias == "all" and is_bias:
            param.requires_grad_(True)
        else:
            param.requires_grad_(False)
    if enc.peft.bias == "lora_only":
        for module in tower_model.modules():
            if hasattr(module, "lora_A") and getattr(module, "base_layer", None) is not None:
                bias = getattr(module.base_layer, "bias", None)
                if bias is not None:
                    bias.requires_grad_(True)


def base_layer_state_dict(module: torch.nn.Module, state: dict[str, Any]) -> dict[str, Any]:
    """``state`` of a plain HF model renamed for ``module`` with LoRA layers (``q.weight`` -> ``q.base_layer.weight``),
    so pretrained weights load under the adapters."""
    own = set(module.state_dict())
    out = {}
    for key, value in state.items():
        if key not in own and "." in key:
            head, leaf = key.rsplit(".", 1)
            if f"{head}.base_layer.{leaf}" in own:
                key = f"{head}.base_layer.{leaf}"
        out[key] = value
    return out


def is_lora_key(key: str) -> bool:
    return LORA_MARKER in key


def has_lora(model: torch.nn.Module) -> bool:
    return any(is_lora_key(name) for name, _ in model.named_parameters())


# ------------------------------------------------------------------------------------------- adapters only
def _from_sources(model) -> set[str]:
    """Names of parameters a rebuilt base reproduces: the frozen weights of towers (and teachers) whose weights
    are loaded from their ``model:`` source (``pretrained: true``)."""
    spec = model.config.model_spec()
    prefixes = [f"{tower_attr(e.modality)}.model." for e in spec.encoders
                if e.pretrained]
    prefixes += [f"fusion.teachers.{m}.model." for m, t in (getattr(spec.fusion, "teachers", None) or {}).items()
                 if t.pretrained]
    return {name for name, p in model.named_parameters()
            if not p.requires_grad and any(name.startswith(pre) for pre in prefixes)}


def adapter_state_dict(model) -> dict[str, torch.Tensor]:
    """Every parameter and buffer except those :func:`_from_sources` reproduces."""
    skip = _from_sources(model)
    return {k: v.detach().contiguous() for k, v in model.state_dict().items() if k not in skip}


def parameter_counts(model) -> dict[str, int]:
    """``{"trainable", "total"}`` parameter counts."""
    params = list(model.parameters())
    return {"trainable": sum(p.numel() for p in params if p.requires_grad), "total": sum(p.numel() for p in params)}


def save_adapters(model, out_dir: str | Path, processor=None, *, base_model: str | None = None) -> Path:
    """Write an adapter-only folder (see the module docs): ``config.json``, ``mmzoo_adapters.safetensors``,
    ``mmzoo_adapters.json`` and the processor.

    Args:
        model: an mmzoo model (any head).
        out_dir: the folder to write.
        processor: its processor, saved alongside when given.
        base_model: a full-model folder or Hub id the adapters apply to (its spec must equal the model's); default:
            none, and loading rebuilds the base with ``mmzoo.build_model(spec)`` (pretrained towers from their
            sources).
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (out / "model.safetensors").exists():
        raise BuildError(f"{out} holds a full model (model.safetensors); save the adapters to another folder")
    tensors = adapter_state_dict(model)
    model.config.save_pretrained(out)
    save_file(tensors, str(out / ADAPTER_WEIGHTS), metadata={"format": "pt"})
    info = {"format": "mmzoo-adapters", "version": 1, "base_model": base_model,
            "parameters": parameter_counts(model), "saved_tensors": len(tensors),
            "peft": peft_settings(model.config.model_spec())}
    (out / ADAPTER_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    if processor is not None:
        processor.save_pretrained(out)
    return out


def is_adapter_folder(path: Any) -> bool:
    folder = Path(str(path)).expanduser()
    return (folder / ADAPTER_INFO).is_file() and not (folder / "model.safetensors").is_file()


def load_adapters(folder: str | Path, model_class=None, base=None, **from_pretrained_kwargs):
    """The model of an adapter-only folder: the base (``base`` if given: a model or a folder / Hub id; else the
    folder's ``base_model``; else ``mmzoo.build_model(spec)``) with the folder's weights loaded on top.

    Every saved tensor must fit the base (same names and shapes), and the base must have every tensor the folder
    does not hold from its own sources; otherwise a :class:`~mmzoo.errors.BuildError` says which.
    """
    from safetensors.torch import load_file

    from .modeling import MmzooConfig, MmzooModel

    folder = Path(folder).expanduser()
    info = json.loads((folder / ADAPTER_INFO).read_text(encoding="utf-8"))
    config = MmzooConfig.from_pretrained(folder)
    model_class = model_class or MmzooModel
    base = base if base is not None else info.get("base_model")
    if base is None:
        import logging

        from .utils.services import service

        build_model = service("build_model")  # mmzoo.builder's, provided by `import mmzoo` (it sits above us)
        builder_log = logging.getLogger("mmzoo.builder")
        level = builder_log.level
        builder_log.setLevel(logging.ERROR)  # its "freshly initialised projections" warning: the adapters hold them
        try:
            model = build_model(config.model_spec(), model_class=model_class, answer_vocab=config.answer_vocab)
        finally:
            builder_log.setLevel(level)
    elif isinstance(base, (str, Path)):
        model = model_class.from_pretrained(base, **from_pretrained_kwargs)
    else:
        model = base
    if model.config.model_spec() != config.model_spec():
        raise BuildError(f"{folder}: the adapters were trained on spec {config.model_spec().name!r} but the base "
                         f"{base!r} has another spec; load them onto a base saved from the same spec")
    tensors = load_file(str(folder / ADAPTER_WEIGHTS))
    own = model.state_dict()
    unknown = [k for k in tensors if k not in own]
    wrong = [k for k in tensors if k in own and own[k].shape != tensors[k].shape]
    uncovered = [k for k in adapter_state_dict(model) if k not in tensors]
    if unknown or wrong or uncovered:
        raise BuildError(f"{folder}/{ADAPTER_WEIGHTS} does not fit the base: unknown tensors {unknown[:5]}, wrong "
                         f"shapes {wrong[:5]}, tensors the base lacks values for {uncovered[:5]}; save and load "
                         "with the same mmzoo version and spec")
    model.load_state_dict(tensors, strict=False)
    return model


def peft_settings(spec) -> dict[str, dict[str, Any]]:
    """modality -> the tower's LoRA settings (``target_modules`` ``None`` means the family default)."""
    return {e.modality: e.peft.to_dict() for e in spec.encoders if e.peft is not None}


def card_facts(config: dict[str, Any]) -> dict[str, Any]:
    """For model cards, from a saved ``config.json`` (the model is built on the meta device: no weights are read
    or allocated): ``{"peft": [{"modality", "settings"}], "parameters": {"trainable", "total"}}`` with each LoRA
    tower's target modules as applied (family defaults spelled out)."""
    import torch

    from .modeling import MmzooConfig, MmzooModel

    with torch.device("meta"):
        model = MmzooModel(MmzooConfig.from_dict(config))
    rows = []
    for enc in model.config.model_spec().encoders:
        if enc.peft is None:
            continue
        tower = tower_of(model, enc.modality).model
        targets = sorted(tower.peft_config[ADAPTER_NAME].target_modules)
        p = enc.peft
        rows.append({"modality": enc.modality, "settings": f"{p.type} r={p.r} alpha={p.alpha:g} dropout={p.dropout:g} "
                                                          f"bias={p.bias} target_modules={','.join(targets)}"})
    return {"peft": rows, "parameters": parameter_counts(model)}
