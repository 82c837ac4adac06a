"""Captioning: next-token CE equals a hand computation, the decoder is causal and looks at the image."""

from __future__ import annotations

import math

import pytest
import torch

from mmzoo.encoders.tower import TowerOutput
from mmzoo.encoders import TowersAndTokens
from mmzoo.fusion import FusionOutput
from mmzoo.objectives import ObjectiveContext
from mmzoo.objectives.captioning import CaptioningObjective
from mmzoo.specs.objectives import CaptioningSpec

DIMS = TowersAndTokens(text_width=8, image_width=6, embed_dim=4, vocab_size=3, pad_token_id=0)


def make(label_smoothing=0.0, max_length=8):
    torch.manual_seed(0)
    spec = CaptioningSpec(num_layers=1, num_heads=2, dropout=0.0, max_length=max_length,
                          label_smoothing=label_smoothing)
    return CaptioningObjective(spec, DIMS, fusion=None).eval()


def context(ids, mask, image_tokens):
    text = TowerOutput(tokens=torch.zeros(*ids.shape, 8), mask=mask, pooled=torch.zeros(len(ids), 8), embeds=None)
    image = TowerOutput(tokens=image_tokens, mask=torch.ones(image_tokens.shape[:2], dtype=torch.long),
                        pooled=image_tokens[:, 0], embeds=None)
    return ObjectiveContext(model=None, text=text, image=image, inputs={"input_ids": ids}, _fused=FusionOutput())


IDS = torch.tensor([[1, 0, 2], [1, 2, 0]])  # row 1 ends with a pad
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])
# fixed decoder logits: log-probabilities with easy numbers
PROBS = torch.tensor([
    [[0.5, 0.25, 0.25], [0.1, 0.2, 0.7], [0.3, 0.3, 0.4]],
    [[0.2, 0.2, 0.6], [0.9, 0.05, 0.05], [0.3, 0.3, 0.4]],
])


def test_loss_equals_hand_computed_cross_entropy(monkeypatch):
    objective = make()
    monkeypatch.setattr(objective.decoder, "forward", lambda *args: PROBS.log())
    loss = objective(context(IDS, MASK, torch.randn(2, 5, 6))).loss
    # targets: row 0 predicts 0 then 2; row 1 predicts 2, then a pad (ignored); the last position predicts nothing
    expected = -(math.log(0.5) + math.log(0.7) + math.log(0.6)) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_label_smoothing_matches_its_formula(monkeypatch):
    eps = 0.2
    objective = make(label_smoothing=eps)
    monkeypatch.setattr(objective.decoder, "forward", lambda *args: PROBS.log())
    loss = objective(context(IDS, MASK, torch.randn(2, 5, 6))).loss
    rows = [(PROBS[0, 0], 0), (PROBS[0, 1], 2), (PROBS[1, 0], 2)]
    expected = sum((1 - eps) * -p[t].log() + eps * -p.log().mean() for p, t in rows) / 3
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_real_decoder_loss_matches_its_logits():
    objective = make()
    image = torch.randn(2, 5, 6)
    logits = objective.decoder(IDS, MASK, image)
    log_probs = logits.log_softmax(-1)
    expected = -(log_probs[0, 0, 0] + log_probs[0, 1, 2] + log_probs[1, 0, 2]) / 3
    torch.testing.assert_close(objective(context(IDS, MASK, image)).loss, expected)


def test_decoder_is_causal_and_conditioned_on_the_image():
    objective = make()
    ids = torch.tensor([[1, 2, 1, 2, 0]])
    image = torch.randn(1, 5, 6)
    base = objective.decoder(ids, None, image)
    changed = ids.clone()
    changed[0, 3] = 1
    after = objective.decoder(changed, None, image)
    torch.testing.assert_close(base[:, :3], after[:, :3])  # the past does not see the future
    assert not torch.allclose(base[:, 3:], after[:, 3:])
    assert not torch.allclose(base, objective.decoder(ids, None, torch.randn(1, 5, 6)))


def test_left_padding_keeps_positions():
    objective = make()
    image = torch.randn(1, 5, 6)
    plain = objective.decoder(torch.tensor([[1, 2, 1]]), None, image)
    padded = objective.decoder(torch.tensor([[0, 0, 1, 2, 1]]), torch.tensor([[0, 0, 1, 1, 1]]), image)
    torch.testing.assert_close(plain, padded[:, 2:])


def test_too_long_captions_are_rejected():
    objective = make(max_length=4)
    with pytest.raises(ValueError, match="max_length"):
        objective.decoder(torch.ones(1, 5, dtype=torch.long), None, torch.randn(1, 5, 6))
