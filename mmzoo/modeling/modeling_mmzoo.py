"""HF-native mmzoo models: encode -> pool -> project -> fuse -> objectives, in one readable forward."""

from __future__ import annotations

import fnmatch

import torch
from torch import Tensor, nn
from transformers import AutoModel, PreTrainedModel

from ..encoders.tower import Tower, TowerOutput
from ..errors import SpecError
from ..fusion import FUSIONS, ModelDims
from ..objectives import OBJECTIVES, ObjectiveContext
from .configuration_mmzoo import MmzooConfig
from .outputs import MmzooOutput


class MmzooPreTrainedModel(PreTrainedModel):
    config_class = MmzooConfig
    config: MmzooConfig
    base_model_prefix = "mmzoo"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = False

    def _init_weights(self, module: nn.Module) -> None:
        """mmzoo-owned modules only: towers are PreTrainedModels and keep their own initialisation."""
        super()._init_weights(module)
        if hasattr(module, "_reset_mmzoo_parameters"):
            module._reset_mmzoo_parameters()


def model_dims(config: MmzooConfig, text_width: int, image_width: int) -> ModelDims:
    spec = config.model_spec()
    tokens = config.tokens or {}
    return ModelDims(
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
        text_spec, image_spec = spec.encoder("text"), spec.encoder("image")
        self.text_tower = Tower(
            AutoModel.from_config(config.text_config), "text", text_spec.pooling, text_spec.projection,
            spec.projection_dim_of("text"),
        )
        self.vision_tower = Tower(
            AutoModel.from_config(config.vision_config), "image", image_spec.pooling, image_spec.projection,
            spec.projection_dim_of("image"),
        )
        self.dims = model_dims(config, self.text_tower.width, self.vision_tower.width)
        self.fusion = FUSIONS.get(spec.fusion.type)(spec.fusion, self.dims, config)
        self.objectives = nn.ModuleDict(
            {o.type: OBJECTIVES.get(o.type)(o, self.dims, self.fusion) for o in spec.objectives}
        )
        self._weights = {o.type: o.weight for o in spec.objectives}
        self.post_init()
        self._freeze(spec)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        # transformers re-creates parameters with requires_grad=True while loading: re-apply the spec's freezing
        model = super().from_pretrained(*args, **kwargs)
        model._freeze(model.config.model_spec())
        return model

    def save_pretrained(self, save_directory, *args, **kwargs):
        super().save_pretrained(save_directory, *args, **kwargs)
        from .heads import save_captioning_extras  # heads import this module

        if kwargs.get("is_main_process", True):
            save_captioning_extras(self, save_directory)

    # -- construction helpers -------------------------------------------------------------------------------
    def _freeze(self, spec) -> None:
        for i, enc in enumerate(spec.encoders):
            tower = self.text_tower if enc.modality == "text" else self.vision_tower
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

    # -- encoders ---------------------------------------------------------------------------------------------
    def encode_text(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                    token_type_ids: Tensor | None = None) -> TowerOutput:
        return self.text_tower(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)

    def encode_image(self, pixel_values: Tensor) -> TowerOutput:
        return self.vision_tower(pixel_values=pixel_values)

    def get_text_features(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                          token_type_ids: Tensor | None = None, **kwargs) -> Tensor:
        """Projected (unnormalised) text embeddings, (n_texts, projection_dim), as CLIP's."""
        return self.encode_text(input_ids, attention_mask, token_type_ids).embeds

    def get_image_features(self, pixel_values: Tensor, **kwargs) -> Tensor:
        """Projected (unnormalised) image embeddings, (n_images, projection_dim), as CLIP's."""
        return self.encode_image(pixel_values).embeds

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
        return_dict: bool | None = None,
        **kwargs,
    ) -> MmzooOutput:
        r"""
        input_ids (`(n_texts, seq_len)`), attention_mask, token_type_ids: tokenized texts.
        pixel_values (`(n_images, 3, H, W)`): processed images.
        return_loss (`bool`): compute the objectives; text i must pair with image i.
        Extra keyword inputs (e.g. `special_tokens_mask`) are passed to the objectives.
        """
        text = self.encode_text(input_ids, attention_mask, token_type_ids) if input_ids is not None else None
        image = self.encode_image(pixel_values) if pixel_values is not None else None
        out = MmzooOutput(
            text_embeds=text.normalized if text is not None else None,
            image_embeds=image.normalized if image is not None else None,
            text_model_output=text.raw if text is not None else None,
            vision_model_output=image.raw if image is not None else None,
        )
        if text is None or image is None:
            return out
        out.logits_per_image = self.pair_logits(image.normalized, text.normalized)
        out.logits_per_text = out.logits_per_image.t()
        paired = text.tokens.shape[0] == image.tokens.shape[0]
        if not paired:
            if return_loss:
                raise ValueError(
                    f"return_loss=True needs paired inputs (text i with image i); got {text.tokens.shape[0]} "
                    f"texts and {image.tokens.shape[0]} images"
                )
            return out
        inputs = {"input_ids": input_ids, "attention_mask": text.mask, "pixel_values": pixel_values,
                  "token_type_ids": token_type_ids, **kwargs}
        ctx = ObjectiveContext(model=self, text=text, image=image, inputs=inputs)
        if return_loss:
            terms, loss, scalars = {}, 0.0, {}
            for tag, objective in self.objectives.items():
                result = objective(ctx)
                terms[tag] = result.loss
                scalars.update(objective_scalars(tag, result.extras))
                loss = loss + self._weights[tag] * result.loss
                if result.logits_per_image is not None and tag in ("contrastive", "sigmoid"):
                    out.logits_per_image, out.logits_per_text = result.logits_per_image, result.logits_per_text
            out.loss, out.loss_terms, out.objective_metrics = loss, terms, scalars
        if self.fusion.pair_dim or self.fusion.text_token_dim:
            out.fused_embeds, out.fused_text_states = ctx.fused.pair_embeds, ctx.fused.text_tokens
        return out


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
