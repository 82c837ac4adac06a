"""Usage snippets of a model card: one per head the saved model supports, for both exports.

Each snippet is a complete Python script: it imports what it needs, loads the model from the Hub by repo id,
draws its own example image and prints a result. ``remote_code=True`` gives the variant for repos pushed
with mmzoo's modeling code (no ``import mmzoo``, ``trust_remote_code=True`` on every load). The test suite
runs every snippet of every generated card as pasted, against the loopback Hub.

Heads are a registry (:data:`HEADS`): a head says whether a model supports it, its Hub ``pipeline_tag`` and
its snippet. :func:`pipeline_tag` is the tag of the first supported head in registry order.
"""

from __future__ import annotations

import json

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..specs import ModelSpec

EXAMPLE_LABELS = ("a red circle", "a blue square")
EXAMPLE_QUESTION = "what color is the circle?"
_LABELS, _QUESTION = json.dumps(list(EXAMPLE_LABELS)), json.dumps(EXAMPLE_QUESTION)


@dataclass(frozen=True)
class Usage:
    """One usage section of a card: a heading, a sentence and a runnable script."""

    head: str
    title: str
    intro: str
    code: str


@dataclass(frozen=True)
class Head:
    """A way to use a saved model: ``supports(spec, config)``, its Hub ``pipeline_tag`` and its snippet."""

    name: str
    pipeline_tag: str
    supports: Callable[[ModelSpec, dict[str, Any]], bool]
    snippet: Callable[[str, bool, ModelSpec], Usage]


HEADS: dict[str, Head] = {}


def register_head(head: Head) -> Head:
    if head.name in HEADS:
        raise ValueError(f"card head {head.name!r} is registered twice")
    HEADS[head.name] = head
    return head


def supported_heads(spec: ModelSpec, config: dict[str, Any]) -> list[Head]:
    """Heads of ``spec`` (with ``config.json``'s dict) in registry order; the last one (features) always applies."""
    return [h for h in HEADS.values() if h.supports(spec, config)]


def pipeline_tag(spec: ModelSpec, config: dict[str, Any]) -> str:
    """The Hub ``pipeline_tag`` of the model's main head (VQA, captioning, zero-shot, else feature extraction)."""
    return supported_heads(spec, config)[0].pipeline_tag


def usages(spec: ModelSpec, config: dict[str, Any], repo_id: str, remote_code: bool = False) -> list[Usage]:
    """Every supported head's snippet (the features snippet only when no other head applies)."""
    heads = supported_heads(spec, config)
    if heads[0].name == "vqa":  # fine-tuned for VQA: the pretraining heads (ITM...) were not trained with it
        heads = heads[:1]
    elif len(heads) > 1:
        heads = [h for h in heads if h.name != "features"]
    return [h.snippet(repo_id, remote_code, spec) for h in heads]


# -- snippet pieces ----------------------------------------------------------------------------------------------
def _image_code(spec: ModelSpec) -> str:
    return (
        'image = Image.new("RGB", (224, 224), "white")  # an example picture: a red circle (use your own images)\n'
        'ImageDraw.Draw(image).ellipse((56, 56, 168, 168), fill="red")\n'
    )


def _header(remote_code: bool, names: str, torch: bool = True) -> str:
    lines = [] if remote_code else ["import mmzoo  # noqa: F401  (registers mmzoo's architectures with transformers)"]
    lines += ["import torch"] if torch else []
    lines += ["from PIL import Image, ImageDraw", f"from transformers import {names}"]
    return "\n".join(lines) + "\n\n"


def _load(remote_code: bool, cls: str, repo_id: str, var: str) -> str:
    trust = ", trust_remote_code=True" if remote_code else ""
    return f'{var} = {cls}.from_pretrained("{repo_id}"{trust})\n'


def _features(repo_id: str, remote_code: bool, spec: ModelSpec) -> Usage:
    code = (
        _header(remote_code, "AutoModel, AutoProcessor")
        + _load(remote_code, "AutoModel", repo_id, "model") + _load(remote_code, "AutoProcessor", repo_id, "processor")
        + "\n" + _image_code(spec)
        + f"inputs = processor(text={_LABELS}, images=[image], return_tensors=\"pt\")\n"
        "with torch.no_grad():\n"
        "    image_out = model.get_image_features(pixel_values=inputs[\"pixel_values\"])\n"
        "    text_out = model.get_text_features(input_ids=inputs[\"input_ids\"], "
        "attention_mask=inputs[\"attention_mask\"])\n"
        "# the projected embeddings (a ModelOutput keeps them in pooler_output)\n"
        "image_embeds = getattr(image_out, \"pooler_output\", image_out)\n"
        "text_embeds = getattr(text_out, \"pooler_output\", text_out)\n"
        "similarity = torch.nn.functional.normalize(image_embeds, dim=-1) @ "
        "torch.nn.functional.normalize(text_embeds, dim=-1).T\n"
        "print(image_embeds.shape, text_embeds.shape, similarity)\n"
    )
    return Usage("features", "Image and text embeddings",
                 f"Projected embeddings ({spec.projection_dim} dims) of images and texts, and their cosine similarity.",
                 code)


def _zero_shot(repo_id: str, remote_code: bool, spec: ModelSpec) -> Usage:
    sigmoid = spec.pair_scores == "sigmoid"
    trust = ", trust_remote_code=True" if remote_code else ""
    code = (
        _header(remote_code, "AutoModel, AutoProcessor, pipeline")
        + _image_code(spec) + "\n"
        f'classifier = pipeline("zero-shot-image-classification", model="{repo_id}"{trust})\n'
        f"print(classifier(image, candidate_labels={_LABELS}))\n\n"
        "# the same scores from the model: one logit per (image, text) pair\n"
        + _load(remote_code, "AutoModel", repo_id, "model") + _load(remote_code, "AutoProcessor", repo_id, "processor")
        + f"inputs = processor(text={_LABELS}, images=[image], return_tensors=\"pt\")\n"
        "with torch.no_grad():\n"
        "    logits = model(**inputs).logits_per_image  # (images, texts)\n"
        + ("print(logits.sigmoid())  # sigmoid loss: an independent match probability per pair\n" if sigmoid
           else "print(logits.softmax(dim=-1))  # contrastive loss: a distribution over the texts\n")
    )
    kind = "sigmoid (SigLIP-style)" if sigmoid else "contrastive (CLIP-style)"
    return Usage("zero_shot", "Zero-shot image classification",
                 f"Scores an image against free-text labels with the {kind} similarity the model was trained with.",
                 code)


def _itm(repo_id: str, remote_code: bool, spec: ModelSpec) -> Usage:
    if _has_score_pairs():  # P(match) of every (image, text) pair: (images, texts)
        pairs = ("inputs = processor(text=texts, images=[image], return_tensors=\"pt\")\n"
                 "with torch.no_grad():\n"
                 "    match = model.score_pairs(**inputs)[0]  # P(match) of this image with each text\n")
    else:  # older mmzoo: the ITM head on the fused embedding of pair i (image i, text i)
        pairs = ("inputs = processor(text=texts, images=[image] * len(texts), return_tensors=\"pt\")  # pair i: "
                 "image i, text i\n"
                 "with torch.no_grad():\n"
                 "    match = model.objectives[\"itm\"].head(model(**inputs).fused_embeds).softmax(dim=-1)[:, 1]\n")
    code = (
        _header(remote_code, "AutoModel, AutoProcessor")
        + _load(remote_code, "AutoModel", repo_id, "model") + _load(remote_code, "AutoProcessor", repo_id, "processor")
        + "\n" + _image_code(spec)
        + f"texts = {_LABELS}\n" + pairs
        + "for text, p in zip(texts, match.tolist()):\n"
        "    print(f\"P(match | image, {text!r}) = {p:.3f}\")\n"
    )
    return Usage("itm", "Image-text matching",
                 "Scores (image, text) pairs with the fusion encoder and the image-text matching head: P(match).", code)


def _has_score_pairs() -> bool:
    """Whether the installed mmzoo models have ``score_pairs`` (what the snippet, and a remote-code bundle made
    from this install, can call)."""
    from ..modeling import MmzooModel

    return hasattr(MmzooModel, "score_pairs")


def _vqa(repo_id: str, remote_code: bool, spec: ModelSpec) -> Usage:
    code = (
        _header(remote_code, "AutoModelForVisualQuestionAnswering, AutoProcessor")
        + _load(remote_code, "AutoModelForVisualQuestionAnswering", repo_id, "model")
        + _load(remote_code, "AutoProcessor", repo_id, "processor")
        + "\n" + _image_code(spec)
        + f"inputs = processor(text=[{_QUESTION}], images=[image], return_tensors=\"pt\")\n"
        "with torch.no_grad():\n"
        "    logits = model(**inputs).logits  # one logit per answer of model.config.id2label\n"
        "top = logits.sigmoid()[0].topk(3)\n"
        "print([(model.config.id2label[i], round(p, 3)) for p, i in zip(top.values.tolist(), top.indices.tolist())])\n"
    )
    return Usage("vqa", "Visual question answering",
                 "Classifies the answer to a question about an image over the answers seen in training.", code)


def _captioning(repo_id: str, remote_code: bool, spec: ModelSpec) -> Usage:
    code = (
        _header(remote_code, "AutoModelForImageTextToText, AutoProcessor", torch=False)
        + _load(remote_code, "AutoModelForImageTextToText", repo_id, "model")
        + _load(remote_code, "AutoProcessor", repo_id, "processor")
        + "\n" + _image_code(spec)
        + "inputs = processor(images=[image], return_tensors=\"pt\")\n"
        "ids = model.generate(pixel_values=inputs[\"pixel_values\"], max_new_tokens=20)\n"
        "print(processor.batch_decode(ids, skip_special_tokens=True))\n"
    )
    return Usage("captioning", "Image captioning",
                 "Generates a caption with the captioning decoder (greedy decoding through `generate()`).", code)


def _has_image(spec: ModelSpec) -> bool:
    return any(e.modality == "image" for e in spec.encoders)


def _has_audio(spec: ModelSpec) -> bool:
    return any(e.modality == "audio" for e in spec.encoders)


EXAMPLE_SOUNDS = ("a high steady tone", "a low steady tone")
_SOUNDS = json.dumps(list(EXAMPLE_SOUNDS))


def _audio_code() -> str:
    return ("import numpy as np\n\n"
            "rate = processor.feature_extractor.sampling_rate\n"
            "t = np.arange(rate) / rate  # one second\n"
            "audio = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)  # a 1 kHz tone (use your own clips)\n")


def _zero_shot_audio(repo_id: str, remote_code: bool, spec: ModelSpec) -> Usage:
    trust = ", trust_remote_code=True" if remote_code else ""
    code = (
        _audio_header(remote_code, "AutoModel, AutoProcessor, pipeline")
        + _load(remote_code, "AutoModel", repo_id, "model") + _load(remote_code, "AutoProcessor", repo_id, "processor")
        + _audio_code() + "\n"
        'classifier = pipeline("zero-shot-audio-classification", model=model, tokenizer=processor.tokenizer,\n'
        "                      feature_extractor=processor.feature_extractor)\n"
        f'print(classifier(audio, candidate_labels={_SOUNDS}, hypothesis_template="{{}}"))\n\n'
        "# the same scores from the model: one logit per (audio, text) pair\n"
        f"inputs = processor(text={_SOUNDS}, audio=[audio], sampling_rate=rate)\n"
        "with torch.no_grad():\n"
        "    print(model(**inputs).logits_per_audio.softmax(dim=-1))  # (clips, texts)\n"
    )
    return Usage("zero_shot_audio", "Zero-shot audio classification",
                 "Scores a sound against free-text labels with the audio-text similarity the model was trained with.",
                 code)


def _audio_features(repo_id: str, remote_code: bool, spec: ModelSpec) -> Usage:
    code = (
        _audio_header(remote_code, "AutoModel, AutoProcessor")
        + _load(remote_code, "AutoModel", repo_id, "model") + _load(remote_code, "AutoProcessor", repo_id, "processor")
        + _audio_code() + "\n"
        "audio_inputs = processor(audio=[audio], sampling_rate=rate)\n"
        f"text_inputs = processor(text={_SOUNDS})\n"
        "with torch.no_grad():\n"
        "    audio_embeds = model.get_audio_features(**audio_inputs).pooler_output  # projected, unnormalised\n"
        "    text_embeds = model.get_text_features(**text_inputs).pooler_output\n"
        "similarity = torch.nn.functional.normalize(audio_embeds, dim=-1) @ "
        "torch.nn.functional.normalize(text_embeds, dim=-1).T\n"
        "print(audio_embeds.shape, text_embeds.shape, similarity)\n"
    )
    return Usage("audio_features", "Audio and text embeddings",
                 f"Projected embeddings ({spec.projection_dim} dims) of sounds and texts, and their cosine similarity.",
                 code)


def _audio_header(remote_code: bool, names: str) -> str:
    lines = [] if remote_code else ["import mmzoo  # noqa: F401  (registers mmzoo's architectures with transformers)"]
    return "\n".join([*lines, "import torch", f"from transformers import {names}"]) + "\n\n"


# which heads a model supports follows the capabilities its components declare (mmzoo.specs), never tag names
register_head(Head("vqa", "visual-question-answering",
                   lambda spec, config: "pair_embedding" in spec.fusion.provides and bool(config.get("answer_vocab")),
                   _vqa))
register_head(Head("captioning", "image-to-text", lambda spec, config: spec.generates_text, _captioning))
# the Hub has no zero-shot audio task (transformers has the pipeline): audio-text models are feature extractors there
register_head(Head("zero_shot_audio", "feature-extraction",
                   lambda spec, config: _has_audio(spec) and spec.scores_pairs, _zero_shot_audio))
register_head(Head("audio_features", "feature-extraction", lambda spec, config: _has_audio(spec), _audio_features))
register_head(Head("zero_shot", "zero-shot-image-classification",
                   lambda spec, config: _has_image(spec) and spec.scores_pairs, _zero_shot))
register_head(Head("itm", "feature-extraction",
                   lambda spec, config: spec.matches_pairs and "pair_embedding" in spec.fusion.provides,
                   _itm))
register_head(Head("features", "feature-extraction", lambda spec, config: _has_image(spec), _features))
