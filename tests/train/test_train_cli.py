"""`mmzoo train`: --dry-run output, and errors that name the key or the fix."""

from __future__ import annotations

import re

from mmzoo.cli import main

from .conftest import TINY


def test_dry_run_prints_recipe_parameters_and_flops(capsys, tmp_path):
    import mmzoo

    code = main(["train", str(TINY / "lit-minilm-digits.yaml"), "--dry-run", f"--set=training.output_dir={tmp_path}"])
    out = capsys.readouterr().out
    assert code == 0
    assert "name: lit-minilm-digits-tiny" in out and "encoders:" in out  # the resolved recipe, full spec
    model = mmzoo.build_model("mm-lit-tiny")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert f"{trainable:,} trainable, {frozen:,} frozen" in out and frozen > 0
    flops = re.search(r"FLOPs per training sample: ([\d.]+) (\w+) \(forward ([\d.]+) (\w+) measured", out)
    assert flops, out
    assert "x3 for forward + backward" in out
    assert "whole run: ~" in out
    assert not (tmp_path / "model.safetensors").exists()  # nothing trained or written


def test_dry_run_counts_scale_with_the_model(capsys):
    main(["train", str(TINY / "clip-coco.yaml"), "--dry-run"])
    small = capsys.readouterr().out
    main(["train", str(TINY / "clip-coco.yaml"), "--dry-run",
          "--set=model.overrides.encoders.image.config.num_hidden_layers=4"])
    large = capsys.readouterr().out

    def forward(text):
        value, unit = re.search(r"\(forward ([\d.]+) (\w+)", text).groups()
        return float(value) * {"MFLOP": 1e6, "GFLOP": 1e9, "TFLOP": 1e12}[unit]

    assert forward(large) > forward(small)


def test_dry_run_global_batch_counts_the_processes(capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # under torchrun
    main(["train", str(TINY / "clip-coco.yaml"), "--dry-run", "--set=training.gradient_accumulation_steps=3"])
    assert "3 steps x global batch 48 over 2 processes" in capsys.readouterr().out  # 8 x 3 x 2
    main(["train", str(TINY / "clip-coco.yaml"), "--dry-run", "--world-size", "4"])
    assert "3 steps x global batch 32 over 4 processes" in capsys.readouterr().out


def test_bad_set_key_is_named(capsys):
    code = main(["train", str(TINY / "clip-coco.yaml"), "--set", "training.learning_rat=1e-3", "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2
    assert "clip-coco.yaml → training.learning_rat: unknown key" in err


def test_resume_without_checkpoint_says_so(capsys, tmp_path):
    code = main(["train", str(TINY / "clip-coco.yaml"), f"--set=training.output_dir={tmp_path}", "--resume"])
    assert code == 2
    assert f"--resume: no checkpoint-* folder in {tmp_path}" in capsys.readouterr().err
