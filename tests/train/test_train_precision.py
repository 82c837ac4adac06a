"""precision: auto — hardware rule, calibration without side effects, the choice reaching TrainingArguments and
the run folder."""

from __future__ import annotations

import json

import pytest
import torch

from mmzoo.train import precision as P
from mmzoo.train.args import training_arguments

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
    assert tiny_recipe().training.precision == "fp32"  # the default: reproducible whatever the timing
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
