"""Two CPU processes (gloo) evaluate every task with each rank on its own shard of the rows, and get exactly the
single-process metrics (retrieval, zero-shot, ITM, VQA classification and generation, captioning)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import mmzoo
from mmzoo.builder import build_config
from mmzoo.data import BuiltinSourceSpec, load_source
from mmzoo.eval import run_evaluation
from mmzoo.modeling import MmzooForVisualQuestionAnswering
from tests.common import free_port as _free_port
from tests.objectives.helpers import tiny_spec

WORLD = 2
SHAPES = BuiltinSourceSpec(name="shapes", split="test", image_size=32, params={"num_samples": 15})  # odd: padding
DIGITS = BuiltinSourceSpec(name="digits", split="test", params={"num_samples": 9})


def _cases():
    """(name, model, processor, tasks); built once in the parent, so the forked ranks hold the same weights."""
    torch.manual_seed(0)
    clip = mmzoo.build_model("mm-clip-tiny").eval(), mmzoo.build_processor("mm-clip-tiny")
    captioner_spec = tiny_spec("cross_attention", ["contrastive", "captioning"])
    captioner = mmzoo.build_model(captioner_spec).eval(), mmzoo.build_processor(captioner_spec)
    albef = mmzoo.build_model("mm-albef-tiny").eval(), mmzoo.build_processor("mm-albef-tiny")
    vqa_spec = tiny_spec("cross_attention", ["contrastive", "itm"])
    config = build_config(vqa_spec)
    config.answer_vocab = ["yes", "no", "red", "3", "circle"]
    vqa = MmzooForVisualQuestionAnswering(config).eval(), mmzoo.build_processor(vqa_spec)
    zero_shot = {"task": "zero_shot_classification", "data": DIGITS.model_dump(), "batch_size": 4,
                 "class_names": [str(i) for i in range(10)]}
    return [
        ("clip", *clip, [{"task": "retrieval", "batch_size": 4}, zero_shot]),
        ("captioner", *captioner, [{"task": "captioning", "max_new_tokens": 3, "batch_size": 4},
                                   {"task": "vqa", "max_new_tokens": 1, "batch_size": 6}]),
        ("albef", *albef, [{"task": "itm", "batch_size": 4}]),
        ("vqa", *vqa, [{"task": "vqa", "batch_size": 7}]),
    ]


def _metrics(results) -> dict:
    return {r["task"]: r["metrics"] for r in results["results"]}


def _worker(rank: int, port: int, out_dir: str, cases, shapes) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=120))
    try:
        out = {}
        for name, model, processor, tasks in cases:
            seen = []
            hook = model.vision_tower.register_forward_hook(lambda m, a, o: seen.append(o.embeds.shape[0]))
            out[name] = _metrics(run_evaluation(model, processor, tasks, shapes))
            hook.remove()
            out[f"{name}/images_seen"] = sum(seen)
        torch.save(out, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    threads, old = torch.get_num_threads(), os.environ.get("MMZOO_CACHE")
    torch.set_num_threads(1)
    os.environ["MMZOO_CACHE"] = str(tmp_path_factory.mktemp("mmzoo_cache"))
    try:
        shapes = load_source(SHAPES)
        load_source(DIGITS)  # generated once, before the ranks read it
        cases = _cases()
        single = {name: _metrics(run_evaluation(model, processor, tasks, shapes))
                  for name, model, processor, tasks in cases}
        out_dir = tmp_path_factory.mktemp("dist_eval")
        mp.start_processes(_worker, args=(_free_port(), str(out_dir), cases, shapes), nprocs=WORLD,
                           start_method="fork")
        yield single, [torch.load(out_dir / f"rank{r}.pt") for r in range(WORLD)]
    finally:
        torch.set_num_threads(threads)
        os.environ.pop("MMZOO_CACHE") if old is None else os.environ.__setitem__("MMZOO_CACHE", old)


def test_every_rank_gets_the_single_process_metrics(runs):
    single, ranks = runs
    assert set(single) == {"clip", "captioner", "albef", "vqa"}
    for rank, out in enumerate(ranks):
        for name, tasks in single.items():
            assert out[name].keys() == tasks.keys(), (rank, name)
            for task, metrics in tasks.items():
                assert out[name][task] == pytest.approx(metrics, rel=1e-6, abs=1e-9), (rank, name, task)


def test_each_rank_embeds_only_its_shard(runs):
    _, ranks = runs
    # clip: 15 shapes images for retrieval + 9 digits for zero-shot, in ceil(n / 2)-row shards
    assert [out["clip/images_seen"] for out in ranks] == [8 + 5, 8 + 5]
