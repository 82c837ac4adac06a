"""`mmzoo validate | build | zoo list | schema` through the real entry point."""

from __future__ import annotations

import json

import yaml

from mmzoo.cli import main


def test_zoo_list(capsys):
    assert main(["zoo", "list"]) == 0
    out = capsys.readouterr().out
    for name in ["mm-clip", "mm-siglip", "mm-lit", "mm-vilbert", "mm-visualbert", "mm-albef"]:
        assert f"\n{name} " in "\n" + out and f"{name}-tiny" in out


def test_validate_prints_full_spec(capsys, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: x\nencoders:\n  - {modality: text, config: {model_type: bert}}\n"
        "  - {modality: image, config: {model_type: vit}}\nobjectives: [{type: sigmoid}]\n"
    )
    assert main(["validate", str(path)]) == 0
    spec = yaml.safe_load(capsys.readouterr().out)
    assert spec["objectives"][0]["init_logit_bias"] == -10.0 and spec["fusion"]["type"] == "dual_encoder"


def test_validate_reports_bad_spec(capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nencoders: []\nobjectives: [{type: itm}]\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "encoders" in err


def test_build_writes_loadable_folder(tmp_path, capsys):
    from transformers import AutoModel, AutoProcessor

    out = tmp_path / "out"
    assert main(["build", "mm-siglip-tiny", "--out", str(out)]) == 0
    assert {"config.json", "model.safetensors", "processor_config.json"} <= {p.name for p in out.iterdir()}
    model = AutoModel.from_pretrained(out)
    assert model.config.model_type == "mmzoo_siglip"
    assert type(AutoProcessor.from_pretrained(out)).__name__ == "MmzooProcessor"


def test_schema(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "encoders" in schema["properties"]
