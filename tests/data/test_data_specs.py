"""The recipe's data: section specs: parsing, round trip and the cross-field rules' messages."""

from __future__ import annotations

import pytest
import yaml

from mmzoo.data import (
    BuiltinSourceSpec,
    CsvSourceSpec,
    DataSpec,
    HFSourceSpec,
    ImageFolderSourceSpec,
    JsonSourceSpec,
    ParquetSourceSpec,
    WebDatasetSourceSpec,
)
from mmzoo.errors import SpecError

RECIPE = """
train:
  source: builtin
  name: shapes
  params: {num_samples: 100, seed: 1}
  image_size: 32
  max_length: 24
eval:
  source: json
  files: data/val.jsonl
  split: validation
  columns: {image: file, captions: texts}
  on_bad_sample: skip
  max_samples: 10
"""


def test_parse_discriminates_on_source_and_round_trips():
    spec = DataSpec.from_yaml(RECIPE)
    assert isinstance(spec.train, BuiltinSourceSpec) and isinstance(spec.eval, JsonSourceSpec)
    assert spec.eval.files == ["data/val.jsonl"]
    assert spec.eval.columns.explicit() == {"image": "file", "captions": "texts"}
    assert spec.train.generator_params() == {"num_samples": 100, "seed": 1, "split": "train", "image_size": 32}
    assert DataSpec.from_dict(yaml.safe_load(spec.to_yaml())) == spec
    with pytest.raises(Exception):  # frozen
        spec.train.split = "test"


@pytest.mark.parametrize(
    "cls, fields",
    [
        (ImageFolderSourceSpec, {"path": "imgs"}),
        (CsvSourceSpec, {"files": ["a.csv", "b.csv"], "root": "images"}),
        (ParquetSourceSpec, {"files": "x/*.parquet"}),
        (HFSourceSpec, {"dataset": "nlphuji/flickr30k", "config": None, "revision": "main", "streaming": True}),
        (WebDatasetSourceSpec, {"shards": "shards/{000..009}.tar"}),
    ],
)
def test_every_source_kind_parses(cls, fields):
    tag = cls.model_fields["source"].default
    spec = DataSpec.from_dict({"train": {"source": tag, **fields}})
    assert type(spec.train) is cls


@pytest.mark.parametrize(
    "train, match",
    [
        ({"source": "jsn", "files": "a"}, r"unknown type 'jsn'.*did you mean 'json'"),
        ({"source": "json", "files": "a", "colums": {}}, "colums: unknown key"),
        ({"source": "json", "files": []}, "files is empty; give at least one"),
        ({"source": "json", "files": "a", "columns": {"caption": "c", "captions": "cs"}},
         r"caption and columns.captions both set \('c', 'cs'\); set only one"),
        ({"source": "json", "files": "a", "columns": {"answers": "ans"}}, "columns.answers .* needs columns.question"),
        ({"source": "json", "files": "a", "on_bad_sample": "ignore"}, "on_bad_sample"),
        ({"source": "builtin", "name": "shapez"}, r"unknown builtin dataset 'shapez'; did you mean 'shapes'"),
        ({"source": "builtin", "name": "shapes", "params": {"nsamples": 3}},
         r"nsamples: unknown key.*Accepted params"),
        ({"source": "builtin", "name": "shapes", "params": {"split": "test"}},
         r"params.split='test'\); move it to split:"),
        ({"source": "builtin", "name": "shapes", "image_size": 32, "params": {"image_size": 64}},
         r"image_size: 32, params.image_size: 64\); set it once"),
        ({"source": "builtin", "name": "shapes", "columns": {"image": "img"}}, "already have normalised columns"),
        ({"source": "hf", "dataset": ""}, "dataset"),
    ],
)
def test_bad_specs_state_rule_value_and_fix(train, match):
    with pytest.raises(SpecError, match=match):
        DataSpec.from_dict({"train": train})


def test_eval_on_the_training_data_is_rejected():
    same = r"eval reads the same data as train \(source builtin 'shapes', split 'train'\).*eval.split: test"
    with pytest.raises(SpecError, match=same):
        DataSpec.from_dict({"train": {"source": "builtin", "name": "shapes"},
                            "eval": {"source": "builtin", "name": "shapes", "params": {"seed": 5}}})
    with pytest.raises(SpecError, match="eval reads the same data as train"):
        DataSpec.from_dict({"train": {"source": "csv", "files": "a.csv"},
                            "eval": {"source": "csv", "files": ["a.csv"], "max_samples": 5}})
    DataSpec.from_dict({"train": {"source": "builtin", "name": "shapes"},
                        "eval": {"source": "builtin", "name": "shapes", "split": "test"}})


def test_loading_and_dry_run_ask_the_source_spec(monkeypatch, tmp_path):
    """load_source and --dry-run ask each source spec (load_generated / check_without_reading) instead of
    branching on its source tag: a file source that says it is generated is not read."""
    from mmzoo.data import JsonSourceSpec, load_source
    from mmzoo.train.dry_run import check_data_source

    spec = DataSpec.from_dict({"train": {"source": "json", "files": "missing.jsonl"}})
    monkeypatch.setattr(JsonSourceSpec, "load_generated", lambda self: ["generated row"])
    monkeypatch.setattr(JsonSourceSpec, "check_without_reading", lambda self: "json stand-in (not read)")
    assert load_source(spec.train, tmp_path) == ["generated row"]
    recipe = type("Recipe", (), {"data": spec, "base_dir": str(tmp_path)})()
    assert check_data_source(recipe, "train") == "data.train: json stand-in (not read)"
