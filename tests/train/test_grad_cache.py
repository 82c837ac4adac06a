"""grad_cache_model_step gives the loss and gradients of the plain MmzooModel path (mmzoo/train/grad_cache.py)."""

from __future__ import annotations

import pytest
import torch

from transformers.modeling_layers import GradientCheckpointingLayer

import mmzoo
import mmzoo.losses.grad_cache as core_grad_cache
from mmzoo.train.grad_cache import check_grad_cache_model, grad_cache_model_step

BATCH = 6


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one thread avoids OpenMP spin-waits on a shared 2-core machine (10x faster under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(preset: str, dropout: float, seed: int = 0):
    spec = mmzoo.load_spec(preset).to_dict()
    for enc in spec["encoders"]:
        enc["config"].update(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    spec["objectives"][0]["weight"] = 0.7  # a weight != 1 must reach the gradients too
    torch.manual_seed(seed)
    model = mmzoo.build_model(spec).double().train()
    return model


def _batch(model):
    g = torch.Generator().manual_seed(1)
    vocab = model.config.text_config.vocab_size
    input_ids = torch.randint(5, vocab, (BATCH, 9), generator=g)
    attention_mask = torch.ones_like(input_ids)
    for i, length in enumerate([9, 4, 7, 2, 9, 5]):  # right padding of various lengths
        attention_mask[i, length:] = 0
    size = model.config.vision_config.image_size
    pixel_values = torch.randn(BATCH, 3, size, size, generator=g, dtype=torch.float64)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": pixel_values,
            "return_loss": True}


def _grads(model):
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def _plain(model, batch, seed):
    torch.manual_seed(seed)
    out = model(**batch)
    out.loss.backward()
    return out.loss.detach(), out.loss_terms, torch.rand(3), _grads(model)


def _cached(model, batch, seed, chunk_size, **kwargs):
    torch.manual_seed(seed)
    loss = grad_cache_model_step(model, batch, chunk_size, **kwargs)
    return loss, torch.rand(3), _grads(model)


def _assert_same_grads(actual, expected, rtol=1e-9, atol=1e-12):
    assert actual.keys() == expected.keys()
    assert "objectives.contrastive.logit_scale" in actual or "objectives.sigmoid.logit_bias" in actual
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=rtol, atol=atol, msg=name)


@pytest.mark.parametrize("preset", ["mm-clip-tiny", "mm-siglip-tiny"])
@pytest.mark.parametrize("chunk_size", [1, 4, 64])
def test_matches_plain_forward_without_dropout(preset, chunk_size):
    model = _model(preset, dropout=0.0)
    batch = _batch(model)
    loss, _, _, grads = _plain(model, batch, seed=0)
    cached_loss, _, cached_grads = _cached(model, batch, seed=0, chunk_size=chunk_size)
    torch.testing.assert_close(cached_loss, loss, rtol=1e-12, atol=0)
    _assert_same_grads(cached_grads, grads)


def test_one_chunk_with_dropout_draws_what_the_plain_forward_draws():
    """Same dropout masks as model(**batch) and the same RNG state afterwards."""
    model = _model("mm-clip-tiny", dropout=0.3)
    batch = _batch(model)
    loss, _, after, grads = _plain(model, batch, seed=5)
    other_seed_loss, *_ = _plain(model, batch, seed=6)
    assert not torch.allclose(loss, other_seed_loss)  # dropout is active: the masks matter
    cached_loss, cached_after, cached_grads = _cached(model, batch, seed=5, chunk_size=BATCH)
    torch.testing.assert_close(cached_loss, loss, rtol=1e-12, atol=0)
    torch.testing.assert_close(cached_after, after)
    _assert_same_grads(cached_grads, grads)


def _chunked_reference(model, batch, seed, chunk_size):
    """One backward through the graph of the same chunks in the same order (text chunks but the last, image
    chunks but the last, then the last text and image chunk): the same masks."""
    torch.manual_seed(seed)
    texts = list(zip(batch["input_ids"].split(chunk_size), batch["attention_mask"].split(chunk_size)))
    images = batch["pixel_values"].split(chunk_size)
    text = [model.encode_text(ids, mask).embeds for ids, mask in texts[:-1]]
    image = [model.encode_image(px).embeds for px in images[:-1]]
    text.append(model.encode_text(*texts[-1]).embeds)
    image.append(model.encode_image(images[-1]).embeds)
    text, image = torch.cat(text), torch.cat(image)
    out_loss = model.objectives["contrastive"](
        mmzoo.objectives.ObjectiveContext(model=model, inputs={}, text=_embeds(text), image=_embeds(image))
    ).loss * 0.7
    out_loss.backward()
    return out_loss.detach(), _grads(model)


def _embeds(x):
    from mmzoo.encoders.tower import TowerOutput

    return TowerOutput(None, None, None, x)


def test_chunks_with_dropout_replay_their_masks(monkeypatch):
    model = _model("mm-clip-tiny", dropout=0.3)
    batch = _batch(model)
    loss, grads = _chunked_reference(model, batch, seed=3, chunk_size=4)
    cached_loss, _, cached_grads = _cached(model, batch, seed=3, chunk_size=4)
    torch.testing.assert_close(cached_loss, loss, rtol=1e-12, atol=0)
    _assert_same_grads(cached_grads, grads)

    # without replaying the RNG state the re-encoded chunks draw other masks: gradients go wrong
    monkeypatch.setattr(core_grad_cache, "_set_rng", lambda state: None)
    _, _, wrong = _cached(model, batch, seed=3, chunk_size=4)
    assert not torch.allclose(wrong["text_tower.projection.weight"], grads["text_tower.projection.weight"])


def test_loss_scale_and_terms():
    model = _model("mm-clip-tiny", dropout=0.0)
    batch = _batch(model)
    _, terms, _, grads = _plain(model, batch, seed=0)
    seen = []
    loss, _, cached_grads = _cached(model, batch, seed=0, chunk_size=4, loss_scale=0.25, on_terms=seen.append)
    assert len(seen) == 1 and seen[0].keys() == {"contrastive"}
    torch.testing.assert_close(seen[0]["contrastive"], terms["contrastive"].detach())
    torch.testing.assert_close(loss, 0.25 * 0.7 * terms["contrastive"].detach())
    _assert_same_grads(cached_grads, {k: 0.25 * v for k, v in grads.items()})


def test_gradient_checkpointing_composes():
    model = _model("mm-clip-tiny", dropout=0.0)
    batch = _batch(model)
    _, _, _, grads = _plain(model, batch, seed=0)
    model.activation_checkpointing_enable()
    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    assert len(layers) == 4 and all(m.gradient_checkpointing for m in layers)  # 2 text + 2 vision layers
    _, _, cached_grads = _cached(model, batch, seed=0, chunk_size=4)
    _assert_same_grads(cached_grads, grads)


def test_rejects_fusion_models_and_bad_batches():
    with pytest.raises(ValueError, match=r"dual encoder.*fusion 'cross_attention'.*grad_cache_chunk_size"):
        check_grad_cache_model(mmzoo.build_model("mm-albef-tiny"))
    model = _model("mm-clip-tiny", dropout=0.0)
    batch = _batch(model)
    with pytest.raises(ValueError, match=r"lacks \['pixel_values'\]"):
        grad_cache_model_step(model, {k: v for k, v in batch.items() if k != "pixel_values"}, 2)
    with pytest.raises(ValueError, match="6 texts but 5 images"):
        grad_cache_model_step(model, {**batch, "pixel_values": batch["pixel_values"][:5]}, 2)
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        grad_cache_model_step(model, batch, 0)
