"""Pieces of the training engine: seeded order and captions, collator, TrainingArguments mapping, run-folder
rules, per-objective logging under gradient accumulation, gradient caching."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from mmzoo.errors import RecipeError
from mmzoo.train import train
from mmzoo.train.args import training_arguments
from mmzoo.train.data import EpochSampler, PairDataset, TrainCollator, pick_caption
from mmzoo.train.run import check_image_size, resolve_checkpoint

from .conftest import read_log


def test_epoch_sampler_is_seeded_by_seed_and_epoch():
    sampler = EpochSampler(20, seed=3)
    first = list(sampler)
    assert len(sampler) == 20 and sorted(i for i, _ in first) == list(range(20))
    assert {e for _, e in first} == {0}
    assert list(EpochSampler(20, seed=3)) == first  # a fresh sampler (a resumed run) replays it
    sampler.set_epoch(1)
    second = list(sampler)
    assert {e for _, e in second} == {1} and [i for i, _ in second] != [i for i, _ in first]
    assert list(EpochSampler(20, seed=4)) != first


def test_caption_choice_depends_only_on_seed_epoch_index():
    picks = [pick_caption(5, 0, 0, i) for i in range(200)]
    assert picks == [pick_caption(5, 0, 0, i) for i in range(200)]
    assert set(picks) == set(range(5))  # all captions get used
    assert picks != [pick_caption(5, 0, 1, i) for i in range(200)]  # a new epoch draws again
    assert picks != [pick_caption(5, 1, 0, i) for i in range(200)]


def test_pair_dataset_and_collator():
    rows = [{"image": Image.new("L", (10, 10)), "captions": ["a", "b", "c"]} for _ in range(4)]
    ds = PairDataset(rows, seed=0)
    assert ds[(2, 1)]["captions"] == [["a", "b", "c"][pick_caption(3, 0, 1, 2)]]
    assert ds[2] == ds[(2, 0)]
    assert PairDataset(rows, pick="first")[(2, 5)]["captions"] == ["a"]

    import mmzoo

    collate = TrainCollator(mmzoo.build_processor("mm-clip-tiny"), max_length=12)
    batch = collate([ds[i] for i in range(4)])
    assert "return_loss" not in batch  # tensors only: engines concatenate and dispatch batches
    assert all(isinstance(v, torch.Tensor) for v in batch.values())
    assert batch["input_ids"].shape == (4, 12) and batch["pixel_values"].shape == (4, 3, 32, 32)


def test_negative_captions_are_kept_and_drawn_apart_from_the_caption():
    import datasets

    from mmzoo.train.data import pair_columns

    captions, negatives = ["a", "b", "c"], ["not a", "not b", "not c"]
    data = datasets.Dataset.from_dict({"image": [None] * 40, "captions": [captions] * 40,
                                       "negative_captions": [negatives] * 40, "objects": [[]] * 40})
    assert pair_columns(data).column_names == ["image", "captions", "negative_captions"]
    rows = [{"image": None, "captions": captions, "negative_captions": negatives}] * 40
    ds = PairDataset(rows, seed=0)
    drawn = [(ds[(i, 0)]["captions"][0], ds[(i, 0)]["negative_captions"][0]) for i in range(40)]
    assert drawn == [(ds[(i, 0)]["captions"][0], ds[(i, 0)]["negative_captions"][0]) for i in range(40)]  # resumable
    assert {n for _, n in drawn} == set(negatives)
    assert len({(captions.index(c), negatives.index(n)) for c, n in drawn}) > 3  # not tied to the caption's index
    assert PairDataset(rows, pick="first")[(3, 2)]["negative_captions"] == ["not a"]


def test_training_arguments_mapping(tiny_recipe, tmp_path):
    recipe = tiny_recipe("training.precision=bf16", "training.warmup_steps=0.1", "training.save_steps=null",
                         "training.eval_steps=2", "training.trainer_args.optim=adamw_torch",
                         "training.gradient_accumulation_steps=2")
    args = training_arguments(recipe, tmp_path)
    assert args.bf16 and not args.fp16
    assert args.warmup_steps == pytest.approx(0.1) and args.save_strategy == "no"
    assert args.eval_strategy == "steps" and args.eval_steps == 2
    assert args.optim == "adamw_torch" and args.gradient_accumulation_steps == 2
    assert args.remove_unused_columns is False and args.prediction_loss_only
    assert args.dataloader_drop_last is False
    assert training_arguments(tiny_recipe("training.drop_last=true"), tmp_path).dataloader_drop_last
    no_eval = training_arguments(tiny_recipe("data.eval=null", "evaluation=[]", "training.eval_steps=2"), tmp_path)
    assert no_eval.eval_strategy == "no"


def test_training_arguments_errors(tiny_recipe, tmp_path):
    with pytest.raises(RecipeError, match=r"trainer_args.optimm: not a transformers.TrainingArguments field; "
                                          r"did you mean 'optim'"):
        training_arguments(tiny_recipe("training.trainer_args.optimm=sgd"), tmp_path)
    if not torch.cuda.is_available():
        with pytest.raises(RecipeError, match="fp16 needs a CUDA GPU"):
            training_arguments(tiny_recipe("training.precision=fp16"), tmp_path)


def test_checkpoint_and_run_folder_rules(tiny_recipe, tmp_path):
    with pytest.raises(RecipeError, match="--resume: no checkpoint-\\* folder in"):
        resolve_checkpoint(tmp_path, True)
    with pytest.raises(RecipeError, match="not a Trainer checkpoint folder"):
        resolve_checkpoint(tmp_path, str(tmp_path))
    assert resolve_checkpoint(tmp_path, False) is None

    recipe = tiny_recipe("training.max_steps=1", "training.save_steps=1", "data.eval=null", "evaluation=[]")
    train(recipe, progress=False)
    with pytest.raises(RecipeError, match=r"already holds a run .*pass --resume to continue it, --set "
                                          r"training.overwrite=true"):
        train(recipe, progress=False)
    result = train(recipe.model_copy(update={"training": recipe.training.model_copy(update={"overwrite": True})}),
                   progress=False)
    assert result.global_step == 1


def test_image_size_must_match_the_vision_tower(tiny_recipe):
    from mmzoo.recipe import resolve_model_spec

    recipe = tiny_recipe("data.train.image_size=64")
    with pytest.raises(RecipeError, match=r"data.train.image_size is 64 but the model's vision tower takes 32 px"):
        check_image_size(recipe, resolve_model_spec(recipe))


def test_objective_terms_under_gradient_accumulation(tiny_recipe):
    recipe = tiny_recipe("training.gradient_accumulation_steps=2", "training.per_device_train_batch_size=4",
                         "training.max_steps=2", "data.eval=null", "evaluation=[]", "training.save_steps=null",
                         name="albef-coco")
    result = train(recipe, progress=False)
    entries = [e for e in read_log(result.run_dir) if "loss" in e]
    assert len(entries) == 2
    for entry in entries:  # the terms are averaged like Trainer's loss: their weighted sum is the logged loss
        terms = entry["loss/contrastive"] + entry["loss/itm"] + entry["loss/mlm"]
        assert terms == pytest.approx(entry["loss"], rel=1e-4)


def test_accumulation_with_a_pairwise_loss_is_routed_to_the_gradient_cache(tiny_recipe, monkeypatch):
    from mmzoo.recipe import resolve_model_spec
    from mmzoo.train import trainer
    from mmzoo.train.trainer import plan_batches

    warnings = []
    monkeypatch.setattr(trainer.logger, "warning", lambda msg, *args: warnings.append(msg % args))

    clip = tiny_recipe("training.gradient_accumulation_steps=3", "training.per_device_train_batch_size=4")
    plan = plan_batches(clip.training, resolve_model_spec(clip))
    assert (plan.per_device_batch, plan.accumulation, plan.grad_cache_chunk_size) == (12, 1, 4)
    assert "gradient cache" in plan.note
    plain = tiny_recipe("training.per_device_train_batch_size=4")
    assert plan_batches(plain.training, resolve_model_spec(plain)).note is None

    albef = tiny_recipe("training.gradient_accumulation_steps=2", name="albef-coco")
    plan = plan_batches(albef.training, resolve_model_spec(albef))  # fusion: accumulates, with a warning
    assert (plan.accumulation, plan.grad_cache_chunk_size) == (2, None)
    assert len(warnings) == 1 and "sees only the negatives of each micro-batch" in warnings[0]


def test_routed_accumulation_keeps_the_global_negatives(tiny_recipe, tmp_path):
    """4 x 2 accumulated gives the loss of one batch of 8 (not the smaller loss of two batches of 4)."""
    common = ["model.overrides.encoders.text.config.hidden_dropout_prob=0.0",
              "model.overrides.encoders.text.config.attention_probs_dropout_prob=0.0",
              "data.eval=null", "evaluation=[]", "training.max_steps=1", "training.save_steps=null",
              "training.precision=fp32"]  # two per-device batch shapes: auto could measure each differently
    big = train(tiny_recipe(*common, "training.per_device_train_batch_size=8"), progress=False,
                output_dir=tmp_path / "big")
    accumulated = train(tiny_recipe(*common, "training.per_device_train_batch_size=4",
                                    "training.gradient_accumulation_steps=2"), progress=False,
                        output_dir=tmp_path / "acc")
    first = [[e for e in read_log(r.run_dir) if "loss" in e][0] for r in (big, accumulated)]
    assert first[1]["loss"] == pytest.approx(first[0]["loss"], rel=1e-5)
    assert first[1]["grad_norm"] == pytest.approx(first[0]["grad_norm"], rel=1e-4)


def _trainer_and_batch(tiny_recipe, tmp_path, chunk):
    import mmzoo
    from mmzoo.recipe import resolve_model_spec
    from mmzoo.train.trainer import MmzooTrainer

    recipe = tiny_recipe("model.overrides.encoders.text.config.hidden_dropout_prob=0.0",
                         "model.overrides.encoders.text.config.attention_probs_dropout_prob=0.0")
    spec = resolve_model_spec(recipe)
    torch.manual_seed(0)
    model = mmzoo.build_model(spec)
    processor = mmzoo.build_processor(spec)
    trainer = MmzooTrainer(model=model, args=training_arguments(recipe, tmp_path), grad_cache_chunk_size=chunk)
    trainer.current_gradient_accumulation_steps = 1
    rows = [{"image": Image.new("RGB", (32, 32), (40 * i, 200 - 30 * i, 90)), "captions": [f"shape number {i}"]}
            for i in range(6)]
    return trainer, TrainCollator(processor)(rows)


def test_grad_cache_gives_the_plain_gradients(tiny_recipe, tmp_path):
    plain, batch = _trainer_and_batch(tiny_recipe, tmp_path, None)
    cached, _ = _trainer_and_batch(tiny_recipe, tmp_path, 2)
    loss_plain = plain.training_step(plain.model, dict(batch))
    loss_cached = cached.training_step(cached.model, dict(batch))
    assert loss_cached == pytest.approx(loss_plain.item(), rel=1e-5)
    grads = {n: p.grad for n, p in plain.model.named_parameters() if p.grad is not None}
    assert grads
    for name, param in cached.model.named_parameters():
        if name in grads:
            torch.testing.assert_close(param.grad, grads[name], rtol=1e-4, atol=1e-6, msg=name)
    assert set(cached._terms) == {"contrastive"}


def test_fsdp_that_accelerate_cannot_apply_is_refused(tiny_recipe, tmp_path, monkeypatch):
    import mmzoo
    from mmzoo.train.trainer import MmzooTrainer

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what `accelerate launch --use_fsdp` sets; CPU here
    with pytest.raises(RecipeError, match=r"FSDP was requested \(ACCELERATE_USE_FSDP=true\).*silently be plain DDP"):
        MmzooTrainer(model=mmzoo.build_model("mm-clip-tiny"), args=training_arguments(tiny_recipe(), tmp_path))


def test_grad_cache_refuses_fusion_objectives(tiny_recipe, tmp_path):
    import mmzoo
    from mmzoo.train.trainer import MmzooTrainer

    with pytest.raises(RecipeError, match=r"grad_cache_chunk_size: gradient caching needs a dual encoder"):
        MmzooTrainer(model=mmzoo.build_model("mm-albef-tiny"), args=training_arguments(tiny_recipe(), tmp_path),
                     grad_cache_chunk_size=2)


def test_init_from_loads_the_trained_weights(tiny_recipe, tmp_path):
    from transformers import TrainerCallback

    from mmzoo.recipe import load_recipe, resolve_model_spec
    from mmzoo.train.model import build_run_model

    class Keep(TrainerCallback):
        def on_train_end(self, args, state, control, model=None, **kwargs):
            self.weights = {k: v.detach().clone() for k, v in model.state_dict().items()}

    keep = Keep()
    first = train(tiny_recipe("training.max_steps=2", "data.eval=null", "evaluation=[]"), progress=False,
                  callbacks=(keep,))
    (tmp_path / "again.yaml").write_text((first.run_dir / "recipe.yaml").read_text())  # the resolved recipe
    recipe = load_recipe(tmp_path / "again.yaml", [f"model={{init_from: {first.run_dir}}}"])
    model = build_run_model(recipe, resolve_model_spec(recipe))
    state = model.state_dict()
    assert state.keys() == keep.weights.keys()
    for name, tensor in keep.weights.items():
        torch.testing.assert_close(state[name], tensor, msg=name)


def test_streaming_data_trains(tiny_recipe):
    result = train(tiny_recipe("data.train.streaming=true", "data.eval.streaming=true", "training.save_steps=null"),
                   progress=False)
    assert result.global_step == 3
    assert result.eval_results["trainer_metrics"]["eval_loss"] > 0
    assert [r["task"] for r in result.eval_results["results"]] == ["retrieval"]
