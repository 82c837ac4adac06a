"""``retrieval``: image->text and text->image recall@K and mean/median rank over all images and all captions.

Every caption of every image is a query (text->image) and a gallery item (image->text; an image is retrieved at
K when any of its captions is in the top K). Embeddings come from ``get_image_features`` / ``get_text_features``
in batches; ranks from :func:`mmzoo.eval.retrieval.retrieval_ranks` in chunks of ``chunk_size`` queries, so the
full similarity matrix is never built (exact ranks; cosine similarity).

``rerank_k: k`` adds the ALBEF/BLIP protocol: rank by the contrastive similarity, then re-rank each query's top k
by the ITM head (``model.score_pairs``; needs an ``itm`` objective); items beyond the top k keep their rank. The
re-ranked metrics are reported as ``itm_rerank_<metric>`` next to the contrastive-only ones, with k in the protocol.
``rerank_score`` says what orders the top k: ``itm+contrastive`` (default; BLIP's evaluation adds the contrastive
similarity to the ITM score) = the ITM match log-odds plus the contrastive logit (the model's scaled similarity),
i.e. both experts' evidence on one log scale; ``itm`` = the ITM match probability alone (ALBEF's paper protocol).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, field_validator

from ..embed import can_shard, embed_images, embed_texts, map_sharded, to_model
from ..retrieval import RetrievalRanks, retrieval_ranks
from ._data import as_captions, column_names, indexed_rows, iter_batches, require_columns
from .base import EvaluationTask, TaskParams, TaskResult, load_metric, register_task
from .errors import EvaluationError


class RetrievalParams(TaskParams):
    chunk_size: int = Field(1024, ge=1, description="queries scored per step (memory: chunk_size x gallery)")
    recall_at: tuple[int, ...] = Field((1, 5, 10), min_length=1, description="the K of recall@K")
    rerank_k: int = Field(0, ge=0, description="re-rank each query's top k by the ITM head (0: contrastive only)")
    rerank_score: Literal["itm+contrastive", "itm"] = Field(
        "itm+contrastive", description="what orders the top k: ITM log-odds + contrastive logit, or ITM alone"
    )
    ties: Literal["pessimistic", "optimistic"] = Field(
        "pessimistic", description="incorrect items scoring equal to the correct one rank above it (pessimistic)"
    )
    correct: Literal["own", "same_caption"] = Field(
        "own", description="own: a caption's correct item is its own row's; same_caption: every item having that "
        "caption string is correct (class-level captions, e.g. the built-in tones)"
    )

    @field_validator("recall_at")
    @classmethod
    def _positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if min(value) < 1:
            raise ValueError(f"recall_at values must be >= 1, got {list(value)}")
        return tuple(sorted(set(value)))


@register_task("retrieval")
class RetrievalTask(EvaluationTask):
    Params = RetrievalParams
    columns = ("image", "captions")
    RUNTIME = frozenset({"batch_size", "chunk_size"})

    def check_data(self, dataset) -> None:
        """``image`` + ``captions``, or ``audio`` + ``captions`` for audio data."""
        names = column_names(dataset) or []
        require_columns(dataset, ("audio", "captions") if "audio" in names and "image" not in names else self.columns,
                        self.name)

    def run(self, model, processor, dataset, params: RetrievalParams) -> TaskResult:
        if model_modality(model) == "audio":
            return self.run_audio(model, processor, dataset, params)
        if params.correct == "same_caption":
            raise EvaluationError("retrieval: correct: same_caption is implemented for audio models only; use "
                                  "correct: own for image models")
        for method in ("get_image_features", "get_text_features"):
            if not callable(getattr(model, method, None)):
                raise EvaluationError(
                    f"retrieval: {type(model).__name__} has no {method}(); retrieval needs a model that embeds "
                    "images and texts into one space (an mmzoo model, CLIP...)"
                )
        if params.rerank_k and not _has_itm(model):
            raise EvaluationError(
                f"retrieval: rerank_k {params.rerank_k} re-ranks by the ITM head, but {type(model).__name__} has no "
                "`itm` objective / score_pairs(); train one (e.g. mm-albef-tiny) or set rerank_k: 0"
            )
        images, texts, owners = self.embed(model, processor, dataset, params)
        owner = torch.tensor(owners, device=images.device)
        ranks = retrieval_ranks(images, texts, owner, chunk_size=params.chunk_size, max_k=params.rerank_k,
                                ties=params.ties)
        recall = load_metric("retrieval_recall")
        metrics = recall.compute(**ranks.metric_inputs(), recall_at=params.recall_at, ties=params.ties)
        protocol = {"similarity": "cosine", "num_images": images.shape[0], "num_texts": texts.shape[0]}
        if params.rerank_k:
            pil_images, all_texts = [], []
            for start, batch in iter_batches(dataset, self.columns, params.batch_size, params.max_samples):
                pil_images += list(batch["image"])
                all_texts += [t for j, c in enumerate(batch["captions"]) for t in as_captions(c, start + j)]
            prior = (images, texts) if params.rerank_score == "itm+contrastive" else None
            reranked = itm_rerank(model, processor, pil_images, all_texts, owner.cpu(), ranks, params.batch_size,
                                  embeddings=prior)
            extra = recall.compute(**reranked.metric_inputs(), recall_at=params.recall_at, ties=params.ties)
            metrics.update({f"itm_rerank_{key}": value for key, value in extra.items()})
            protocol["rerank"] = {"by": params.rerank_score, "k": params.rerank_k}
        return TaskResult(metrics, protocol)

    def embed(self, model, processor, dataset, params: RetrievalParams):
        """``(image_embeds, text_embeds, owners)`` of every image and caption; each rank embeds its shard and
        the results are gathered (map-style data), or every rank embeds all (streams)."""
        if not can_shard(dataset):
            image_embeds, text_embeds, owners = [], [], []
            for start, batch in iter_batches(dataset, self.columns, params.batch_size, params.max_samples):
                captions = [as_captions(c, start + j) for j, c in enumerate(batch["captions"])]
                image_embeds.append(embed_images(model, processor, batch["image"], params.batch_size))
                texts = [text for row in captions for text in row]
                text_embeds.append(embed_texts(model, processor, texts, params.batch_size))
                owners += [start + j for j, row in enumerate(captions) for _ in row]
            return torch.cat(image_embeds), torch.cat(text_embeds), owners
        data = indexed_rows(dataset, self.columns, params.max_samples)
        captions = [as_captions(c, i) for i, c in enumerate(data["captions"])]
        texts = [text for row in captions for text in row]
        owners = [i for i, row in enumerate(captions) for _ in row]
        images = map_sharded(lambda rows: embed_images(model, processor, data[rows]["image"], params.batch_size),
                             len(data), params.batch_size)
        text_embeds = map_sharded(lambda rows: embed_texts(model, processor, [texts[i] for i in rows],
                                                           params.batch_size), len(texts), params.batch_size)
        return images, text_embeds, owners

    def run_audio(self, model, processor, dataset, params: RetrievalParams) -> TaskResult:
        """text->audio and audio->text ranks (metrics named ``text_to_audio_*`` / ``audio_to_text_*``)."""
        from ..embed import embed_audio

        if params.rerank_k:
            raise EvaluationError("retrieval: rerank_k re-ranks by an ITM head, which audio models do not have; "
                                  "set rerank_k: 0")
        columns = ("audio", "captions", "sampling_rate") if "sampling_rate" in (column_names(dataset) or []) \
            else ("audio", "captions")
        require_columns(dataset, columns[:2], "retrieval")
        audio_embeds, text_embeds, owners, item_captions, texts = [], [], [], [], []
        for start, batch in iter_batches(dataset, columns, params.batch_size, params.max_samples):
            captions = [as_captions(c, start + j) for j, c in enumerate(batch["captions"])]
            rates = set(batch.get("sampling_rate") or [None])
            if len(rates) > 1:
                raise EvaluationError(f"retrieval: the evaluation audio mixes sampling rates {sorted(rates)}; "
                                      "resample it to the model's rate")
            audio_embeds.append(embed_audio(model, processor, batch["audio"], params.batch_size,
                                            sampling_rate=rates.pop()))
            flat = [text for row in captions for text in row]
            text_embeds.append(embed_texts(model, processor, flat, params.batch_size))
            owners += [start + j for j, row in enumerate(captions) for _ in row]
            item_captions += captions
            texts += flat
        items, queries = torch.cat(audio_embeds), torch.cat(text_embeds)
        if params.correct == "same_caption":  # each distinct caption string is one query and one gallery text
            from ..retrieval import retrieval_ranks_shared_captions

            first: dict[str, int] = {}
            for i, text in enumerate(texts):
                first.setdefault(text, i)
            first = list(first.values())
            texts, queries = [texts[i] for i in first], queries[torch.tensor(first, device=queries.device)]
            ranks = retrieval_ranks_shared_captions(items, queries, item_captions, texts, params.chunk_size,
                                                    ties=params.ties)
        else:
            ranks = retrieval_ranks(items, queries, torch.tensor(owners, device=items.device),
                                    chunk_size=params.chunk_size, max_k=0, ties=params.ties)
        metrics = load_metric("retrieval_recall").compute(**ranks.metric_inputs(), recall_at=params.recall_at,
                                                          ties=params.ties)
        renamed = {key.replace("image_to_text", "audio_to_text").replace("text_to_image", "text_to_audio"): value
                   for key, value in metrics.items()}
        protocol = {"modality": "audio", "similarity": "cosine", "num_audio": items.shape[0],
                    "num_texts": queries.shape[0]}
        return TaskResult(renamed, protocol)


def model_modality(model) -> str:
    """The non-text modality of an mmzoo model (``mmzoo.modalities``); other models: image."""
    spec = getattr(getattr(model, "config", None), "model_spec", None)
    if not callable(spec):
        return "image"
    from ...modalities import paired_modality

    return paired_modality(spec())


def _has_itm(model) -> bool:
    return callable(getattr(model, "score_pairs", None)) and "itm" in (getattr(model, "objectives", None) or {})


@torch.inference_mode()
def itm_rerank(model, processor, images, texts, owner, ranks: RetrievalRanks, batch_size: int,
               embeddings: tuple[torch.Tensor, torch.Tensor] | None = None) -> RetrievalRanks:
    """Ranks after re-ordering each query's contrastive top k by the ITM match probability (ALBEF), or, given the
    ``(image, text)`` contrastive ``embeddings``, by ITM log-odds + contrastive logit (BLIP's evaluation).

    A query whose correct item is in its top k gets ``1 + #(wrong items in the top k scoring higher)``; the others
    keep their contrastive rank (which is > k)."""
    t2i_top, i2t_top = ranks.text_to_image_topk.cpu(), ranks.image_to_text_topk.cpu()
    text_inputs = to_model(processor(text=list(texts), return_tensors="pt", padding=True), model)
    image_inputs = to_model(processor(images=list(images), return_tensors="pt"), model)

    def score(pairs: torch.Tensor) -> torch.Tensor:  # pairs (N, 2) of (image, text) -> P(match) (N,)
        out = []
        for chunk in pairs.split(max(1, batch_size) * 8):
            img, txt = chunk[:, 0].unique(), chunk[:, 1].unique()
            img_pos = torch.full((len(images),), -1, dtype=torch.long)
            txt_pos = torch.full((len(texts),), -1, dtype=torch.long)
            img_pos[img], txt_pos[txt] = torch.arange(len(img)), torch.arange(len(txt))
            local = torch.stack([img_pos[chunk[:, 0]], txt_pos[chunk[:, 1]]], dim=1)
            out.append(model.score_pairs(
                input_ids=text_inputs["input_ids"][txt.to(text_inputs["input_ids"].device)],
                attention_mask=text_inputs["attention_mask"][txt.to(text_inputs["input_ids"].device)],
                pixel_values=image_inputs["pixel_values"][img.to(image_inputs["pixel_values"].device)],
                pairs=local, batch_size=batch_size,
            ).cpu())
        probability = torch.cat(out).double()
        if embeddings is None:
            return probability
        eps = 1e-12  # log-odds of the ITM probability (the head's logit difference) + the contrastive logit
        log_odds = (probability.clamp(eps, 1 - eps) / (1 - probability).clamp(eps, 1 - eps)).log()
        image_embeds = torch.nn.functional.normalize(embeddings[0].float(), dim=-1)
        text_embeds = torch.nn.functional.normalize(embeddings[1].float(), dim=-1)
        contrastive = torch.cat([model.pair_logits(image_embeds[chunk[:, 0].to(image_embeds.device)],
                                                   text_embeds[chunk[:, 1].to(text_embeds.device)]).diagonal().cpu()
                                 for chunk in pairs.split(512)])
        return log_odds + contrastive.double()

    k_t2i, k_i2t = t2i_top.shape[1], i2t_top.shape[1]
    text_rows = torch.arange(len(texts)).repeat_interleave(k_t2i)
    t2i_scores = score(torch.stack([t2i_top.flatten(), text_rows], dim=1)).view(len(texts), k_t2i)
    correct = t2i_top == owner[:, None]
    t2i = ranks.text_to_image.cpu().clone()
    hit = correct.any(dim=1)
    best = torch.where(correct, t2i_scores, torch.full_like(t2i_scores, float("-inf"))).amax(dim=1)
    t2i[hit] = 1 + ((t2i_scores > best[:, None]) & ~correct).sum(dim=1)[hit]

    image_rows = torch.arange(len(images)).repeat_interleave(k_i2t)
    i2t_scores = score(torch.stack([image_rows, i2t_top.flatten()], dim=1)).view(len(images), k_i2t)
    correct = owner[i2t_top] == torch.arange(len(images))[:, None]
    i2t = ranks.image_to_text.cpu().clone()
    hit = correct.any(dim=1)
    best = torch.where(correct, i2t_scores, torch.full_like(i2t_scores, float("-inf"))).amax(dim=1)
    i2t[hit] = 1 + ((i2t_scores > best[:, None]) & ~correct).sum(dim=1)[hit]
    return RetrievalRanks(image_to_text=i2t, text_to_image=t2i)
