"""Task heads: the same MmzooModel weights (prefix ``mmzoo``) with a task-shaped forward.

Any mmzoo checkpoint loads into each head (missing head weights are initialised, unused ones ignored):
``MmzooForConditionalGeneration`` (captioning and generative VQA, via ``generate()``) and
``MmzooForVisualQuestionAnswering`` (answer classification). Both are registered with transformers' Auto
factories on ``import mmzoo`` (AutoModelForImageTextToText, AutoModelForVisualQuestionAnswering).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import (
    AutoModelForImageTextToText,
    AutoModelForVisualQuestionAnswering,
    GenerationConfig,
    GenerationMixin,
)
from transformers.modeling_outputs import CausalLMOutput
from transformers.utils import ModelOutput

from ..errors import SpecError
from ..fusion.layers import Attention, Linear, MlpHead, pool_states, project
from ..objectives.captioning import caption_loss
from .auto import EXTRA_MODEL_CLASSES
from .configuration_mmzoo import MmzooConfig
from .modeling_mmzoo import MmzooModel, _tower_flags, tower_projections


@dataclass
class MmzooCaptionOutput(CausalLMOutput):
    r"""
    loss (`()`): next-token cross-entropy of `labels` (when given).
    logits (`(batch, seq_len, vocab_size)`): position t scores token t + 1.
    hidden_states (`tuple`, with `output_hidden_states=True`): the decoder's embeddings and per-layer states.
    image_hidden_states (`(batch, image_tokens, image_width)`): the vision tower's tokens the decoder attended to;
        `generate()` feeds them back so the image is encoded once per call.
    """

    image_hidden_states: torch.FloatTensor | None = None


@dataclass
class MmzooVqaOutput(ModelOutput):
    r"""
    loss (`()`): VQA binary cross-entropy against soft answer scores (when `labels` are given).
    logits (`(batch, num_answers)`): one logit per entry of `config.answer_vocab`.
    fused_embeds (`(batch, pair_dim)`): the fusion's pair embedding the head read.
    hidden_states (`tuple`, with `output_hidden_states=True`): the text tower's hidden states, then the fusion's
        image-conditioned text states.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    fused_embeds: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None


class MmzooForConditionalGeneration(MmzooModel, GenerationMixin):
    """Image-conditioned text generation with the spec's ``captioning`` objective's decoder.

    Captioning: ``model.generate(pixel_values=..., max_new_tokens=20)`` starts every sequence from the tokenizer's
    CLS (or BOS) id and stops at SEP (or EOS); decode with ``processor.batch_decode(ids, skip_special_tokens=True)``.

    Generative VQA: train the captioning objective on texts "question answer", then pass the question as the
    prompt, without its closing SEP: ``ids = tokenizer(question)["input_ids"][:-1]`` (left-pad a batch and pass
    ``attention_mask``); ``generate(input_ids=ids, pixel_values=..., max_new_tokens=5)`` continues with the answer.

    There is no KV cache (``use_cache=False``): each step re-runs the decoder over the prefix, while the image is
    encoded once per ``generate()`` call. Prompt plus new tokens must fit ``captioning.max_length``.
    """

    def __init__(self, config: MmzooConfig) -> None:
        spec = config.model_spec()
        if spec.objective("captioning") is None:
            raise SpecError(
                f"MmzooForConditionalGeneration needs a captioning decoder, but model {spec.name!r} has objectives "
                f"{[o.type for o in spec.objectives]}; add `- type: captioning` to the spec's objectives and train it"
            )
        super().__init__(config)
        self.generation_config = caption_generation_config(config)
        self._label_smoothing = spec.objective("captioning").label_smoothing

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        # a folder saved without generation_config.json (or one lacking the ids) gets the captioning start/end/pad
        # ids from config.tokens, so generate(pixel_values=...) starts at CLS/BOS and stops at SEP/EOS
        loaded = super().from_pretrained(*args, **kwargs)
        model = loaded[0] if isinstance(loaded, tuple) else loaded  # output_loading_info=True gives (model, info)
        fill_generation_ids(model.generation_config, caption_generation_config(model.config))
        return loaded

    @property
    def caption_decoder(self) -> nn.Module:
        return self.objectives["captioning"].decoder

    def forward(
        self,
        input_ids: Tensor | None = None,
        pixel_values: Tensor | None = None,
        attention_mask: Tensor | None = None,
        labels: Tensor | None = None,
        image_hidden_states: Tensor | None = None,
        shift_labels: Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> MmzooCaptionOutput | tuple:
        r"""
        input_ids (`(batch, seq_len)`): caption (or prompt) ids starting with CLS/BOS.
        pixel_values (`(batch, 3, H, W)`): images; not needed when `image_hidden_states` are given.
        attention_mask (`(batch, seq_len)`): 0 for padding (right-padded captions or left-padded prompts).
        labels (`(batch, seq_len)`): usually `input_ids`; shifted inside, -100 and padded positions are ignored.
        shift_labels (`(batch, seq_len)`): targets already aligned with the logits (position t scores
            `shift_labels[:, t]`), used as given instead of shifting `labels`; -100 is ignored.
        image_hidden_states (`(batch, image_tokens, image_width)`): pre-computed vision tower tokens.
        output_hidden_states (`bool`): return the decoder's embeddings and per-layer states as `hidden_states`.
        Other keyword inputs (token_type_ids, use_cache, ...) are accepted and ignored.
        """
        if input_ids is None:
            raise ValueError("MmzooForConditionalGeneration.forward needs input_ids (start with the CLS/BOS id)")
        if image_hidden_states is None:
            if pixel_values is None:
                raise ValueError("MmzooForConditionalGeneration.forward needs pixel_values or image_hidden_states")
            image_hidden_states = self.encode_image(pixel_values).tokens
        logits, states = self.caption_decoder.decode(input_ids, attention_mask, image_hidden_states)
        loss = None
        if shift_labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), shift_labels.flatten(), ignore_index=-100,
                                   label_smoothing=self._label_smoothing)
        elif labels is not None:
            if attention_mask is not None:
                labels = labels.masked_fill(attention_mask == 0, -100)
            loss = caption_loss(logits, labels, self._label_smoothing)
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        out = MmzooCaptionOutput(loss=loss, logits=logits, image_hidden_states=image_hidden_states,
                                 hidden_states=select_hidden_states(states, output_hidden_states))
        return out if self._return_dict(return_dict) else out.to_tuple()

    # -- generation hooks (transformers GenerationMixin) -----------------------------------------------------
    def prepare_inputs_for_generation(self, input_ids: Tensor, pixel_values: Tensor | None = None,
                                      attention_mask: Tensor | None = None,
                                      image_hidden_states: Tensor | None = None, **kwargs: Any) -> dict[str, Any]:
        """No cache: every step sees the whole prefix, and the image (pixels once, then its encoded tokens)."""
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "pixel_values": pixel_values if image_hidden_states is None else None,
            "image_hidden_states": image_hidden_states,
        }

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs, is_encoder_decoder=False,
                                            num_new_tokens=1):
        model_kwargs = super()._update_model_kwargs_for_generation(
            outputs, model_kwargs, is_encoder_decoder=is_encoder_decoder, num_new_tokens=num_new_tokens
        )
        model_kwargs["image_hidden_states"] = outputs.image_hidden_states  # encode the image once per generate()
        return model_kwargs


def select_hidden_states(states: tuple[Tensor, ...] | None, request) -> tuple[Tensor | None, ...] | None:
    """``states`` as ``output_hidden_states`` asks: all (True), none (False/None), or the listed indices (others
    None, negative indices count from the end), as transformers' output capturing does."""
    if not request or states is None:
        return None
    if request is True:
        return states
    keep = {i % len(states) for i in request}
    return tuple(state if i in keep else None for i, state in enumerate(states))


def caption_generation_config(config: MmzooConfig) -> GenerationConfig:
    """Greedy decoding from CLS/BOS to SEP/EOS without KV cache (prompt + new tokens <= ``captioning.max_length``)."""
    tokens = config.tokens or {}
    start, end = tokens.get("cls_token_id"), tokens.get("sep_token_id")
    if start is None or end is None:
        raise SpecError(
            f"config.tokens: captioning needs start and end ids (cls/bos {start}, sep/eos {end}); build the model with "
            "a tokenizer that has CLS/SEP or BOS/EOS tokens"
        )
    return GenerationConfig(
        bos_token_id=start, decoder_start_token_id=start, eos_token_id=end,
        pad_token_id=tokens.get("pad_token_id", 0), use_cache=False,
    )


def fill_generation_ids(target: GenerationConfig, source: GenerationConfig) -> None:
    """Copy bos/eos/pad/decoder_start ids (and use_cache False) from ``source`` where ``target`` has none."""
    for key in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id"):
        if getattr(target, key, None) is None:
            setattr(target, key, getattr(source, key))
    target.use_cache = False


def save_captioning_extras(model, save_directory) -> None:
    """For a model with a ``captioning`` objective: write ``generation_config.json`` (bos/eos/pad from the tokenizer
    ids) and name ``MmzooForConditionalGeneration`` in ``config.json``'s ``architectures``, so the folder loads into
    a class that generates (``AutoModelForImageTextToText``) and its captions stop at the end token."""
    import json
    from pathlib import Path

    if model.config.model_spec().objective("captioning") is None:
        return
    folder = Path(save_directory)
    generation = caption_generation_config(model.config)
    if isinstance(model, MmzooForConditionalGeneration):
        fill_generation_ids(model.generation_config, generation)
        generation = model.generation_config
    generation.save_pretrained(folder)
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text())
    config["architectures"] = [MmzooForConditionalGeneration.__name__]
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


class QuestionReadout(nn.Module):
    """What the question asks for, read from the fused tokens: the question (mean of the fused text tokens) attends
    over every fused token, text and image; output ``[attended; question]`` (B, 2 text_width).

    Why: the pair embedding is one max over the fused tokens, the same whatever the question asks, so "what colour
    is the shape at the top left" and "what shape is at the top left" read the same vector. With the question as
    the query the head picks the patch (or word) the question is about. Fusions without fused text tokens give
    an empty readout (width 0).
    """

    def __init__(self, fusion, spec) -> None:
        super().__init__()
        text_width = fusion.text_token_dim
        self.width = 0 if text_width is None else 2 * text_width
        if not self.width:
            return
        image_width = fusion.image_token_dim  # None: the fusion gives no image tokens, the question reads text only
        heads = getattr(spec, "num_heads", 1)
        heads = heads if text_width % heads == 0 else 1
        self.image_in = project(image_width, text_width) if image_width else None
        self.attention = Attention(text_width, heads)
        self.norm = nn.LayerNorm(text_width)

    def forward(self, fused) -> Tensor:
        text, mask = fused.text_tokens, fused.text_mask
        if not self.width:
            return fused.pair_embeds[:, :0]
        question = pool_states("mean", text, mask)
        tokens, keys = text, mask
        if self.image_in is not None and fused.image_tokens is not None:
            image = fused.image_tokens
            tokens = torch.cat([text, self.image_in(image)], dim=1)
            keys = torch.cat([mask, mask.new_ones(image.shape[:2])], dim=1)
        attended = self.attention(self.norm(question)[:, None], self.norm(tokens), key_mask=keys)[:, 0]
        return torch.cat([attended, question], dim=-1)


class MmzooForVisualQuestionAnswering(MmzooModel):
    """Answer classification over ``config.answer_vocab`` from the fusion's pair embedding (ViLT/VisualBERT style).

    Head: ``[pair embedding; QuestionReadout(fused tokens)]`` -> Linear(2 width) -> GELU -> LayerNorm ->
    Linear(num_answers), the readout being the question attending over the fused text and image tokens (measured
    on `shapes`, single_stream, 1 seed: 0.763 vs 0.647 held-out accuracy at 500 steps with the pair embedding
    alone). ``labels`` are soft VQA scores
    (batch, num_answers) in [0, 1] (or answer indices (batch,)); loss = BCE-with-logits averaged over entries and
    multiplied by num_answers, as ViLT does. ``config.id2label`` is set from the answer vocabulary.
    """

    head_prefixes = ("vqa_head.", "vqa_readout.")  # weights this class adds on top of MmzooModel's

    def __init__(self, config: MmzooConfig) -> None:
        spec = config.model_spec()
        if "pair_embedding" not in spec.fusion.provides:
            raise SpecError(
                f"fusion.type: MmzooForVisualQuestionAnswering reads the fused pair embedding, which fusion "
                f"{spec.fusion.type!r} does not provide; use a fusion that provides pair_embedding "
                "(single_stream, co_attention, cross_attention, gated)"
            )
        if not config.answer_vocab:
            raise SpecError(
                "config.answer_vocab: MmzooForVisualQuestionAnswering needs the list of answers to classify over; "
                "set config.answer_vocab (e.g. the most frequent answers of the training data) before building"
            )
        config.id2label = dict(enumerate(config.answer_vocab))
        config.label2id = {answer: i for i, answer in enumerate(config.answer_vocab)}
        super().__init__(config)
        width, answers = self.fusion.pair_dim, len(config.answer_vocab)
        self.vqa_readout = QuestionReadout(self.fusion, spec.fusion)
        width += self.vqa_readout.width
        self.vqa_head = MlpHead(width, 2 * width, answers, norm=True)
        self.post_init()  # initialises the new head only: modules initialised above are skipped

    def unreached_modules(self, spec) -> list[nn.Module]:
        """The VQA loss reads the fusion's pair embedding and fused tokens only: the pretraining objectives (their heads and
        temperature) and, unless the fusion reads them, the towers' projections get no gradient here."""
        projections = [] if spec.fusion.trains_projections else tower_projections(self)
        return [*self.objectives.values(), *projections]

    def forward(
        self,
        input_ids: Tensor | None = None,
        pixel_values: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> MmzooVqaOutput | tuple:
        r"""
        input_ids / attention_mask / token_type_ids (`(batch, seq_len)`): tokenized questions.
        pixel_values (`(batch, 3, H, W)`): images, image i with question i.
        labels (`(batch, num_answers)` float scores, or `(batch,)` answer indices): targets.
        output_hidden_states (`bool`): `hidden_states` = the text tower's hidden states, then the fusion's
            image-conditioned text states (when the fusion makes them).
        """
        if input_ids is None or pixel_values is None:
            raise ValueError("MmzooForVisualQuestionAnswering.forward needs input_ids and pixel_values")
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        flags = _tower_flags(True if output_hidden_states else None, output_attentions)
        text = self.encode_text(input_ids, attention_mask, token_type_ids, **flags)
        image = self.encode_image(pixel_values, **flags)
        inputs = {"input_ids": input_ids, "attention_mask": text.mask, "pixel_values": pixel_values,
                  "token_type_ids": token_type_ids, **kwargs}
        fused = self.fusion(text, image, inputs)
        pair = fused.pair_embeds
        logits = self.vqa_head(torch.cat([pair, self.vqa_readout(fused)], dim=-1))
        loss = None
        if labels is not None:
            if labels.ndim == 1:
                labels = F.one_hot(labels.long(), logits.shape[-1])
            if labels.shape != logits.shape:
                raise ValueError(
                    f"VQA labels {tuple(labels.shape)} do not match logits {tuple(logits.shape)}: give soft scores "
                    f"(batch, {logits.shape[-1]}) over config.answer_vocab or answer indices (batch,)"
                )
            loss = F.binary_cross_entropy_with_logits(logits.float(), labels.float()) * labels.shape[1]
        hidden_states = None
        if output_hidden_states:
            hidden_states = tuple(getattr(text.raw, "hidden_states", None) or (text.tokens,))
            hidden_states += (fused.text_tokens,) if fused.text_tokens is not None else ()
        out = MmzooVqaOutput(loss=loss, logits=logits, fused_embeds=pair,
                             hidden_states=select_hidden_states(hidden_states, output_hidden_states))
        return out if self._return_dict(return_dict) else out.to_tuple()

    def decode_answers(self, logits: Tensor) -> list[str]:
        """The best answer string per row of ``logits``."""
        return [self.config.answer_vocab[i] for i in logits.argmax(-1).tolist()]


# picked up by register_auto_classes() on `import mmzoo` (this module is imported by mmzoo.modeling first)
for _pair in ((AutoModelForImageTextToText, MmzooForConditionalGeneration),
              (AutoModelForVisualQuestionAnswering, MmzooForVisualQuestionAnswering)):
    if _pair not in EXTRA_MODEL_CLASSES:
        EXTRA_MODEL_CLASSES.append(_pair)
