"""Audio retrieval: ranks with shared (class-level) captions, and the retrieval task on an audio model."""

from __future__ import annotations

import itertools

import pytest
import torch

from mmzoo.eval.retrieval import retrieval_ranks_shared_captions


def brute_force(items, texts, item_captions, queries, ties):
    """Ranks straight from the definition: 1 + #incorrect items (texts) beating the best correct one."""
    sim = torch.nn.functional.normalize(texts, dim=-1) @ torch.nn.functional.normalize(items, dim=-1).t()
    beats = (lambda a, b: a >= b) if ties == "pessimistic" else (lambda a, b: a > b)
    correct = [[q in caps for caps in item_captions] for q in queries]
    t2i = [1 + sum(beats(sim[t, i], max(sim[t, j] for j in range(len(items)) if correct[t][j])) and not correct[t][i]
                   for i in range(len(items))) for t in range(len(queries))]
    i2t = [1 + sum(beats(sim[t, i], max(sim[u, i] for u in range(len(queries)) if correct[u][i])) and not correct[t][i]
                   for t in range(len(queries))) for i in range(len(items))]
    return i2t, t2i


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
def test_shared_caption_ranks_match_the_definition(ties):
    gen = torch.Generator().manual_seed(0)
    classes = ["a high tone", "a low tone", "noise", "a chord"]
    item_captions = [[classes[i % 4], f"clip {i}"] for i in range(10)]
    queries = classes + [f"clip {i}" for i in range(10)]
    # integer-valued embeddings: exact dot products, and ties do occur
    items = torch.randint(-2, 3, (10, 4), generator=gen).float()
    texts = torch.randint(-2, 3, (len(queries), 4), generator=gen).float()
    ranks = retrieval_ranks_shared_captions(items, texts, item_captions, queries, chunk_size=3, ties=ties,
                                            normalize=False)
    sim = texts @ items.t()  # the definition on the unnormalised scores
    beats = torch.ge if ties == "pessimistic" else torch.gt
    correct = torch.tensor([[q in caps for caps in item_captions] for q in queries])
    best_t = sim.masked_fill(~correct, float("-inf")).amax(1)
    assert ranks.text_to_image.tolist() == (1 + (beats(sim, best_t[:, None]) & ~correct).sum(1)).tolist()
    best_i = sim.masked_fill(~correct, float("-inf")).amax(0)
    assert ranks.image_to_text.tolist() == (1 + (beats(sim, best_i[None, :]) & ~correct).sum(0)).tolist()
    normalised = retrieval_ranks_shared_captions(items + 0.01, texts + 0.01, item_captions, queries, ties=ties)
    i2t, t2i = brute_force(items + 0.01, texts + 0.01, item_captions, queries, ties)
    assert normalised.text_to_image.tolist() == t2i and normalised.image_to_text.tolist() == i2t


def test_a_clip_of_the_same_class_counts_as_correct():
    items = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])  # two "high" clips, one "low"
    texts = torch.tensor([[0.95, 0.05], [0.0, 1.0]])
    captions = [["a high tone"], ["a high tone"], ["a low tone"]]
    ranks = retrieval_ranks_shared_captions(items, texts, captions, ["a high tone", "a low tone"])
    assert ranks.text_to_image.tolist() == [1, 1] and ranks.image_to_text.tolist() == [1, 1, 1]
    swapped = retrieval_ranks_shared_captions(items, texts.flip(0), captions, ["a high tone", "a low tone"])
    # "high" query: the low clip beats the best high one (rank 2); "low" query: both high clips beat it (rank 3)
    assert swapped.text_to_image.tolist() == [2, 3]


def test_items_without_any_query_caption_are_an_error():
    with pytest.raises(ValueError, match="none of their captions"):
        retrieval_ranks_shared_captions(torch.eye(2), torch.eye(2)[:1], [["a"], ["b"]], ["a"])


def test_retrieval_task_on_an_audio_model(tmp_path):
    """The task embeds clips with get_audio_features and names the metrics text_to_audio / audio_to_text."""
    import mmzoo
    from mmzoo.data.builtin.tones import TonesParams, build
    from mmzoo.eval import run_evaluation
    import sys
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1] / "modeling"))
    from test_audio_model import audio_spec

    torch.manual_seed(0)
    model, processor = mmzoo.build_model(audio_spec()).eval(), mmzoo.build_processor(audio_spec())
    data = build(TonesParams(num_samples=12, split="test", duration=0.5))
    results = run_evaluation(model, processor, [{"task": "retrieval", "correct": "same_caption"}], data, tmp_path)
    result = results["results"][0]
    assert result["protocol"]["modality"] == "audio" and result["protocol"]["num_audio"] == 12
    metrics = result["metrics"]
    assert {"text_to_audio_recall_at_1", "audio_to_text_recall_at_1"} <= set(metrics)
    assert not any("image" in key for key in metrics)
    own = run_evaluation(model, processor, [{"task": "retrieval"}], data, tmp_path)["results"][0]
    assert own["protocol"]["num_texts"] == 36  # every caption of every clip is a query (own-row relevance)
