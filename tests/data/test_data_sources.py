"""load_source: every file-based loader on tiny temporary files, normalisation, and bad-sample handling."""

from __future__ import annotations

import io
import json
import logging
import tarfile

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmzoo.data import (
    BuiltinSourceSpec,
    CsvSourceSpec,
    DataError,
    HFSourceSpec,
    ImageFolderSourceSpec,
    JsonSourceSpec,
    ParquetSourceSpec,
    WebDatasetSourceSpec,
    bad_sample_report,
    load_source,
)

RGB = {"red": (255, 0, 0), "green": (0, 160, 0), "blue": (0, 0, 255)}


def png_bytes(color: str, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (9, 7), RGB[color]).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


def color_of(image: Image.Image) -> tuple[int, int, int]:
    assert image.mode == "RGB"
    return image.getpixel((3, 3))


def write_jsonl(path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def load(tmp_path, hf_cache):
    """load(spec): load_source relative to tmp_path with a private datasets cache."""
    return lambda spec: load_source(spec, tmp_path, cache_dir=hf_cache)


@pytest.fixture
def json_dataset(tmp_path, write_image):
    """data/train.jsonl with 3 rows; images under data/imgs (one in an L-mode PNG)."""
    write_image(tmp_path / "data/imgs/a.png", "red")
    write_image(tmp_path / "data/imgs/b.png", "green", mode="L")
    write_image(tmp_path / "data/imgs/sub/c.png", "blue")
    rows = [
        {"file": "imgs/a.png", "texts": ["a red thing", "red"], "id": 0},
        {"file": "imgs/b.png", "texts": ["a green thing"], "id": 1},
        {"file": "imgs/sub/c.png", "texts": ["a blue thing"], "id": 2},
    ]
    write_jsonl(tmp_path / "data/train.jsonl", rows)
    return rows


def json_spec(**kw) -> JsonSourceSpec:
    return JsonSourceSpec(files="data/train.jsonl", columns={"image": "file", "captions": "texts"}, **kw)


def test_json_paths_relative_to_root_and_column_mapping(load, json_dataset):
    ds = load(json_spec())
    assert isinstance(ds, datasets.Dataset)
    assert ds.column_names == ["image", "captions"]
    assert [r["captions"] for r in ds] == [r["texts"] for r in json_dataset]
    assert color_of(ds[0]["image"]) == RGB["red"] and color_of(ds[2]["image"]) == RGB["blue"]
    assert ds[1]["image"].mode == "RGB"  # the L-mode file is converted
    assert bad_sample_report(ds).skipped == 0


def test_json_streaming_returns_iterable_dataset(load, json_dataset):
    ds = load(json_spec(streaming=True, max_samples=2))
    assert isinstance(ds, datasets.IterableDataset)
    rows = list(ds)
    assert len(rows) == 2 and rows[1]["captions"] == ["a green thing"] and color_of(rows[0]["image"]) == RGB["red"]


def test_vqa_columns_are_normalised(load, tmp_path, write_image):
    write_image(tmp_path / "vqa/a.png", "red")
    write_jsonl(tmp_path / "vqa/q.jsonl", [
        {"img": "a.png", "q": "what color?", "ans": [{"answer": "red", "answer_id": i} for i in (1, 2)]},
        {"img": "a.png", "q": "is it red?", "ans": "yes"},
    ])
    ds = load(JsonSourceSpec(files="vqa/q.jsonl", columns={"question": "q", "answers": "ans"}))
    assert ds.column_names == ["image", "question", "answers"]
    assert ds["question"] == ["what color?", "is it red?"] and ds["answers"] == [["red", "red"], ["yes"]]


def test_csv_single_caption_becomes_a_list(load, tmp_path, write_image):
    write_image(tmp_path / "imgs/x.png", "blue")
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta/train.csv").write_text("image,caption,label\nx.png,a blue square,3\n")
    ds = load(CsvSourceSpec(files="meta/*.csv", root="imgs"))
    assert ds.column_names == ["image", "captions", "label"]
    assert ds[0]["captions"] == ["a blue square"] and ds[0]["label"] == 3
    assert color_of(ds[0]["image"]) == RGB["blue"]


def test_parquet_with_image_bytes(load, tmp_path):
    table = pa.table({"jpg": [png_bytes("red"), png_bytes("blue", "P")], "sentences": [["r1", "r2"], ["g1"]]})
    pq.write_table(table, tmp_path / "train.parquet")
    ds = load(ParquetSourceSpec(files="train.parquet", max_samples=5))
    assert len(ds) == 2 and ds["captions"] == [["r1", "r2"], ["g1"]]
    assert color_of(ds[1]["image"]) == RGB["blue"]  # a palette PNG, converted


def test_imagefolder_with_jsonl_and_csv_metadata(load, tmp_path, write_image):
    for folder, kind in (("ifj", "jsonl"), ("ifc", "csv")):
        write_image(tmp_path / folder / "one.png", "red")
        write_image(tmp_path / folder / "two.png", "blue")
        if kind == "jsonl":
            write_jsonl(tmp_path / folder / "metadata.jsonl", [
                {"file_name": "one.png", "caption": "red one"}, {"file_name": "two.png", "caption": "blue two"}])
        else:
            (tmp_path / folder / "metadata.csv").write_text("file_name,caption\none.png,red one\ntwo.png,blue two\n")
        ds = load(ImageFolderSourceSpec(path=folder))
        rows = sorted(ds, key=lambda r: r["captions"][0])
        assert [r["captions"] for r in rows] == [["blue two"], ["red one"]], kind
        assert [color_of(r["image"]) for r in rows] == [RGB["blue"], RGB["red"]], kind


def test_imagefolder_class_folders_give_labels(load, tmp_path, write_image):
    write_image(tmp_path / "cls/cat/1.png", "red")
    write_image(tmp_path / "cls/dog/2.png", "blue")
    ds = load(ImageFolderSourceSpec(path="cls"))
    assert ds.column_names == ["image", "label"]
    assert ds.features["label"].names == ["cat", "dog"]


def test_hf_source_reads_a_local_dataset_folder(load, tmp_path):
    (tmp_path / "repo/data").mkdir(parents=True)
    pq.write_table(pa.table({"image": [png_bytes("blue")], "caption": ["hello"]}),
                   tmp_path / "repo/data/train-00000-of-00001.parquet")
    ds = load(HFSourceSpec(dataset="repo"))
    assert ds[0]["captions"] == ["hello"] and color_of(ds[0]["image"]) == RGB["blue"]


def test_hf_source_error_names_the_dataset_and_the_fix(load, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail fast: no server to ask
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError, match=r"hf dataset 'no-such-user/no-such-dataset'.*need network access"):
        load(HFSourceSpec(dataset="no-such-user/no-such-dataset"))


@pytest.mark.parametrize("streaming", [False, True])
def test_webdataset_shards(load, tmp_path, streaming):
    (tmp_path / "shards").mkdir()
    with tarfile.open(tmp_path / "shards/000.tar", "w") as tar:
        for key, color in (("s0", "red"), ("s1", "green")):
            for name, data in ((f"{key}.png", png_bytes(color)), (f"{key}.txt", f"a {color} one".encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    ds = load(WebDatasetSourceSpec(shards="shards/*.tar", streaming=streaming))
    rows = list(ds)
    assert [r["captions"] for r in rows] == [["a red one"], ["a green one"]]
    assert color_of(rows[1]["image"]) == RGB["green"]


def test_builtin_source(load):
    ds = load(BuiltinSourceSpec(name="shapes", params={"num_samples": 20}, image_size=24, max_samples=5))
    assert len(ds) == 5 and ds[0]["image"].size == (24, 24) and {"image", "captions"} <= set(ds.column_names)
    stream = load(BuiltinSourceSpec(name="shapes", params={"num_samples": 20}, image_size=24, streaming=True))
    assert isinstance(stream, datasets.IterableDataset) and len(list(stream)) == 20


# ---------------------------------------------------------------------------------------- paths and errors
def test_path_escaping_the_root_is_rejected_even_in_skip_mode(load, tmp_path, json_dataset, write_image):
    write_image(tmp_path / "secret.png", "red")
    write_jsonl(tmp_path / "data/train.jsonl", json_dataset[:1] + [{"file": "../secret.png", "texts": ["x"]}])
    for mode in ("error", "skip"):
        escape = r"row 1: column 'file': image path '../secret.png' resolves to .*secret.png, outside the dataset root"
        with pytest.raises(DataError, match=escape):
            load(json_spec(on_bad_sample=mode))


def test_symlink_escaping_the_root_is_rejected(load, tmp_path, json_dataset, write_image):
    write_image(tmp_path / "outside/secret.png", "red")
    (tmp_path / "data/imgs/link.png").symlink_to(tmp_path / "outside/secret.png")
    write_jsonl(tmp_path / "data/train.jsonl", [{"file": "imgs/link.png", "texts": ["x"]}])
    with pytest.raises(DataError, match="row 0: column 'file': image path 'imgs/link.png' resolves to .*outside"):
        load(json_spec())


def test_absolute_path_outside_root_is_rejected(load, tmp_path, json_dataset, write_image):
    write_image(tmp_path / "elsewhere.png", "red")
    write_jsonl(tmp_path / "data/train.jsonl", [{"file": str(tmp_path / "elsewhere.png"), "texts": ["x"]}])
    with pytest.raises(DataError, match="outside the dataset root"):
        load(json_spec())


def test_imagefolder_metadata_escaping_the_folder_is_rejected(load, tmp_path, write_image):
    write_image(tmp_path / "secret.png", "red")
    write_image(tmp_path / "folder/ok.png", "blue")
    write_jsonl(tmp_path / "folder/metadata.jsonl", [{"file_name": "ok.png", "caption": "ok"},
                                                     {"file_name": "../secret.png", "caption": "no"}])
    with pytest.raises(DataError, match=r"imagefolder .*folder.*\.\./secret\.png"):
        load(ImageFolderSourceSpec(path="folder"))


@pytest.fixture
def corrupt_row(tmp_path, json_dataset):
    (tmp_path / "data/imgs/bad.png").write_bytes(b"this is not a png")
    write_jsonl(tmp_path / "data/train.jsonl", json_dataset + [{"file": "imgs/bad.png", "texts": ["broken"]}])


def test_corrupt_image_error_names_row_column_and_file(load, corrupt_row):
    with pytest.raises(DataError, match=r"json files .*train.jsonl: row 3: column 'file': cannot decode image file "
                                        r".*bad.png: UnidentifiedImageError.*on_bad_sample: skip"):
        load(json_spec())


def test_skip_mode_drops_counts_and_warns(load, corrupt_row, caplog):
    logger = logging.getLogger("mmzoo")
    logger.addHandler(caplog.handler)  # the mmzoo logger does not propagate to the root
    try:
        ds = load(json_spec(on_bad_sample="skip"))
    finally:
        logger.removeHandler(caplog.handler)
    assert len(ds) == 3 and [r["captions"] for r in ds][-1] == ["a blue thing"]
    report = bad_sample_report(ds)
    assert report.skipped == 1 and "row 3" in report.examples[0] and "bad.png" in report.examples[0]
    assert any("skipped 1 bad sample" in r.getMessage() for r in caplog.records)


def test_skip_mode_streaming_counts_as_it_reads(load, corrupt_row):
    ds = load(json_spec(on_bad_sample="skip", streaming=True))
    report = bad_sample_report(ds)
    assert report.skipped == 0  # nothing read yet
    assert len(list(ds)) == 3 and report.skipped == 1


def test_missing_image_file_and_missing_value(load, tmp_path, json_dataset):
    write_jsonl(tmp_path / "data/train.jsonl",
                json_dataset + [{"file": "imgs/gone.png", "texts": ["x"]}, {"file": "imgs/a.png", "texts": None}])
    with pytest.raises(DataError, match=r"row 3: column 'file': image file .*gone.png not found"):
        load(json_spec())
    write_jsonl(tmp_path / "data/train.jsonl", json_dataset + [{"file": "imgs/a.png", "texts": None}])
    with pytest.raises(DataError, match=r"row 3: column 'texts' needs a non-empty string or list of strings, got None"):
        load(json_spec())
    write_jsonl(tmp_path / "data/train.jsonl",
                json_dataset + [{"file": "imgs/gone.png", "texts": ["x"]}, {"file": "imgs/a.png", "texts": []}])
    ds = load(json_spec(on_bad_sample="skip"))
    assert len(ds) == 3 and bad_sample_report(ds).skipped == 2


def test_missing_column_lists_the_available_ones(load, tmp_path, json_dataset):
    with pytest.raises(DataError, match=r"column 'caption_text' \(columns.caption\) not found; available columns: "
                                        r"\['file', 'texts', 'id'\]; set columns.caption"):
        load(JsonSourceSpec(files="data/train.jsonl", columns={"image": "file", "caption": "caption_text"}))
    no_image = r"no image column \(tried \['image'.*available columns: \['file', 'texts', 'id'\]; set columns.image"
    with pytest.raises(DataError, match=no_image):
        load(JsonSourceSpec(files="data/train.jsonl"))
    write_jsonl(tmp_path / "data/notes.jsonl", [{"file": "imgs/a.png", "note": "n"}])
    no_caption = r"no caption column .*available columns: \['file', 'note'\]; set columns.caption"
    with pytest.raises(DataError, match=no_caption):
        load(JsonSourceSpec(files="data/notes.jsonl", columns={"image": "file"}))


def test_no_matching_file_names_the_pattern(load):
    with pytest.raises(DataError, match=r"files entry 'nothing/\*.jsonl' matches no file"):
        load(JsonSourceSpec(files="nothing/*.jsonl"))
