"""training.compile: the dual encoder's training step compiles without graph breaks and gives the eager loss."""

from __future__ import annotations

import pytest
import torch

import mmzoo
from mmzoo.train.args import training_arguments
from tests.common import batch


def _model_and_batch(name: str = "mm-clip-tiny"):
    """A tiny preset without dropout (compiled code draws its random numbers differently), in train mode."""
    torch.manual_seed(0)
    model = mmzoo.build_model(name).train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    for config in (getattr(m, "config", None) for m in model.modules()):
        for key in ("attention_probs_dropout_prob", "attention_dropout", "hidden_dropout_prob"):
            if config is not None and hasattr(config, key):
                setattr(config, key, 0.0)
    inputs = dict(batch(mmzoo.build_processor(name), 4))
    return model, inputs


def _loss_and_grads(fn, model, inputs):
    model.zero_grad(set_to_none=True)
    loss = fn(**inputs, return_loss=True).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_compile_flag_reaches_the_trainer(tiny_recipe, tmp_path):
    assert not training_arguments(tiny_recipe(), tmp_path).torch_compile
    assert training_arguments(tiny_recipe("training.compile=true"), tmp_path).torch_compile


def test_dual_encoder_step_is_one_graph_with_the_eager_loss():
    """fullgraph=True raises on any graph break (the loss's distributed gather included: single process it
    must return before any host sync); aot_eager traces forward and backward like inductor, without codegen."""
    torch._dynamo.reset()
    model, inputs = _model_and_batch()
    eager_loss, eager_grads = _loss_and_grads(model, model, inputs)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    loss, grads = _loss_and_grads(compiled, model, inputs)
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-6)
    assert len(eager_grads) > 10
    for name, param in model.named_parameters():  # a parameter without a gradient on one side: zero on the other
        zero = torch.zeros_like(param)
        torch.testing.assert_close(grads.get(name, zero), eager_grads.get(name, zero), rtol=1e-4, atol=1e-6,
                                   msg=name)


@pytest.mark.slow
def test_inductor_compiled_step_gives_the_eager_loss():
    torch._dynamo.reset()
    model, inputs = _model_and_batch()
    eager_loss, _ = _loss_and_grads(model, model, inputs)
    compiled = torch.compile(model, fullgraph=True)
    loss, _ = _loss_and_grads(compiled, model, inputs)
    torch.testing.assert_close(loss, eager_loss, rtol=1e-4, atol=1e-5)
