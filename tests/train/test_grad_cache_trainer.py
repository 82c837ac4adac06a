"""MmzooTrainer's gradient-cache step: the plain step's loss and gradients with dropout on both towers, and
the towers in bf16 under ``precision: bf16`` (the accelerate autocast covers every chunk)."""

from __future__ import annotations

import pytest
import torch
from transformers import TrainingArguments

import mmzoo
from mmzoo.train.trainer import MmzooTrainer

from .test_grad_cache import one_thread  # noqa: F401  (autouse fixture: one thread for tiny models)

BATCH = 6


def _model(preset: str = "mm-clip-tiny", dropout: float = 0.2):
    spec = mmzoo.load_spec(preset).to_dict()
    for enc in spec["encoders"]:  # dropout in both towers: the masks of the two paths must match
        enc["config"].update(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    torch.manual_seed(0)
    return mmzoo.build_model(spec).train()


def _batch(model):
    g = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, model.config.text_config.vocab_size, (BATCH, 7), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 4:] = attention_mask[3, 2:] = 0
    size = model.config.vision_config.image_size
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "pixel_values": torch.randn(BATCH, 3, size, size, generator=g)}


def _trainer(tmp_path, model, chunk, bf16=False):
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, bf16=bf16, report_to=[],
                             per_device_train_batch_size=BATCH, remove_unused_columns=False)
    trainer = MmzooTrainer(model=model, args=args, grad_cache_chunk_size=chunk)
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's training loop
    trainer.model_wrapped = trainer.accelerator.prepare_model(model)  # what train() does: autocast forward
    return trainer


def _step(trainer, batch, seed):
    trainer.model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    loss = trainer.training_step(trainer.model_wrapped, dict(batch))
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return loss.detach(), grads


@pytest.mark.parametrize("preset", ["mm-clip-tiny", "mm-siglip-tiny"])
def test_one_chunk_equals_the_plain_step_with_dropout(tmp_path, preset):
    model = _model(preset)
    batch = _batch(model)
    plain_loss, plain = _step(_trainer(tmp_path / "p", model, None), batch, seed=4)
    other_loss, _ = _step(_trainer(tmp_path / "p", model, None), batch, seed=5)
    assert abs(other_loss - plain_loss) > 1e-4  # dropout is active: another seed draws other masks
    cached_loss, cached = _step(_trainer(tmp_path / "c", model, BATCH), batch, seed=4)
    torch.testing.assert_close(cached_loss, plain_loss, rtol=1e-5, atol=1e-6)
    assert cached.keys() == plain.keys()
    assert any(n.startswith("objectives.") for n in cached)
    for name in plain:
        torch.testing.assert_close(cached[name], plain[name], rtol=1e-4, atol=1e-6, msg=name)


def test_bf16_runs_the_towers_in_bf16_and_equals_the_plain_step(tmp_path):
    model = _model(dropout=0.0)
    batch = _batch(model)
    seen: list[torch.dtype] = []
    hooks = [m.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
             for tower in (model.text_tower, model.vision_tower)
             for m in tower.modules() if isinstance(m, torch.nn.Linear)]
    plain_loss, plain = _step(_trainer(tmp_path / "p", model, None, bf16=True), batch, seed=0)
    assert seen and set(seen) == {torch.bfloat16}  # the reference: accelerate's autocast around forward
    seen.clear()
    cached_loss, cached = _step(_trainer(tmp_path / "c", model, 2, bf16=True), batch, seed=0)
    for hook in hooks:
        hook.remove()
    assert seen and set(seen) == {torch.bfloat16}  # every chunk, both passes
    torch.testing.assert_close(cached_loss, plain_loss, rtol=2e-2, atol=1e-3)
    for name in plain:  # bf16 tolerance: the chunked towers round differently
        scale = plain[name].abs().max().clamp(min=1e-3)
        assert (cached[name] - plain[name]).abs().max() <= 0.05 * scale, name
