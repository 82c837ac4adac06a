"""Two CPU processes (gloo) reproduce the single-process losses and gradients on the global batch.

Convention under test (see ``mmzoo/losses/_distributed.py``): the mean over ranks of the per-rank loss is
the global loss, a rank's local leaf gradient is ``world_size`` times the global gradient of its rows, and
DDP-averaged parameter gradients equal the single-process gradients.
"""

from __future__ import annotations

import copy
import os
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mmzoo.losses._distributed import equal_batch_sizes, gather_with_grad, world_info
from mmzoo.losses.functional import contrastive_loss, sigmoid_loss
from mmzoo.losses.grad_cache import grad_cache_step
from tests.common import free_port as _free_port

WORLD = 2
GLOBAL_BATCH = 8
SPLITS = {"equal": [4, 4], "uneven": [3, 5]}
LOSSES = {
    "clip": lambda a, b, s, bias, gather: contrastive_loss(a, b, s, gather=gather),
    "clip_smooth": lambda a, b, s, bias, gather: contrastive_loss(a, b, s, label_smoothing=0.1, gather=gather),
    "siglip": lambda a, b, s, bias, gather: sigmoid_loss(a, b, s, bias, gather=gather),
    "siglip_ring": lambda a, b, s, bias, gather: sigmoid_loss(a, b, s, bias, gather=gather, exchange="ring"),
}
EQUAL_ONLY = {"siglip_ring"}  # the ring exchange needs the same batch on every rank


def _rows(split: str, rank: int) -> slice:
    sizes = SPLITS[split]
    return slice(sum(sizes[:rank]), sum(sizes[: rank + 1]))


def _leaf(x: torch.Tensor) -> torch.Tensor:
    return x.detach().clone().requires_grad_(True)


def _mean_over_ranks(x: torch.Tensor) -> torch.Tensor:
    x = x.detach().clone()
    dist.all_reduce(x)
    return x / WORLD


class TwoTowerLoss(nn.Module):
    def __init__(self, loss: str) -> None:
        super().__init__()
        self.image = nn.Linear(5, 4)
        self.text = nn.Linear(5, 4)
        self.logit_scale = nn.Parameter(torch.tensor(1.2))
        self.logit_bias = nn.Parameter(torch.tensor(-0.5)) if loss == "siglip" else None
        self.loss = loss

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image(x), dim=-1)

    def encode_text(self, y: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text(y), dim=-1)

    def loss_fn(self, img: torch.Tensor, txt: torch.Tensor, gather: bool = True) -> torch.Tensor:
        return LOSSES[self.loss](img, txt, self.logit_scale.exp(), self.logit_bias, gather)[0]

    def forward(self, x: torch.Tensor, y: torch.Tensor, gather: bool = True, embeds_only: bool = False):
        if embeds_only:  # the last chunk of the gradient cache: one DDP forward over both towers
            return self.encode_image(x), self.encode_text(y)
        return self.loss_fn(self.encode_image(x), self.encode_text(y), gather)


def _check_gather(rank: int, out: dict) -> None:
    sizes = SPLITS["uneven"]
    full = torch.arange(sum(sizes) * 2, dtype=torch.float64).reshape(-1, 2)
    local = _leaf(full[_rows("uneven", rank)])
    gathered = gather_with_grad(local)
    ((rank + 1.0) * gathered).sum().backward()  # rank r weighs every gathered entry by r+1
    out["gather/forward"] = (gathered.detach(), full)
    out["gather/grad"] = (local.grad, torch.full_like(local, sum(r + 1.0 for r in range(WORLD))))
    out["world_info"] = (torch.tensor(world_info()), torch.tensor([rank, WORLD]))


def _check_embedding_grads(rank: int, out: dict) -> None:
    g = torch.Generator().manual_seed(0)
    img = F.normalize(torch.randn(GLOBAL_BATCH, 6, generator=g, dtype=torch.float64), dim=-1)
    txt = F.normalize(torch.randn(GLOBAL_BATCH, 6, generator=g, dtype=torch.float64), dim=-1)
    for name, fn in LOSSES.items():
        ref_img, ref_txt = _leaf(img), _leaf(txt)
        ref_scale = _leaf(torch.tensor(3.0, dtype=torch.float64))
        ref_bias = _leaf(torch.tensor(-1.0, dtype=torch.float64))
        ref_loss, ref_lpi, ref_lpt = fn(ref_img, ref_txt, ref_scale, ref_bias, False)
        ref_loss.backward()
        for split in SPLITS:
            if split != "equal" and name in EQUAL_ONLY:
                continue
            rows, key = _rows(split, rank), f"{name}/{split}"
            loc_img, loc_txt = _leaf(img[rows]), _leaf(txt[rows])
            scale, bias = _leaf(ref_scale), _leaf(ref_bias)
            with equal_batch_sizes(split == "equal"):  # equal batches: no size exchange
                loss, lpi, lpt = fn(loc_img, loc_txt, scale, bias, True)
            loss.backward()
            out[f"{key}/loss"] = (_mean_over_ranks(loss), ref_loss.detach())
            if name in EQUAL_ONLY:  # the ring returns the local block of the logits only
                out[f"{key}/logits_per_image"] = (lpi.detach(), ref_lpi.detach()[rows, rows])
            else:
                out[f"{key}/logits_per_image"] = (lpi.detach(), ref_lpi.detach()[rows])
                out[f"{key}/logits_per_text"] = (lpt.detach(), ref_lpt.detach()[rows])
            out[f"{key}/grad_image"] = (loc_img.grad / WORLD, ref_img.grad[rows])
            out[f"{key}/grad_text"] = (loc_txt.grad / WORLD, ref_txt.grad[rows])
            out[f"{key}/grad_scale"] = (_mean_over_ranks(scale.grad), ref_scale.grad)
            if name == "siglip":
                out[f"{key}/grad_bias"] = (_mean_over_ranks(bias.grad), ref_bias.grad)


def _check_ddp(rank: int, out: dict) -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(GLOBAL_BATCH, 5, generator=g, dtype=torch.float64)
    y = torch.randn(GLOBAL_BATCH, 5, generator=g, dtype=torch.float64)
    for loss_name in ("clip", "siglip"):
        torch.manual_seed(2)
        ref = TwoTowerLoss(loss_name).double()
        ref(x, y, gather=False).backward()
        expected = {n: p.grad for n, p in ref.named_parameters()}
        for split in SPLITS:
            rows = _rows(split, rank)
            ddp = DistributedDataParallel(copy.deepcopy(ref))
            ddp.zero_grad(set_to_none=True)
            ddp(x[rows], y[rows]).backward()
            for n, p in ddp.module.named_parameters():
                out[f"ddp/{loss_name}/{split}/{n}"] = (p.grad, expected[n])

            # the last pair of chunks goes through the DDP forward: DDP's own buckets average every gradient
            cached = DistributedDataParallel(copy.deepcopy(ref))
            cached.zero_grad(set_to_none=True)
            module = cached.module
            grad_cache_step(module.encode_image, module.encode_text, x[rows], y[rows], module.loss_fn, 2,
                            loss_params=[p for n, p in module.named_parameters() if n.startswith("logit_")],
                            encode_last=lambda a, b: cached(a, b, embeds_only=True), no_sync=cached.no_sync)
            for n, p in module.named_parameters():
                out[f"grad_cache_ddp/{loss_name}/{split}/{n}"] = (p.grad, expected[n])


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD, timeout=timedelta(seconds=60))
    try:
        out: dict = {}
        _check_gather(rank, out)
        _check_embedding_grads(rank, out)
        _check_ddp(rank, out)
        torch.save(out, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> list[dict]:
    out_dir = tmp_path_factory.mktemp("dist")
    # fork, not spawn: spawned children would re-import mmzoo (transformers et al.), ~10 s each on 2 cores.
    mp.start_processes(_worker, args=(_free_port(), str(out_dir)), nprocs=WORLD, start_method="fork")
    return [torch.load(out_dir / f"rank{r}.pt") for r in range(WORLD)]


def test_distributed_matches_single_process(results):
    names = set(results[0])
    assert names == set(results[1])
    for prefix in ("gather/", "clip/", "clip_smooth/", "siglip/", "siglip_ring/", "ddp/", "grad_cache_ddp/"):
        assert any(n.startswith(prefix) for n in names), prefix
    for rank, out in enumerate(results):
        for name, (got, expected) in sorted(out.items()):
            torch.testing.assert_close(got, expected, atol=1e-9, rtol=0, msg=f"rank {rank}: {name}")
