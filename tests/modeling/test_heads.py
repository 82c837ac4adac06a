"""Task heads: caption generation through GenerationMixin, VQA classification, Auto save/load round trips."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModel, AutoModelForImageTextToText, AutoModelForVisualQuestionAnswering

import mmzoo
from mmzoo.builder import build_config
from mmzoo.errors import SpecError
from mmzoo.modeling import MmzooForConditionalGeneration, MmzooForVisualQuestionAnswering, MmzooModel
from tests.common import images
from tests.objectives.helpers import tiny_batch, tiny_spec

ANSWERS = ["yes", "no", "two", "red"]


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread avoids oversubscription on a busy machine
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def captioner():
    spec = tiny_spec("cross_attention", ["contrastive", "captioning"])
    torch.manual_seed(0)
    model = mmzoo.build_model(spec, model_class=MmzooForConditionalGeneration).eval()
    return model, mmzoo.build_processor(spec)


def vqa_config(fusion="cross_attention"):
    config = build_config(tiny_spec(fusion, ["contrastive", "itm"]))
    config.answer_vocab = ANSWERS
    return config


# -- captioning / generation -----------------------------------------------------------------------------------
def test_generate_returns_token_ids_for_an_image(captioner, monkeypatch):
    model, processor = captioner
    pixel_values = tiny_batch(processor, 2)["pixel_values"]
    encoded = []
    encode_image = model.encode_image
    monkeypatch.setattr(model, "encode_image", lambda pv: encoded.append(pv) or encode_image(pv))
    ids = model.generate(pixel_values=pixel_values, max_new_tokens=6)
    assert ids.dtype == torch.long and ids.shape[0] == 2 and 2 <= ids.shape[1] <= 7
    assert (ids[:, 0] == model.config.tokens["cls_token_id"]).all()
    assert ((ids >= 0) & (ids < model.config.tokens["vocab_size"])).all()
    assert len(encoded) == 1  # the image is encoded once, then its tokens are reused at each step
    assert isinstance(processor.batch_decode(ids, skip_special_tokens=True)[0], str)


def test_generate_matches_greedy_argmax(captioner):
    model, processor = captioner
    pixel_values = tiny_batch(processor, 2)["pixel_values"]
    ids = model.generate(pixel_values=pixel_values, max_new_tokens=4, min_new_tokens=4)
    prefix = ids[:, :1]
    for _ in range(4):
        logits = model(input_ids=prefix, pixel_values=pixel_values).logits
        prefix = torch.cat([prefix, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(ids, prefix)


def test_generate_stops_at_sep(captioner):
    model, processor = captioner
    sep, pad = model.config.tokens["sep_token_id"], model.config.tokens["pad_token_id"]
    pixel_values = tiny_batch(processor, 2)["pixel_values"]
    head = model.caption_decoder.lm_head
    with torch.no_grad():
        saved = head.bias.clone()
        head.bias[sep] = 1e4
        try:
            ids = model.generate(pixel_values=pixel_values, max_new_tokens=10)
        finally:
            head.bias.copy_(saved)
    assert ids[:, 1].tolist() == [sep, sep] and ids.shape[1] == 2
    assert pad != sep


def test_prompted_generation_keeps_the_prompt(captioner):
    model, processor = captioner
    pixel_values = processor(images=images(2))["pixel_values"]
    tok = processor.tokenizer
    tok.padding_side = "left"
    try:
        prompt = tok(["how many circles", "what color"], padding=True, return_tensors="pt")
    finally:
        tok.padding_side = "right"
    # drop the closing [SEP]: generation continues the question with its answer
    ids, mask = prompt["input_ids"][:, :-1], prompt["attention_mask"][:, :-1]
    out = model.generate(input_ids=ids, attention_mask=mask, pixel_values=pixel_values, max_new_tokens=3)
    assert torch.equal(out[:, : ids.shape[1]], ids) and out.shape[1] > ids.shape[1]


def test_forward_loss_equals_the_captioning_objective(captioner):
    model, processor = captioner
    batch = tiny_batch(processor)
    out = model(**batch, labels=batch["input_ids"])
    assert out.logits.shape == (*batch["input_ids"].shape, model.config.tokens["vocab_size"])
    objective = MmzooModel.forward(model, **batch, return_loss=True).loss_terms["captioning"]
    torch.testing.assert_close(out.loss, objective)


def test_generation_head_needs_a_captioning_objective():
    config = build_config(tiny_spec("dual_encoder", ["contrastive"]))
    with pytest.raises(SpecError, match="captioning"):
        MmzooForConditionalGeneration(config)


# -- VQA ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fusion", ["cross_attention", "gated"])
def test_vqa_head_loss_and_logits(fusion):
    torch.manual_seed(0)
    model = MmzooForVisualQuestionAnswering(vqa_config(fusion)).eval()
    processor = mmzoo.build_processor(tiny_spec(fusion, ["contrastive", "itm"]))
    batch = tiny_batch(processor, 3)
    scores = torch.tensor([[1.0, 0, 0, 0], [0, 0.3, 0.6, 0], [0, 0, 0, 1.0]])
    out = model(**batch, labels=scores)
    assert out.logits.shape == (3, len(ANSWERS)) and out.loss.shape == ()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(out.logits, scores) * len(ANSWERS)
    torch.testing.assert_close(out.loss, expected)
    by_index = model(**batch, labels=torch.tensor([0, 2, 3])).loss
    one_hot = model(**batch, labels=torch.eye(4)[[0, 2, 3]]).loss
    torch.testing.assert_close(by_index, one_hot)
    assert model(**batch).loss is None
    assert model.config.id2label[2] == "two" and len(model.decode_answers(out.logits)) == 3
    out.loss.backward()
    assert model.vqa_head[-1].weight.grad.abs().sum() > 0


def test_vqa_head_needs_answers_and_a_pair_embedding():
    config = vqa_config()
    config.answer_vocab = None
    with pytest.raises(SpecError, match="answer_vocab"):
        MmzooForVisualQuestionAnswering(config)
    config = build_config(tiny_spec("dual_encoder", ["contrastive"]))
    config.answer_vocab = ANSWERS
    with pytest.raises(SpecError, match="pair_embedding"):
        MmzooForVisualQuestionAnswering(config)


# -- save / load through the Auto classes --------------------------------------------------------------------------
def test_caption_head_round_trip_via_auto(captioner, tmp_path):
    model, processor = captioner
    model.save_pretrained(tmp_path)
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path)
    assert type(loaded) is MmzooForConditionalGeneration
    pixel_values = tiny_batch(processor, 2)["pixel_values"]
    assert torch.equal(loaded.generate(pixel_values=pixel_values, max_new_tokens=5),
                       model.generate(pixel_values=pixel_values, max_new_tokens=5))
    assert loaded.generation_config.eos_token_id == model.config.tokens["sep_token_id"]
    assert loaded.generation_config.use_cache is False
    # the same checkpoint loads as the base model
    base = AutoModel.from_pretrained(tmp_path)
    assert type(base) is MmzooModel
    batch = tiny_batch(processor, 2)
    torch.testing.assert_close(base(**batch).logits_per_image, MmzooModel.forward(model, **batch).logits_per_image)


def test_vqa_head_round_trip_via_auto(tmp_path):
    torch.manual_seed(0)
    model = MmzooForVisualQuestionAnswering(vqa_config()).eval()
    model.save_pretrained(tmp_path)
    loaded = AutoModelForVisualQuestionAnswering.from_pretrained(tmp_path)
    assert type(loaded) is MmzooForVisualQuestionAnswering
    assert loaded.config.answer_vocab == ANSWERS
    batch = tiny_batch(mmzoo.build_processor(tiny_spec("cross_attention", ["contrastive", "itm"])), 2)
    torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits)


def test_base_checkpoint_loads_into_the_vqa_head(tmp_path):
    torch.manual_seed(0)
    config = vqa_config()
    base = MmzooModel(config).eval()
    base.save_pretrained(tmp_path)
    head = AutoModelForVisualQuestionAnswering.from_pretrained(tmp_path)
    for name, tensor in base.state_dict().items():
        assert torch.equal(head.state_dict()[name], tensor), name
    assert head.vqa_head[0].weight.std() > 0  # the new head is initialised, not left empty


def test_build_model_with_answer_vocab():
    import mmzoo
    from mmzoo.modeling import MmzooForVisualQuestionAnswering

    model = mmzoo.build_model("mm-albef-tiny", model_class=MmzooForVisualQuestionAnswering, answer_vocab=["red", "two"])
    assert model.config.answer_vocab == ["red", "two"]
    assert isinstance(model, MmzooForVisualQuestionAnswering)
