"""FSDP2 on two CPU processes (gloo): ``fully_shard`` applied with mmzoo's wrapping policy the way accelerate
applies it (every module whose class is in ``model._no_split_modules``, then the root) trains with the DDP
losses, the gathered full state dict reloads through ``AutoModel`` with the same outputs, and the retrieval
evaluation runs on the sharded model on every rank without a hang (accelerate cannot apply FSDP on CPU, so this
test wraps by hand what ``accelerate launch --config_file recipes/engines/accelerate_fsdp2.yaml`` does on GPUs)."""

from __future__ import annotations

import copy
import os
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image

import mmzoo
from tests.common import free_port as _free_port

WORLD, STEPS, PER_RANK = 2, 5, 4
PRESETS = ("mm-clip-tiny", "mm-siglip-tiny", "mm-albef-tiny")


def _model(preset: str):
    spec = mmzoo.load_spec(preset).to_dict()
    for enc in spec["encoders"]:  # no dropout: the two engines must draw nothing different
        enc["config"].update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    return mmzoo.build_model(spec), mmzoo.build_processor(spec)


def _batches(processor):
    """STEPS global batches of WORLD * PER_RANK pairs (distinct colours and captions)."""
    from mmzoo.train.data import TrainCollator

    collate = TrainCollator(processor, max_length=16)
    words = ["red", "green", "blue", "circle", "square", "small", "large", "top"]
    out = []
    for step in range(STEPS):
        rows = [{"image": Image.new("RGB", (32, 32), ((40 * i + 9 * step) % 256, (70 * i) % 256, 30 * step)),
                 "captions": [f"{words[i % 8]} {words[(i + step) % 8]} {i}"]} for i in range(WORLD * PER_RANK)]
        out.append(collate(rows))
    return out


def apply_fsdp2(model):
    """mmzoo's wrapping policy, as accelerate's ``fsdp2_prepare_model`` applies it (TRANSFORMER_BASED_WRAP)."""
    from torch.distributed.fsdp import fully_shard

    names = set(model._no_split_modules or ())
    wrapped = [m for m in model.modules() if type(m).__name__ in names]
    for module in wrapped:
        fully_shard(module)
    fully_shard(model)
    return len(wrapped)


def _train(module, batches, rank):
    torch.manual_seed(100 + rank)  # MLM masks / ITM negatives: the same per-rank draws for both engines
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    rows = slice(rank * PER_RANK, (rank + 1) * PER_RANK)
    losses = []
    for batch in batches:
        optimizer.zero_grad(set_to_none=True)
        loss = module(**{k: v[rows] for k, v in batch.items()}, return_loss=True).loss
        loss.backward()
        optimizer.step()
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        losses.append(mean.item() / WORLD)
    return losses


def _worker(rank: int, port: int, out_dir: str, shapes, presets) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.nn.parallel import DistributedDataParallel

    from mmzoo.eval import run_evaluation

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=120))
    out = {}
    try:
        for preset in presets:
            model, processor = _model(preset)
            batches = _batches(processor)
            reference = copy.deepcopy(model)
            out[f"{preset}/ddp"] = _train(DistributedDataParallel(reference), batches, rank)
            sharded = copy.deepcopy(model)
            out[f"{preset}/wrapped"] = apply_fsdp2(sharded)
            out[f"{preset}/fsdp2"] = _train(sharded, batches, rank)
            tasks = [{"task": "retrieval", "batch_size": 3}]
            out[f"{preset}/eval_fsdp2"] = run_evaluation(sharded.eval(), processor, tasks, shapes)["results"][0]["metrics"]
            out[f"{preset}/eval_ddp"] = run_evaluation(reference.eval(), processor, tasks, shapes)["results"][0]["metrics"]
            state = get_model_state_dict(sharded, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            if rank == 0:
                plain, _ = _model(preset)
                plain.load_state_dict(state, strict=True)
                plain.save_pretrained(Path(out_dir) / preset)
                reference.save_pretrained(Path(out_dir) / f"{preset}-ddp")
            dist.barrier()
        torch.save(out, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _launch(tmp_path_factory, presets):
    from mmzoo.data import BuiltinSourceSpec, load_source

    threads, old = torch.get_num_threads(), os.environ.get("MMZOO_CACHE")
    torch.set_num_threads(1)
    os.environ["MMZOO_CACHE"] = str(tmp_path_factory.mktemp("mmzoo_cache"))
    try:
        shapes = load_source(BuiltinSourceSpec(name="shapes", split="test", image_size=32,
                                               params={"num_samples": 9}))
        out_dir = tmp_path_factory.mktemp("fsdp2")
        mp.start_processes(_worker, args=(_free_port(), str(out_dir), shapes, presets), nprocs=WORLD,
                           start_method="fork")
        return out_dir, [torch.load(out_dir / f"rank{r}.pt") for r in range(WORLD)]
    finally:
        torch.set_num_threads(threads)
        os.environ.pop("MMZOO_CACHE") if old is None else os.environ.__setitem__("MMZOO_CACHE", old)


_RUNS: dict = {}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(out_dir, per-rank results) of one two-process launch per preset group, run when first asked for."""

    def get(preset):
        group = FAST if preset in FAST else PRESETS
        if group not in _RUNS:
            _RUNS[group] = _launch(tmp_path_factory, group)
        return _RUNS[group]

    yield get
    _RUNS.clear()


FAST = ("mm-clip-tiny",)  # the default suite; the sigmoid and fused presets run with -m slow
CASES = [pytest.param(p, marks=() if p in FAST else pytest.mark.slow) for p in PRESETS]


@pytest.mark.parametrize("preset", CASES)
def test_fsdp2_trains_with_the_ddp_losses(runs, preset):
    _, ranks = runs(preset)
    out = ranks[0]
    assert out[f"{preset}/wrapped"] >= 4  # the towers' layers and embeddings (and fusion layers) are units
    assert out[f"{preset}/fsdp2"] == pytest.approx(out[f"{preset}/ddp"], rel=1e-5)
    assert out[f"{preset}/ddp"][-1] != out[f"{preset}/ddp"][0]  # it trained
    for rank_out in ranks:  # the evaluation ran on the sharded model on both ranks, with the DDP results
        assert rank_out[f"{preset}/eval_fsdp2"] == pytest.approx(rank_out[f"{preset}/eval_ddp"], abs=1e-9)


@pytest.mark.parametrize("preset", CASES)
def test_gathered_state_dict_reloads_with_equal_outputs(runs, preset):
    from transformers import AutoModel

    out_dir, _ = runs(preset)
    reloaded = AutoModel.from_pretrained(out_dir / preset).eval()
    trained = AutoModel.from_pretrained(out_dir / f"{preset}-ddp").eval()
    _, processor = _model(preset)
    batch = _batches(processor)[0]
    with torch.no_grad():
        got, expected = reloaded(**batch), trained(**batch)
    for key in ("text_embeds", "image_embeds", "logits_per_image"):
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5, msg=key)
