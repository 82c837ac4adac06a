"""precision: auto — hardware rule, calibration without side effects, the choice reaching TrainingArguments and
the run folder."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mmzoo.train import precision as P
from mmzoo.train.args import training_arguments
from tests.common import free_port

CPUINFO = "processor\t: 0\nflags\t\t: fpu sse2 avx512f {extra}\n"


def test_cpu_flags_are_read_from_cpuinfo():
    assert P.cpu_bf16_flags(CPUINFO.format(extra="avx512_bf16 amx_bf16 amx_tile")) == ["avx512_bf16", "amx_bf16"]
    assert P.cpu_bf16_flags(CPUINFO.format(extra="avx2")) == []


def test_no_fast_bf16_means_fp32_without_calibration(monkeypatch):
    monkeypatch.setattr(P, "cpu_bf16_flags", lambda cpuinfo=None: [])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(P, "calibrate", lambda *a, **k: pytest.fail("must not calibrate"))
    choice = P.choose_precision("auto", torch.nn.Linear(2, 2), {})
    assert choice.precision == "fp32" and "neither AVX512-BF16 nor AMX" in choice.reason


@pytest.mark.parametrize(("fp32", "bf16", "expected"), [(1.0, 0.5, "bf16"), (1.0, 1.2, "fp32"), (1.0, 0.99, "fp32")])
def test_calibration_decides(monkeypatch, fp32, bf16, expected):
    monkeypatch.setattr(P, "cpu_bf16_flags", lambda cpuinfo=None: ["avx512_bf16"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(P, "calibrate", lambda model, batch, steps: {"fp32": [fp32] * steps, "bf16": [bf16] * steps})
    monkeypatch.setattr(P, "calibration_key", lambda model, batch, device: {"model": "m"})
    choice = P.choose_precision("auto", object(), {"x": 1})
    assert choice.precision == expected and choice.speedup_bf16 == pytest.approx(fp32 / bf16)
    assert "calibration: fp32 1.000 s/step" in choice.summary()


def test_explicit_precision_is_kept():
    assert P.choose_precision("fp32").precision == "fp32" and P.choose_precision("bf16").reason == "set in the recipe"


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(8, 8)
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x, return_loss=True):
        return {"loss": self.drop(self.layer(x)).square().mean()}


def test_calibration_leaves_no_trace():
    model = _Tiny().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.layer.weight.grad = torch.ones_like(model.layer.weight)
    batch = {"x": torch.randn(4, 8)}
    torch.manual_seed(0)
    expected_next = torch.rand(3)
    torch.manual_seed(0)
    times = P.calibrate(model, batch, steps=2)
    assert torch.equal(torch.rand(3), expected_next)  # RNG restored: dropout draws did not shift training
    assert len(times["fp32"]) == len(times["bf16"]) == 2 and all(t > 0 for t in times["bf16"])
    assert not model.training and torch.equal(model.layer.weight.grad, torch.ones_like(model.layer.weight))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_auto_resolves_to_trainer_flags(tiny_recipe, tmp_path):
    assert tiny_recipe().training.precision == "auto"  # the default
    recipe = tiny_recipe("training.precision=auto")
    assert not training_arguments(recipe, tmp_path).bf16  # unresolved auto: fp32
    assert training_arguments(recipe, tmp_path, precision="bf16").bf16


def test_run_writes_and_prints_the_choice(tiny_recipe, tmp_path, capsys):
    from mmzoo.train import train

    result = train(tiny_recipe("training.max_steps=1", "training.save_steps=null", "training.precision=auto"),
                   progress=False)
    data = json.loads((result.run_dir / P.PRECISION_FILE).read_text())
    assert data["requested"] == "auto" and data["precision"] in ("fp32", "bf16") and data["reason"]
    if data["hardware_bf16"]:  # this machine can run bf16: the calibration was measured and recorded
        assert set(data["seconds_per_step"]) == {"fp32", "bf16"} and len(data["all_steps"]["fp32"]) == 3
    assert f"precision: auto -> {data['precision']}" in capsys.readouterr().out
    if data["precision"] == "fp32":  # the calibration left no trace: the run is the fp32 run, bit for bit
        fp32 = train(tiny_recipe("training.max_steps=1", "training.save_steps=null", "training.precision=fp32",
                                 f"training.output_dir={tmp_path / 'fp32'}"), progress=False)
        logged = [{k: v for k, v in e.items() if k.startswith("loss") or k == "grad_norm"}
                  for e in map(json.loads, (result.run_dir / "training_log.jsonl").read_text().splitlines())]
        reference = [{k: v for k, v in e.items() if k.startswith("loss") or k == "grad_norm"}
                     for e in map(json.loads, (fp32.run_dir / "training_log.jsonl").read_text().splitlines())]
        assert logged == reference and logged[0]["loss"] > 0
    if data["hardware_bf16"]:  # a second run of the recipe keeps the machine's measurement for this model
        again = train(tiny_recipe("training.max_steps=1", "training.save_steps=null", "training.precision=auto",
                                  f"training.output_dir={tmp_path / 'again'}"), progress=False)
        kept = json.loads((again.run_dir / P.PRECISION_FILE).read_text())
        assert kept["precision"] == data["precision"] and kept["all_steps"] == data["all_steps"]
        assert "reused" in kept["reason"] and kept["cached_from"]


def test_the_calibration_steps_the_model_as_training_does(monkeypatch):
    """Forward, backward and an optimizer step, on a copy: the timings include the (precision-independent)
    optimizer, whose weight in a small model's step is what makes bf16 a loss there."""
    model = _Tiny()
    ran, stepped = [], []
    model.layer.register_forward_hook(lambda module, args, out: ran.append(module is model.layer))
    step = torch.optim.AdamW.step
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, *a, **k: stepped.append(1) or step(self, *a, **k))
    P.calibrate(model, {"x": torch.randn(4, 8)}, steps=1)
    assert ran == [False] * 4 and len(stepped) == 4  # warm-up + 1 step per precision, all on the copy


def _bf16_cpu(monkeypatch, timings):
    monkeypatch.setattr(P, "cpu_bf16_flags", lambda cpuinfo=None: ["avx512_bf16"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    calls = []

    def calibrate(model, batch, steps):
        calls.append(batch["x"].shape)
        return timings

    monkeypatch.setattr(P, "calibrate", calibrate)
    return calls


def test_a_measurement_is_cached_per_model_batch_shape_and_hardware(monkeypatch, tmp_path):
    calls = _bf16_cpu(monkeypatch, {"fp32": [1.0, 1.0, 1.0], "bf16": [0.5, 0.6, 0.5]})
    model, batch = _Tiny(), {"x": torch.randn(4, 8)}
    first = P.choose_precision("auto", model, batch, cache_dir=tmp_path)
    assert first.precision == "bf16" and first.key["batch"] == {"x": [[4, 8], "float32"]} and first.measured_at
    # the same key on a loaded machine, with other threads, in a 2-process run: no new measurement, same choice
    monkeypatch.setenv("WORLD_SIZE", "2")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        again = P.choose_precision("auto", _Tiny(), {"x": torch.zeros(4, 8)}, cache_dir=tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert len(calls) == 1 and again.precision == "bf16" and "reused" in again.reason
    assert again.cached_from.startswith(str(tmp_path)) and again.cached_from in again.summary()
    assert again.seconds_per_step == first.seconds_per_step
    P.choose_precision("auto", model, {"x": torch.randn(8, 8)}, cache_dir=tmp_path)  # another batch shape
    tokens = {"x": torch.randn(4, 8), "input_ids": torch.ones(4, 7, dtype=torch.long)}
    P.choose_precision("auto", model, tokens, cache_dir=tmp_path)  # a new input
    longer = P.choose_precision("auto", model, {**tokens, "input_ids": torch.ones(4, 9, dtype=torch.long)},
                                cache_dir=tmp_path)
    assert len(calls) == 3 and "reused" in longer.reason  # the texts' padded length is the data's, not the model's
    wider = torch.nn.Module()
    wider.config = type("Config", (), {"to_dict": lambda self: {"hidden_size": 128}})()
    wider.forward = model.forward
    P.choose_precision("auto", wider, batch, cache_dir=tmp_path)  # another model
    assert len(calls) == 4


def test_the_paired_ratio_ignores_load_that_drifts_between_pairs():
    # every pair 2x faster in bf16, while the machine's load grows 5-fold across the pairs
    times = {"fp32": [1.0, 2.0, 5.0], "bf16": [0.5, 1.0, 2.5]}
    assert P.bf16_speedup(times) == pytest.approx(2.0)


def _rank_choice(rank: int, port: int, out: str) -> None:
    from datetime import timedelta

    import mmzoo

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=300))  # a hang fails
    try:
        # a real contrastive model calibrated on rank 0 alone: its loss must not wait for rank 1 in a gather
        torch.manual_seed(0)
        model = mmzoo.build_model("mm-clip-tiny")
        batch = {"input_ids": torch.randint(5, 100, (4, 8)), "attention_mask": torch.ones(4, 8, dtype=torch.long),
                 "pixel_values": torch.randn(4, 3, 32, 32)}
        measured = P.shared_choice(lambda: P.PrecisionChoice("fp32", "auto", "timed", "cpu", True,
                                                             all_steps=P.calibrate(model, batch, steps=1)))
        def decide():
            if rank != 0:
                raise AssertionError("only rank 0 may calibrate")
            return P.PrecisionChoice("bf16", "auto", "measured on rank 0", "cpu", True, {"fp32": 2.0, "bf16": 1.0})

        choice = P.shared_choice(decide)

        def failing():
            raise ValueError("no batch")

        try:
            P.shared_choice(failing if rank == 0 else decide)
            error = None
        except Exception as err:  # noqa: BLE001
            error = f"{type(err).__name__}: {err}"
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump({"choice": choice.__dict__, "error": error, "measured": measured.all_steps}, f)
    finally:
        dist.destroy_process_group()


def test_rank_zero_decides_for_every_rank(tmp_path):
    """2 gloo processes: rank 1 receives rank 0's choice (its own decide would fail), a calibration that fails on
    rank 0 fails on rank 1 too instead of leaving it waiting, and rank 0 calibrates a contrastive model alone
    (its loss computed without the cross-rank gather, which would wait for rank 1 forever)."""
    # spawn, not fork: a child forked from a pytest process whose OpenMP pool already ran (earlier tests, 2
    # threads) can hang in its first parallel kernel
    mp.start_processes(_rank_choice, args=(free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert results[0]["choice"] == results[1]["choice"]
    assert results[1]["choice"]["precision"] == "bf16" and results[1]["choice"]["reason"] == "measured on rank 0"
    assert results[0]["error"] == "ValueError: no batch"
    assert "calibration failed on rank 0 (ValueError: no batch)" in results[1]["error"]
    assert results[0]["measured"] == results[1]["measured"] and len(results[1]["measured"]["bf16"]) == 1


def test_bf16_on_cpu_calibrates_and_trains_with_eager_attention(monkeypatch):
    """CPU SDPA's bf16 backward is the slow part of a bf16 step: the bf16 steps of the calibration, and training
    in bf16, use eager attention; fp32 keeps the model's own (SDPA); nothing changes on the model itself."""
    import mmzoo

    assert P.attention_for("bf16", "cpu") == "eager"
    assert P.attention_for("fp32", "cpu") is None and P.attention_for("bf16", "cuda") is None
    model = mmzoo.build_model("mm-clip-tiny")
    processor = mmzoo.build_processor("mm-clip-tiny")
    from tests.common import batch

    seen = []
    forward = type(model).forward

    def record(self, *args, **kwargs):
        seen.append((torch.is_autocast_enabled("cpu"), self.config._attn_implementation,
                     self.text_tower.model.config._attn_implementation))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "forward", record)
    P.calibrate(model, dict(batch(processor, 4)), steps=1)
    assert set(seen) == {(False, "sdpa", "sdpa"), (True, "eager", "eager")}
    assert model.config._attn_implementation == "sdpa"  # the calibration's copy switched, not the model
    assert P.use_precision_attention(model, "fp32") is None and model.config._attn_implementation == "sdpa"
    assert P.use_precision_attention(model, "bf16") == "eager"
    assert model.text_tower.model.config._attn_implementation == "eager"
    assert model.vision_tower.model.config._attn_implementation == "eager"
    assert P.use_precision_attention(_Tiny(), "bf16") is None  # a module without an attention setting
