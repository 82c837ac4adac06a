"""HF-native mmzoo models: encode -> pool -> project -> fuse -> objectives, in one readable forward."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import ConversionOps, WeightConverter

from ..encoders.dims import TowersAndTokens
from ..encoders.tower import Tower, TowerOutput, tower_model
from ..errors import SpecError
from ..fusion import FUSIONS
from ..objectives import OBJECTIVES, ObjectiveContext
from ..modalities import MODALITIES, paired_modalities, paired_modality, tower_of
from .configuration_mmzoo import MmzooConfig
from .outputs import MmzooOutput


# -- checkpoints of the old 0-d scalar shape --------------------------------------------------------------------
# Learnable scalars of objectives are (1,) parameters (FSDP / ZeRO refuse 0-d ones); checkpoints written by mmzoo
# before held them as 0-d tensors (e.g. objectives.contrastive.logit_scale), and from_pretrained reshapes them on
# load. The converter covers every key under ``objectives.`` (each model has that prefix, whichever objectives it
# has, which transformers' reverse-mapping check asks of a registered conversion); it changes 0-d tensors only.
LEGACY_SCALAR_PREFIX = "objectives"


class ScalarToVector(ConversionOps):
    """A 0-d tensor becomes shape (1,); any other tensor passes unchanged (so it is its own reverse on save)."""

    @torch.no_grad()
    def convert(self, input_dict, source_patterns, target_patterns, **kwargs):
        tensors = next(iter(input_dict.values()))
        tensor = tensors[0] if isinstance(tensors, list) else tensors
        return {target_patterns[0]: tensor.reshape(1) if tensor.dim() == 0 else tensor}

    @property
    def reverse_op(self) -> ConversionOps:
        return self


def _register_legacy_scalar_conversion() -> None:
    for model_type in ("mmzoo", "mmzoo_siglip"):
        register_checkpoint_conversion_mapping(
            model_type,
            [WeightConverter(LEGACY_SCALAR_PREFIX, LEGACY_SCALAR_PREFIX, operations=[ScalarToVector()])],
            overwrite=True,
        )


_register_legacy_scalar_conversion()


class MmzooPreTrainedModel(PreTrainedModel):
    config_class = MmzooConfig
    config: MmzooConfig
    base_model_prefix = "mmzoo"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = False
    # checkpoints written before towers were built without unused poolers hold pooler weights: drop them silently
    _keys_to_ignore_on_load_unexpected = [
        r"(text|vision)_tower\.model\.pooler\.", r"fusion\.teachers\.\w+\.model\.pooler\.",
    ]

    def set_attn_implementation(self, attn_implementation, *args, **kwargs):
        super().set_attn_implementation(attn_implementation, *args, **kwargs)
        self._sync_attn_implementation()

    def _sync_attn_implementation(self) -> None:
        """mmzoo's own attention layers (fusion, caption decoder, attention pooler) follow the config's
        ``attn_implementation`` as the towers do: "eager", or SDPA otherwise."""
        implementation = "eager" if self.config._attn_implementation == "eager" else "sdpa"
        for module in self.modules():
            if getattr(module, "mmzoo_attention", False):
                module.attn_implementation = implementation

    def _init_weights(self, module: nn.Module) -> None:
        """mmzoo-owned modules only: towers are PreTrainedModels and keep their own initialisation."""
        super()._init_weights(module)
        if hasattr(module, "_reset_mmzoo_parameters"):
            module._reset_mmzoo_parameters()


def no_split_modules(model: nn.Module) -> set[str]:
    """Class names never to split across devices / to wrap one by one under FSDP: what every HF sub-model (towers,
    teachers) declares in its ``_no_split_modules``, plus mmzoo's own transformer layers (fusion, caption decoder).

    transformers collects ``_no_split_modules`` from direct children only, and the towers sit inside ``Tower``
    wrappers, so the model gathers them itself.
    """
    names: set[str] = set()
    for module in model.modules():
        if module is model:
            continue
        if isinstance(module, PreTrainedModel):
            names.update(module._no_split_modules or ())
        elif isinstance(module, GradientCheckpointingLayer) and type(module).__module__.startswith(_PACKAGE):
            names.add(type(module).__name__)
    return names


_PACKAGE = __name__.split(".")[0]


def towers_and_tokens(config: MmzooConfig, text_width: int, image_width: int) -> TowersAndTokens:
    spec = config.model_spec()
    tokens = config.tokens or {}
    return TowersAndTokens(
        text_width=text_width,
        image_width=image_width,
        embed_dim=spec.projection_dim_of("text"),
        vocab_size=tokens.get("vocab_size") or getattr(config.text_config, "vocab_size", 0),
        pad_token_id=tokens.get("pad_token_id") or 0,
        mask_token_id=tokens.get("mask_token_id"),
        cls_token_id=tokens.get("cls_token_id"),
        sep_token_id=tokens.get("sep_token_id"),
        special_token_ids=tuple(tokens.get("special_token_ids") or ()),
    )


def objective_scalars(tag: str, extras: dict) -> dict[str, Tensor]:
    """The scalar tensors of an objective's extras, detached, keyed ``<tag>/<name>`` (``itm_accuracy`` of ``itm``
    becomes ``itm/accuracy``)."""
    out = {}
    for name, value in extras.items():
        if isinstance(value, Tensor) and value.numel() == 1:
            short = name[len(tag) + 1:] if name.startswith(f"{tag}_") else name
            out[f"{tag}/{short}"] = value.detach().reshape(())
    return out


class _needs_audio_tower:  # noqa: N801 (a method decorator)
    """A method that only models with an audio tower have: ``hasattr(model, name)`` is true exactly for them, and
    the class itself does not show it (transformers' common tests probe ``hasattr(model_class, ...)``, and image
    models have no audio features to give)."""

    def __init__(self, function) -> None:
        self.function = function
        self.__doc__ = function.__doc__

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, instance, owner=None):
        if instance is None or getattr(instance, "audio_tower", None) is None:
            raise AttributeError(f"{self.name}: only models with an audio tower (modality: audio) have it")
        return self.function.__get__(instance, owner)


class MmzooModel(MmzooPreTrainedModel):
    """A multimodal model assembled from its spec (``config.spec``).

    Example:
    ```python
    >>> import mmzoo, torch
    >>> model = mmzoo.build_model("mm-clip-tiny")
    >>> processor = mmzoo.build_processor("mm-clip-tiny")
    >>> from PIL import Image
    >>> batch = processor(text=["a red circle", "a blue square"], images=[Image.new("RGB", (32, 32))] * 2)
    >>> model(**batch, return_loss=True).loss.shape
    torch.Size([])
    ```
    """

    def __init__(self, config: MmzooConfig) -> None:
        super().__init__(config)
        spec = config.model_spec()
        text_spec = spec.encoder("text")
        self.text_tower = Tower(
            tower_model(config.text_config, text_spec.pooling), "text", text_spec.pooling, text_spec.projection,
            spec.projection_dim_of("text"),
        )
        for name in paired_modalities(spec):  # vision_tower and / or audio_tower (mmzoo.modalities)
            modality, enc = MODALITIES.get(name), spec.encoder(name)
            setattr(self, modality.tower_attr, Tower(
                tower_model(getattr(config, modality.config_key), enc.pooling), name, enc.pooling, enc.projection,
                spec.projection_dim_of(name),
            ))
        paired_tower = getattr(self, MODALITIES.get(paired_modality(spec)).tower_attr)
        self.dims = towers_and_tokens(config, self.text_tower.width, paired_tower.width)
        self.fusion = FUSIONS.get(spec.fusion.type)(spec.fusion, self.dims, config)
        self.objectives = nn.ModuleDict(
            {o.type: OBJECTIVES.get(o.type)(o, self.dims, self.fusion) for o in spec.objectives}
        )
        self._weights = {o.type: o.weight for o in spec.objectives}
        self._no_split_modules = no_split_modules(self)
        self.post_init()
        self._sync_attn_implementation()
        self._inject_adapters(spec)  # after post_init: LoRA's own initialisation (B = 0) must survive
        self.apply_trainability(spec)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path=None, *args, **kwargs):
        from ..adapters import is_adapter_folder, load_adapters

        if pretrained_model_name_or_path is not None and is_adapter_folder(pretrained_model_name_or_path):
            return load_adapters(pretrained_model_name_or_path, model_class=cls)  # base + adapter weights
        # transformers re-creates parameters with requires_grad=True while loading: re-apply the spec's trainability
        loaded = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # (model, loading_info) with output_loading_info
        model.apply_trainability()
        return loaded

    def save_pretrained(self, save_directory, *args, **kwargs):
        super().save_pretrained(save_directory, *args, **kwargs)
        from .heads import save_captioning_extras  # heads import this module

        if kwargs.get("is_main_process", True):
            save_captioning_extras(self, save_directory)

    # -- construction helpers -------------------------------------------------------------------------------
    def _inject_adapters(self, spec) -> None:
        from ..adapters import inject_lora

        for i, enc in enumerate(spec.encoders):
            if enc.peft is not None:
                inject_lora(tower_of(self, enc.modality).model, enc,
                            f"encoders.{i}")

    # -- trainability -------------------------------------------------------------------------------------------
    def apply_trainability(self, spec=None) -> None:
        """Set which parameters train, from the spec: the one owner of ``requires_grad``, run on both construction
        paths (``__init__`` and ``from_pretrained``). Runs every step of ``TRAINABILITY_STEPS`` in order: the
        towers' ``freeze`` patterns, then each fusion's / objective's own rules (a fixed temperature, frozen
        teachers); a LoRA tower (``peft:``) trains only its adapters."""
        spec = spec or self.config.model_spec()
        for step in TRAINABILITY_STEPS:
            step(self, spec)

    def unreached_modules(self, spec) -> list[nn.Module]:
        """Modules that this class's training loss never reaches, frozen by ``freeze_unreached`` so that every
        trainable parameter gets a gradient (DDP with ``find_unused_parameters=False``, ZeRO, FSDP): the towers'
        projections when no fusion or objective of the spec reads the projected embeddings with a gradient
        (``trains_projections``; e.g. mlm + itm, whose hard-negative sampling reads them without one). They keep
        their weights (saved and loaded as before); they were never updated anyway."""
        return [] if spec.trains_projections else tower_projections(self)

    # -- embeddings (transformers / accelerate contract) --------------------------------------------------------
    def get_input_embeddings(self) -> nn.Module:
        """The text tower's token embeddings."""
        return self.text_tower.model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.text_tower.model.set_input_embeddings(value)

    # -- encoders ---------------------------------------------------------------------------------------------
    def encode_text(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                    token_type_ids: Tensor | None = None, **tower_kwargs) -> TowerOutput:
        """``tower_kwargs``: ``output_hidden_states`` / ``output_attentions`` for the HF text model."""
        return self.text_tower(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                               **tower_kwargs)

    def encode_image(self, pixel_values: Tensor, **tower_kwargs) -> TowerOutput:
        return self.vision_tower(pixel_values=pixel_values, **tower_kwargs)

    def get_text_features(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                          token_type_ids: Tensor | None = None, output_hidden_states: bool | None = None,
                          output_attentions: bool | None = None, return_dict: bool | None = None,
                          **kwargs) -> BaseModelOutputWithPooling | tuple:
        """The text tower's output with ``pooler_output`` = the projected (unnormalised) text embeddings,
        (n_texts, projection_dim), as CLIP's; ``last_hidden_state`` are the tower's token states."""
        text = self.encode_text(input_ids, attention_mask, token_type_ids,
                                **_tower_flags(output_hidden_states, output_attentions))
        return self._features(text, return_dict)

    def get_image_features(self, pixel_values: Tensor, output_hidden_states: bool | None = None,
                           output_attentions: bool | None = None, return_dict: bool | None = None,
                           **kwargs) -> BaseModelOutputWithPooling | tuple:
        """The vision tower's output with ``pooler_output`` = the projected (unnormalised) image embeddings,
        (n_images, projection_dim), as CLIP's."""
        image = self.encode_image(pixel_values, **_tower_flags(output_hidden_states, output_attentions))
        return self._features(image, return_dict)

    # -- audio (towers of mmzoo.encoders.audio families) ------------------------------------------------------
    def audio_inputs(self, inputs: dict) -> dict[str, Tensor]:
        """Pops the audio tower's inputs (its ``main_input_name`` and family extras such as CLAP's
        ``is_longer``) from ``inputs``; empty when the model has no audio tower or none were given."""
        tower = getattr(self, "audio_tower", None)
        if tower is None:
            return {}
        from ..encoders.audio import AUDIO_FAMILIES

        model_type = tower.model.config.model_type
        extras = AUDIO_FAMILIES.get(model_type).extra_inputs if model_type in AUDIO_FAMILIES else ()
        main = inputs.pop(tower.model.main_input_name, None)
        found = {k: inputs.pop(k) for k in extras if k in inputs}
        for other in MODALITIES.get("audio").input_names:  # another family's input name: a clear error
            if other != tower.model.main_input_name and inputs.get(other) is not None:
                raise ValueError(
                    f"this model's audio tower ({model_type}) takes `{tower.model.main_input_name}`, got `{other}`; "
                    "prepare audio with the model's own processor (mmzoo.build_processor / AutoProcessor)"
                )
        return {tower.model.main_input_name: main, **found} if main is not None else {}

    def encode_audio(self, **audio_inputs) -> TowerOutput:
        """``audio_inputs``: the audio tower's input (``input_features`` or ``input_values``, as its feature
        extractor returns) plus ``output_hidden_states`` / ``output_attentions``."""
        if getattr(self, "audio_tower", None) is None:
            raise SpecError(f"model {self.config.model_spec().name!r} has no audio tower (its encoders: "
                            f"{[e.modality for e in self.config.model_spec().encoders]})")
        return self.audio_tower(**audio_inputs)

    @_needs_audio_tower
    def get_audio_features(self, input_features: Tensor | None = None, input_values: Tensor | None = None,
                           output_hidden_states: bool | None = None, output_attentions: bool | None = None,
                           return_dict: bool | None = None, **kwargs) -> BaseModelOutputWithPooling | tuple:
        """The audio tower's output with ``pooler_output`` = the projected (unnormalised) audio embeddings,
        (n_audios, projection_dim), as CLAP's ``get_audio_features``."""
        inputs = self.audio_inputs({"input_features": input_features, "input_values": input_values, **kwargs})
        if not inputs:
            raise ValueError("get_audio_features needs the audio tower's input (`input_features` or `input_values`)")
        audio = self.encode_audio(**inputs, **_tower_flags(output_hidden_states, output_attentions))
        return self._features(audio, return_dict)

    def _joint_audio(self, text: TowerOutput, audio: TowerOutput, return_loss: bool | None, extra: dict) -> dict:
        """Audio-text pair logits (``logits_per_audio``), and for paired inputs the objectives' losses on the
        (audio, text) pairs: each pair-scoring objective sees the audio tower where image models have the image."""
        fields = {"logits_per_audio": self.pair_logits(audio.normalized, text.normalized)}
        fields["logits_per_text"] = fields["logits_per_audio"].t()
        if not return_loss:
            return fields
        if text.tokens.shape[0] != audio.tokens.shape[0]:
            raise ValueError(
                f"return_loss=True needs paired inputs (text i with audio i); got {text.tokens.shape[0]} texts and "
                f"{audio.tokens.shape[0]} audio clips"
            )
        ctx = ObjectiveContext(model=self, text=text, image=audio, inputs={"attention_mask": text.mask, **extra})
        losses, logits = self._objective_losses(ctx)
        if logits is not None:
            fields.update(logits_per_audio=logits[0], logits_per_text=logits[1])
        return {**fields, **losses}

    def _objective_losses(self, ctx: ObjectiveContext) -> tuple[dict, tuple[Tensor, Tensor] | None]:
        """The weighted loss, its terms and the objectives' scalars, plus the pair logits of the last pair-scoring
        objective (under DDP they span the global batch), or None."""
        terms, loss, scalars, logits = {}, 0.0, {}, None
        for tag, objective in self.objectives.items():
            result = objective(ctx)
            terms[tag] = result.loss
            scalars.update(objective_scalars(tag, result.extras))
            loss = loss + self._weights[tag] * result.loss
            if result.logits_per_image is not None and objective.spec.scores_pairs:
                logits = (result.logits_per_image, result.logits_per_text)
        return {"loss": loss, "loss_terms": terms, "objective_metrics": scalars}, logits

    def _features(self, tower: TowerOutput, return_dict: bool | None):
        out = BaseModelOutputWithPooling(
            last_hidden_state=tower.tokens, pooler_output=tower.embeds,
            hidden_states=getattr(tower.raw, "hidden_states", None), attentions=getattr(tower.raw, "attentions", None),
        )
        return out if self._return_dict(return_dict) else out.to_tuple()

    def _return_dict(self, return_dict: bool | None) -> bool:
        return return_dict if return_dict is not None else self.config.return_dict

    def pair_logits(self, image_embeds: Tensor, text_embeds: Tensor) -> Tensor:
        """(n_images, n_texts) logits from L2-normalised embeddings, by the first scoring objective."""
        for objective in self.objectives.values():
            logits = objective.pair_logits(image_embeds, text_embeds)
            if logits is not None:
                return logits
        return image_embeds @ text_embeds.t()

    # -- forward ----------------------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: Tensor | None = None,
        pixel_values: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        return_loss: bool | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> MmzooOutput | tuple:
        r"""
        input_ids (`(n_texts, seq_len)`), attention_mask, token_type_ids: tokenized texts.
        pixel_values (`(n_images, 3, H, W)`): processed images.
        return_loss (`bool`): compute the objectives; text i must pair with image i.
        output_hidden_states / output_attentions: the towers' own (in `text_model_output` / `vision_model_output`).
        Extra keyword inputs (e.g. `special_tokens_mask`) are passed to the objectives.
        """
        flags = _tower_flags(output_hidden_states, output_attentions)
        audio_inputs = self.audio_inputs(kwargs)
        text = self.encode_text(input_ids, attention_mask, token_type_ids, **flags) if input_ids is not None else None
        image = self.encode_image(pixel_values, **flags) if pixel_values is not None else None
        fields = {
            "text_embeds": text.normalized if text is not None else None,
            "image_embeds": image.normalized if image is not None else None,
            "text_model_output": text.raw if text is not None else None,
            "vision_model_output": image.raw if image is not None else None,
        }
        if text is not None and image is not None:
            fields.update(self._joint(text, image, input_ids, pixel_values, token_type_ids, return_loss, kwargs))
        if audio_inputs:
            fields.update(self._audio_fields(text, audio_inputs, flags, return_loss, kwargs, fields))
        out = MmzooOutput(**fields)  # built once, so the field order is the declared one (loss first)
        return out if self._return_dict(return_dict) else out.to_tuple()

    def _audio_fields(self, text, audio_inputs: dict, flags: dict, return_loss, extra: dict, fields: dict) -> dict:
        """Output fields of the audio tower; with texts, the audio-text logits and losses (added to the
        image-text ones of a text-image-audio model; ``logits_per_text`` then stays the image one)."""
        audio = self.encode_audio(**audio_inputs, **flags)
        out = {"audio_embeds": audio.normalized, "audio_model_output": audio.raw}
        if text is None:
            return out
        joint = self._joint_audio(text, audio, return_loss, extra)
        if fields.get("logits_per_image") is not None:
            joint.pop("logits_per_text")
            if "loss" in joint and fields.get("loss") is not None:
                joint["loss"] = fields["loss"] + joint["loss"]
                joint["loss_terms"] = {**fields["loss_terms"], **{f"audio_{k}": v for k, v in joint["loss_terms"].items()}}
                joint["objective_metrics"] = {**fields["objective_metrics"],
                                              **{f"audio_{k}": v for k, v in joint["objective_metrics"].items()}}
        return {**out, **joint}

    def _joint(self, text: TowerOutput, image: TowerOutput, input_ids, pixel_values, token_type_ids,
               return_loss: bool | None, extra: dict) -> dict:
        """Pair logits, and for paired inputs the losses and fused states."""
        fields = {"logits_per_image": self.pair_logits(image.normalized, text.normalized)}
        n_text, n_image = text.tokens.shape[0], image.tokens.shape[0]
        if n_text != n_image:
            if return_loss:
                raise ValueError(
                    f"return_loss=True needs paired inputs (text i with image i); got {n_text} texts and "
                    f"{n_image} images"
                )
            return {**fields, "logits_per_text": fields["logits_per_image"].t()}
        inputs = {"input_ids": input_ids, "attention_mask": text.mask, "pixel_values": pixel_values,
                  "token_type_ids": token_type_ids, **extra}
        ctx = ObjectiveContext(model=self, text=text, image=image, inputs=inputs)
        fields["logits_per_text"] = fields["logits_per_image"].t()
        if return_loss:
            losses, logits = self._objective_losses(ctx)
            if logits is not None:
                fields.update(logits_per_image=logits[0], logits_per_text=logits[1])
            fields.update(losses)
        if self.fusion.pair_dim or self.fusion.text_token_dim:
            fields.update(fused_embeds=ctx.fused.pair_embeds, fused_text_states=ctx.fused.text_tokens)
        return fields

    # -- image-text matching ---------------------------------------------------------------------------------
    @torch.no_grad()
    def score_pairs(self, input_ids: Tensor, pixel_values: Tensor, attention_mask: Tensor | None = None,
                    token_type_ids: Tensor | None = None, pairs: Tensor | None = None,
                    batch_size: int = 256) -> Tensor:
        r"""Match probabilities P(image and text describe each other) from the ``itm`` head on the fused pairs.

        input_ids / attention_mask / token_type_ids (`(n_texts, seq_len)`): tokenized texts.
        pixel_values (`(n_images, 3, H, W)`): processed images.
        pairs (`(N, 2)` long, optional): rows ``(image index, text index)``; then the result is `(N,)`, one
            probability per row. Without it every image is scored with every text: `(n_images, n_texts)`.
        batch_size: fused pairs per forward pass.

        Needs a fusion that provides pair embeddings and a trained ``itm`` objective (e.g. mm-vilbert-tiny).
        """
        itm = self.objectives["itm"] if "itm" in self.objectives else None
        if itm is None or not hasattr(itm, "match_logits"):
            raise SpecError(
                f"score_pairs: model {self.config.model_spec().name!r} has no `itm` objective (objectives: "
                f"{list(self.objectives)}); train a fusion that provides pair_embedding with `- type: itm`"
            )
        text = self.encode_text(input_ids, attention_mask, token_type_ids)
        image = self.encode_image(pixel_values)
        n_images, n_texts = image.tokens.shape[0], text.tokens.shape[0]
        device = image.tokens.device
        if pairs is None:
            grid = torch.cartesian_prod(torch.arange(n_images, device=device), torch.arange(n_texts, device=device))
        else:
            grid = torch.as_tensor(pairs, dtype=torch.long, device=device).reshape(-1, 2)
            if len(grid) and ((grid[:, 0] >= n_images).any() or (grid[:, 1] >= n_texts).any() or (grid < 0).any()):
                raise ValueError(
                    f"score_pairs: pairs hold indices outside {n_images} images x {n_texts} texts; each row is "
                    "(image index, text index)"
                )
        scores = [itm.match_logits(self, text, image, chunk[:, 1], chunk[:, 0]).float().softmax(-1)[:, 1]
                  for chunk in grid.split(batch_size)]
        scores = torch.cat(scores) if scores else torch.zeros(0, device=device)
        return scores if pairs is not None else scores.view(n_images, n_texts)


def freeze_towers(model: MmzooModel, spec) -> None:
    """``encoders.<i>.freeze``: true freezes the whole tower, a list freezes the parameters matching its patterns."""
    for i, enc in enumerate(spec.encoders):
        tower = tower_of(model, enc.modality)
        if enc.peft is not None:
            continue  # a LoRA tower's own weights are frozen by adapter_trainability
        if enc.freeze is True:
            tower.model.requires_grad_(False)
            continue
        for pattern in enc.freeze or []:
            hits = [p for n, p in tower.model.named_parameters() if fnmatch.fnmatch(n, pattern)]
            if not hits:
                names = [n for n, _ in tower.model.named_parameters()][:5]
                raise SpecError(
                    f"encoders.{i}.freeze: pattern {pattern!r} matches no parameter of the {enc.modality} tower "
                    f"(names look like {names}); fix the pattern (fnmatch syntax, e.g. 'embeddings.*')"
                )
            for p in hits:
                p.requires_grad_(False)


def component_trainability(model: MmzooModel, spec) -> None:
    """Each fusion and objective applies its own spec's rules (``apply_trainability()``)."""
    for component in (model.fusion, *model.objectives.values()):
        component.apply_trainability()


def adapter_trainability(model: MmzooModel, spec) -> None:
    """``encoders.<i>.peft``: a LoRA tower trains only its adapters (see :mod:`mmzoo.adapters`)."""
    for enc in spec.encoders:
        if enc.peft is not None:
            from ..adapters import set_lora_trainability

            set_lora_trainability(tower_of(model, enc.modality).model, enc)


def tower_projections(model: nn.Module) -> list[nn.Module]:
    """The projections of the model's towers (text, image and / or audio; teachers have none)."""
    return [m.projection for m in model.modules() if isinstance(m, Tower) and m.projection is not None]


def freeze_unreached(model: MmzooModel, spec) -> None:
    """Freeze the parameters of ``model.unreached_modules(spec)`` that no other part of the model shares."""
    unreached = model.unreached_modules(spec)
    if not unreached:
        return
    prefixes = {name for name, module in model.named_modules() if any(module is m for m in unreached)}
    reached = {id(p) for name, p in model.named_parameters(remove_duplicate=False)
               if not any(name.startswith(f"{prefix}.") for prefix in prefixes)}
    for module in unreached:
        for p in module.parameters():
            if id(p) not in reached:
                p.requires_grad_(False)


# (model, spec) -> None steps of MmzooModel.apply_trainability, in order
TRAINABILITY_STEPS: list[Callable[[MmzooModel, Any], None]] = [freeze_towers, adapter_trainability,
                                                                component_trainability, freeze_unreached]


def _tower_flags(output_hidden_states: bool | None, output_attentions: bool | None) -> dict[str, bool]:
    """The HF output flags that were asked for (unset ones are left to the towers' configs)."""
    flags = {"output_hidden_states": output_hidden_states, "output_attentions": output_attentions}
    return {k: v for k, v in flags.items() if v is not None}


class MmzooForZeroShotImageClassification(MmzooModel):
    """The same model, registered for zero-shot image classification (needs a contrastive or sigmoid objective)."""

    def __init__(self, config: MmzooConfig) -> None:
        spec = config.model_spec()
        if not spec.scores_pairs:
            raise SpecError(
                f"zero-shot classification needs an objective that scores image-text pairs (contrastive or sigmoid); "
                f"model {spec.name!r} has objectives {[o.type for o in spec.objectives]}. Add `- type: contrastive`."
            )
        super().__init__(config)
