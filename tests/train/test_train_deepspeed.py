"""DeepSpeed ZeRO-2 / ZeRO-3 through ``mmzoo train`` and the Trainer under ``torchrun`` (2 CPU processes; the
configs shipped in ``recipes/engines/``): the DDP losses over 5 steps, the retrieval evaluation inside the run,
and a full ``model.safetensors`` (ZeRO-3 gathers on save) that ``AutoModel`` reloads with the DDP model's
outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from .conftest import REPO, TINY, read_log

deepspeed = pytest.importorskip("deepspeed", reason="the optional `deepspeed` extra is not installed")

ENGINES = REPO / "recipes" / "engines"
SETTINGS = [
    "model.overrides.encoders.text.config.hidden_dropout_prob=0.0",
    "model.overrides.encoders.text.config.attention_probs_dropout_prob=0.0",
    "training.max_steps=5", "training.save_steps=null", "training.per_device_train_batch_size=4",
    "training.precision=fp32",  # the engines are compared at different per-device batches: one precision
]
MODELS = {  # tiny twin recipe and overrides per preset
    "mm-clip-tiny": ("clip-coco.yaml", []),
    "mm-siglip-tiny": ("clip-coco.yaml", ["model.preset=mm-siglip-tiny"]),
    "mm-albef-tiny": ("albef-coco.yaml", ["evaluation=[{task: retrieval}]"]),
}


def _torchrun(out, preset: str, engine: str | None):
    recipe, extra = MODELS[preset]
    sets = [*SETTINGS, *extra, f"training.output_dir={out}"]
    if engine:
        sets.append(f"training.trainer_args={{deepspeed: {ENGINES / f'deepspeed_{engine}.json'}}}")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "mmzoo.cli",
         "train", str(TINY / recipe), *(f"--set={s}" for s in sets)],
        env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _losses(run):
    return [e["loss"] for e in read_log(run) if "loss" in e]


def _retrieval(run):
    results = json.loads((run / "eval_results.json").read_text())["results"]
    return {r["task"]: r["metrics"] for r in results}["retrieval"]


def _outputs(run):
    from transformers import AutoModel

    import mmzoo

    model = AutoModel.from_pretrained(run).eval()
    processor = mmzoo.build_processor(model.config.model_spec())
    from PIL import Image

    images = [Image.new("RGB", (32, 32), (30 * i, 90, 200 - 20 * i)) for i in range(4)]
    batch = processor(text=["a red circle", "two squares", "a blue one", "green"], images=images,
                      return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**batch)
    return {k: out[k] for k in ("text_embeds", "image_embeds", "logits_per_image")}


def _compare(run, reference):
    assert _losses(run) == pytest.approx(_losses(reference), rel=1e-5)
    assert len(_losses(run)) == 5
    assert _retrieval(run).keys() == _retrieval(reference).keys()  # the evaluation ran inside the run
    got, expected = _outputs(run), _outputs(reference)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5, msg=key)


def test_zero3_matches_the_single_process_run(tmp_path, tiny_recipe):
    """The fast check: ZeRO-3 (weights sharded, gathered on save) against one process on the global batch
    (which equals DDP for this dropout-free contrastive model, see test_train_distributed)."""
    from mmzoo.train import train

    run = _torchrun(tmp_path / "zero3", "mm-clip-tiny", "zero3")
    single = train(tiny_recipe(*SETTINGS, "training.per_device_train_batch_size=8"), progress=False,
                   output_dir=tmp_path / "single")
    _compare(run, single.run_dir)
    assert _retrieval(run) == pytest.approx(_retrieval(single.run_dir), abs=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["zero2", "zero3"])
@pytest.mark.parametrize("preset", list(MODELS))
def test_zero_matches_ddp(tmp_path_factory, preset, engine):
    reference = _REFERENCES.get(preset)
    if reference is None:
        reference = _REFERENCES[preset] = _torchrun(tmp_path_factory.mktemp("ddp"), preset, None)
    _compare(_torchrun(tmp_path_factory.mktemp(engine), preset, engine), reference)


_REFERENCES: dict = {}
