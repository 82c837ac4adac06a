"""Gradient caching gives the loss and gradients of the plain (full-graph) path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmzoo.losses.functional import contrastive_loss, sigmoid_loss
from mmzoo.losses.grad_cache import grad_cache_step


class TwoTower(nn.Module):
    def __init__(self, dropout: float) -> None:
        super().__init__()
        self.image = nn.Sequential(nn.Linear(6, 8), nn.Dropout(dropout), nn.GELU(), nn.Linear(8, 4))
        self.embed = nn.Embedding(20, 8)
        self.text = nn.Sequential(nn.Dropout(dropout), nn.Linear(8, 4))
        self.logit_scale = nn.Parameter(torch.tensor(1.5))
        self.logit_bias = nn.Parameter(torch.tensor(-1.0))

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image(pixel_values), dim=-1)

    def encode_text(self, batch: dict) -> torch.Tensor:
        mask = batch["attention_mask"].unsqueeze(-1).to(self.embed.weight.dtype)
        pooled = (self.embed(batch["input_ids"]) * mask).sum(1) / mask.sum(1)
        return F.normalize(self.text(pooled), dim=-1)


def _inputs(batch: int = 7):
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(batch, 6, generator=g, dtype=torch.float64)
    text = {"input_ids": torch.randint(0, 20, (batch, 5), generator=g), "attention_mask": torch.ones(batch, 5)}
    text["attention_mask"][:, 3:] = 0
    return pixels, text


def _chunks(inputs, size):
    if isinstance(inputs, torch.Tensor):
        return inputs.split(size)
    return [{k: v[i : i + size] for k, v in inputs.items()} for i in range(0, len(inputs["input_ids"]), size)]


LOSSES = {
    "clip": lambda m: lambda a, b: contrastive_loss(a, b, m.logit_scale.exp())[0],
    "siglip": lambda m: lambda a, b: sigmoid_loss(a, b, m.logit_scale.exp(), m.logit_bias)[0],
}


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _in_grad_cache_order(encode_a, encode_b, chunks_a, chunks_b):
    """Chunks 0..k-2 of a, then of b, then the last chunk of each: the order grad_cache_step draws dropout in."""
    last = len(chunks_a) - 1
    a = [encode_a(c) for c in chunks_a[:last]]
    b = [encode_b(c) for c in chunks_b[:last]]
    a.append(encode_a(chunks_a[last]))
    b.append(encode_b(chunks_b[last]))
    return torch.cat(a), torch.cat(b)


@pytest.mark.parametrize("loss_name", sorted(LOSSES))
@pytest.mark.parametrize("dropout, plain_chunk", [(0.3, 3), (0.0, None)])
@pytest.mark.parametrize("with_params", [False, True], ids=["loss_backward", "loss_params"])
def test_grad_cache_matches_plain_path(loss_name, dropout, plain_chunk, with_params):
    """With dropout the plain path uses the same chunking (same dropout draws); without, the full batch.
    ``loss_params`` folds the logit scale/bias gradients into the last chunk's backward: the same result."""
    torch.manual_seed(0)
    plain = TwoTower(dropout).double().train()
    cached = TwoTower(dropout).double().train()
    cached.load_state_dict(plain.state_dict())
    pixels, text = _inputs()

    torch.manual_seed(123)
    size = plain_chunk or len(pixels)
    img, txt = _in_grad_cache_order(plain.encode_image, plain.encode_text, _chunks(pixels, size), _chunks(text, size))
    plain_loss = LOSSES[loss_name](plain)(img, txt)
    plain_loss.backward()
    plain_next = torch.rand(3)

    torch.manual_seed(123)
    params = [cached.logit_scale, cached.logit_bias] if with_params else None
    loss = grad_cache_step(cached.encode_image, cached.encode_text, pixels, text, LOSSES[loss_name](cached), 3,
                           loss_params=params)
    assert not loss.requires_grad
    assert loss.item() == pytest.approx(plain_loss.item(), abs=1e-10)
    got, expected = _grads(cached), _grads(plain)
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-10, rtol=0, msg=name)
    assert got["logit_scale"].abs() > 0
    torch.testing.assert_close(torch.rand(3), plain_next)  # RNG left as after one plain forward


def test_grad_cache_rejects_bad_inputs():
    model = TwoTower(0.0).double()
    pixels, text = _inputs()
    loss_fn = LOSSES["clip"](model)
    with pytest.raises(ValueError, match="chunk_size"):
        grad_cache_step(model.encode_image, model.encode_text, pixels, text, loss_fn, 0)
    with pytest.raises(ValueError, match="common batch size"):
        bad = {"input_ids": text["input_ids"], "attention_mask": text["attention_mask"][:3]}
        grad_cache_step(model.encode_image, model.encode_text, pixels, bad, loss_fn, 2)
    with pytest.raises(ValueError, match="same batch size"):
        grad_cache_step(model.encode_image, model.encode_text, pixels[:4], text, loss_fn, 2)
