"""Poolers ignore padding: the result of a padded row equals the result of the same row unpadded."""

from __future__ import annotations

import pytest
import torch

from mmzoo.encoders.pooling import POOLERS, AttentionPooler


def _padded(seed: int = 0):
    """Two rows of 5 real tokens; row 1 carries 3 extra padding positions holding large garbage values."""
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(2, 5, 8, generator=g)
    garbage = 50 * torch.randn(2, 3, 8, generator=g)
    tokens = torch.cat([real, garbage], dim=1)
    mask = torch.tensor([[1] * 8, [1] * 5 + [0] * 3])
    return real, tokens, mask


@pytest.mark.parametrize("name", ["mean", "max", "eos"])
def test_registered_poolers_ignore_right_padding(name):
    real, tokens, mask = _padded()
    pooled = POOLERS.get(name)(tokens, mask)
    alone = POOLERS.get(name)(real[1:], torch.ones(1, 5, dtype=torch.long))
    torch.testing.assert_close(pooled[1:], alone)


def test_eos_takes_the_last_non_padding_token():
    real, tokens, mask = _padded()
    pooled = POOLERS.get("eos")(tokens, mask)
    torch.testing.assert_close(pooled[0], tokens[0, -1])  # unpadded row: the last position
    torch.testing.assert_close(pooled[1], real[1, 4])  # padded row: position 4, not 7


def test_attention_pooler_never_attends_to_padding():
    torch.manual_seed(0)
    pooler = AttentionPooler(8).eval()
    pooler._reset_mmzoo_parameters()
    real, tokens, mask = _padded()
    with torch.no_grad():
        pooled = pooler(tokens, mask)
        alone = pooler(real[1:], torch.ones(1, 5, dtype=torch.long))
        other_garbage = pooler(torch.cat([real, -tokens[:, 5:]], dim=1), mask)
    torch.testing.assert_close(pooled[1:], alone)
    torch.testing.assert_close(other_garbage[1], pooled[1])


def test_attention_pooler_eager_matches_sdpa():
    torch.manual_seed(0)
    pooler = AttentionPooler(8, num_heads=2).eval()
    pooler._reset_mmzoo_parameters()
    _, tokens, mask = _padded()
    with torch.no_grad():
        sdpa = pooler(tokens, mask)
        pooler.attn_implementation = "eager"
        eager = pooler(tokens, mask)
    torch.testing.assert_close(eager, sdpa)


def test_one_registry_holds_every_pooling_of_the_spec():
    from typing import get_args

    from mmzoo.specs.encoders import Pooling

    assert POOLERS.list() == sorted(get_args(Pooling))  # the torch-free spec literal and the registry agree
    assert POOLERS.get("attention").learned and not POOLERS.get("mean").learned
    assert isinstance(POOLERS.get("attention").build(8), AttentionPooler)
    with pytest.raises(ValueError, match="is learned: build its module"):
        POOLERS.get("attention")(torch.zeros(1, 2, 8), torch.ones(1, 2))


def test_tower_builds_the_learned_pooler_the_registry_holds(monkeypatch):
    """The tower asks the registry for its pooling module (no pooling-specific branch of its own)."""
    from transformers import BertConfig, BertModel

    from mmzoo.encoders.pooling import Pooler
    from mmzoo.encoders.tower import Tower

    class FirstTokenTimesTwo(torch.nn.Module):
        def __init__(self, width):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.full((width,), 2.0))

        def forward(self, tokens, mask):
            return tokens[:, 0] * self.scale

    monkeypatch.setitem(POOLERS._entries, "attention", Pooler("attention", module=FirstTokenTimesTwo))
    bert = BertModel(BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=16), add_pooling_layer=False).eval()
    tower = Tower(bert, "text", "attention")
    assert isinstance(tower.attention_pool, FirstTokenTimesTwo)
    ids = torch.tensor([[1, 2, 3]])
    out = tower(input_ids=ids)
    torch.testing.assert_close(out.pooled, 2 * out.tokens[:, 0])
