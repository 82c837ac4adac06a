"""Streamed training data across ranks: each rank reads its own part (no row on two ranks in one pass), a
seeded shuffle across shards, endless passes (equal step counts), and deterministic slices of a stream."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile

import datasets
import pytest
from PIL import Image

from mmzoo.data.sources import stream_slice
from mmzoo.train.data import RankStream

from .conftest import TINY, read_log

SHARDS = [10, 6, 6, 2]  # uneven shards: the ranks get different amounts of data


def _rows(shards):
    for shard in shards:
        for i in range(SHARDS[shard]):
            yield {"image": None, "captions": [f"{shard}-{i}"]}


def _stream():
    return datasets.IterableDataset.from_generator(_rows, gen_kwargs={"shards": list(range(len(SHARDS)))})


def _ids(rows):
    return [row["captions"][0] for row in rows]


@pytest.mark.parametrize("world_size", [2, 3])  # 4 shards: whole shards per rank (2) or every 3rd row (3)
def test_each_rank_reads_its_own_rows_once_per_pass(world_size):
    stream = _stream()
    for epoch in (0, 1):
        parts = [_ids(RankStream(stream, seed=0, buffer_size=8, rank=r, world_size=world_size).passes(epoch))
                 for r in range(world_size)]
        everything = [i for part in parts for i in part]
        assert len(everything) == len(set(everything)) == sum(SHARDS)  # no row on two ranks, none lost
        assert all(len(part) == len(set(part)) for part in parts)


def test_the_shuffle_is_seeded_and_mixes_shards():
    one = RankStream(_stream(), seed=0, buffer_size=8, rank=0, world_size=1)
    first = _ids(one.passes(0))
    assert first == _ids(RankStream(_stream(), seed=0, buffer_size=8, rank=0, world_size=1).passes(0))
    assert first != _ids(one.passes(1))  # each pass is shuffled again
    assert first != _ids(RankStream(_stream(), seed=1, buffer_size=8, rank=0, world_size=1).passes(0))
    in_order = _ids(RankStream(_stream(), seed=0, buffer_size=0, rank=0, world_size=1).passes(0))
    assert first != in_order and sorted(first) == sorted(in_order)
    assert len({row.split("-")[0] for row in first[:8]}) > 1  # a batch is not 8 rows of one shard


def test_the_stream_repeats_so_every_rank_fills_its_batches():
    rank1 = RankStream(_stream(), seed=0, buffer_size=4, rank=1, world_size=2)
    per_pass = len(_ids(rank1.passes(0)))
    rows = []
    for row in rank1:  # goes on past the end of a pass: the run ends at max_steps
        rows.append(row)
        if len(rows) == 3 * per_pass:
            break
    assert len(rows) == 3 * per_pass


def _json_stream(tmp_path, n=200):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"image": f"img{i}.png", "text": f"row {i}"}) + "\n" for i in range(n)))
    return datasets.load_dataset("json", data_files={"train": str(path)}, split="train", streaming=True)


def test_streamed_slices_are_deterministic_and_complementary(tmp_path):
    stream = _json_stream(tmp_path)
    head = [r["text"] for r in stream_slice(stream, "train[:10%]")]
    tail = [r["text"] for r in stream_slice(stream, "train[10%:]")]
    assert 5 <= len(head) <= 40 and not set(head) & set(tail) and len(head) + len(tail) == 200
    shuffled = stream.shuffle(seed=3, buffer_size=50)  # membership does not depend on the reading order
    assert sorted(r["text"] for r in stream_slice(shuffled, "train[:10%]")) == sorted(head)
    counted = [r["text"] for r in stream_slice(stream, "train[:160]")]
    rest = [r["text"] for r in stream_slice(stream, "train[160:]")]
    assert counted == [f"row {i}" for i in range(160)] and rest == [f"row {i}" for i in range(160, 200)]
    assert [r["text"] for r in stream_slice(stream, "train[20:30]")] == [f"row {i}" for i in range(20, 30)]
    from mmzoo.data.errors import DataError

    for bad in ("train[-5:]", "train[:10%:2]", "train[5:10%]"):
        with pytest.raises(DataError, match="train"):
            stream_slice(stream, bad)


def test_a_sliced_split_loads_when_streaming(tmp_path):
    from mmzoo.data import load_source
    from mmzoo.data.specs import JsonSourceSpec

    path = tmp_path / "rows.jsonl"
    for i in range(30):
        Image.new("RGB", (8, 8), (i * 8, 0, 0)).save(tmp_path / f"img{i}.png")
    path.write_text("".join(json.dumps({"image": f"img{i}.png", "text": f"row {i}"}) + "\n" for i in range(30)))
    held_out = load_source(JsonSourceSpec(files=str(path), split="train[:12]", streaming=True), tmp_path)
    assert [r["captions"] for r in held_out] == [[f"row {i}"] for i in range(12)]


def _write_shards(folder, sizes):
    folder.mkdir()
    n = 0
    for s, size in enumerate(sizes):
        with tarfile.open(folder / f"{s:03d}.tar", "w") as tar:
            for _ in range(size):
                buffer = io.BytesIO()
                Image.new("RGB", (32, 32), ((37 * n) % 256, (91 * n) % 256, 120)).save(buffer, format="PNG")
                for name, data in ((f"s{n:04d}.png", buffer.getvalue()), (f"s{n:04d}.txt", f"shape {n}".encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                n += 1


@pytest.mark.slow
def test_webdataset_stream_trains_under_torchrun(tmp_path):
    """4 uneven shards over 2 ranks, per-rank reading, equal steps, tensor-only batches (no dispatch crash)."""
    _write_shards(tmp_path / "shards", [12, 4, 8, 4])
    run = tmp_path / "run"
    sets = [f"data.train={{source: webdataset, shards: {tmp_path}/shards/*.tar, streaming: true, "
            "max_length: 32, shuffle_buffer: 16}", "data.eval=null", "evaluation=[]", "training.max_steps=4",
            "training.per_device_train_batch_size=4", "training.save_steps=null", f"training.output_dir={run}"]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "mmzoo.cli",
         "train", str(TINY / "clip-coco.yaml"), *(f"--set={s}" for s in sets)],
        env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = [e["step"] for e in read_log(run) if "loss" in e]
    assert steps == [1, 2, 3, 4]
    assert (run / "model.safetensors").is_file()
