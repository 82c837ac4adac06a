"""A corrupt image and a missing column stop training with an error naming the file / row / column;
with on_bad_sample: skip the run proceeds and reports how many samples it dropped."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from mmzoo.data import DataError
from mmzoo.errors import RecipeError
from mmzoo.recipe import load_recipe
from mmzoo.train import train

RECIPE = """
model: mm-clip-tiny
data:
  train:
    source: json
    files: data/train.jsonl
    root: data
    columns: {image: file, caption: text}
training: {max_steps: 2, per_device_train_batch_size: 4, logging_steps: 1, save_steps: null, cpu_threads: 1}
"""


@pytest.fixture
def json_data(tmp_path):
    images = tmp_path / "data" / "img"
    images.mkdir(parents=True)
    rows = []
    for i, color in enumerate(["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]):
        Image.new("RGB", (20, 20), color).save(images / f"{i}.png")
        rows.append({"file": f"img/{i}.png", "text": f"a {color} square"})
    (images / "broken.png").write_bytes(b"this is not a png")
    rows.insert(3, {"file": "img/broken.png", "text": "a broken image"})
    (tmp_path / "data" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    return tmp_path


def test_corrupt_image_names_the_file_and_row(json_data):
    recipe = load_recipe(json_data / "recipe.yaml", [f"training.output_dir={json_data / 'run'}"])
    with pytest.raises(DataError, match=r"row 3: column 'file': cannot decode image file .*broken\.png.*"
                                        r"on_bad_sample: skip"):
        train(recipe, progress=False)


def test_missing_column_names_the_column(json_data):
    recipe = load_recipe(json_data / "recipe.yaml", [f"training.output_dir={json_data / 'run'}",
                                                      "data.train.columns.caption=caption_en"])
    with pytest.raises(DataError, match=r"column 'caption_en' \(columns\.caption\) not found; available columns: "
                                        r"\['file', 'text'\]"):
        train(recipe, progress=False)


def test_skip_trains_and_reports_the_count(json_data, capsys):
    from mmzoo.cli import main

    run = json_data / "run"
    code = main(["train", str(json_data / "recipe.yaml"), f"--set=training.output_dir={run}",
                 "--set=data.train.on_bad_sample=skip"])
    assert code == 0
    assert "data.train: skipped 1 bad sample(s) (on_bad_sample: skip)" in capsys.readouterr().out
    report = json.loads((run / "eval_results.json").read_text())["bad_samples"]["train"]
    assert report["skipped"] == 1 and "broken.png" in report["examples"][0]
    assert (run / "model.safetensors").is_file()


def test_image_paths_may_not_leave_the_root(json_data):
    outside = json_data / "outside.png"
    Image.new("RGB", (8, 8)).save(outside)
    (json_data / "data" / "train.jsonl").write_text(json.dumps({"file": "../outside.png", "text": "x"}) + "\n")
    recipe = load_recipe(json_data / "recipe.yaml", [f"training.output_dir={json_data / 'run'}",
                                                      "data.train.on_bad_sample=skip"])
    with pytest.raises(DataError, match="outside the dataset root"):
        train(recipe, progress=False)


def test_vqa_head_needs_question_columns(tmp_path):
    (tmp_path / "r.yaml").write_text(
        "model: {preset: mm-visualbert-tiny, head: vqa}\n"
        "data: {train: {source: builtin, name: digits, params: {num_samples: 8}}}\n"
        "training: {max_steps: 1}\n"
    )
    recipe = load_recipe(tmp_path / "r.yaml", [f"training.output_dir={tmp_path / 'run'}"])
    with pytest.raises(RecipeError, match=r"data.train: model.head vqa needs columns image, question .* but the "
                                          r"data has \['captions', 'image', 'label'\]"):
        train(recipe, progress=False)
