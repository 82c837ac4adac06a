"""Remote code: the flat bundle of mmzoo's modeling code, and push_run(remote_code=True) loaded with
trust_remote_code=True in a process where mmzoo cannot be imported."""

from __future__ import annotations

import ast
import importlib
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import HfApi, hf_hub_download
from PIL import Image
from transformers import AutoModel, pipeline
from transformers.dynamic_module_utils import get_class_from_dynamic_module, get_imports, get_relative_imports

import mmzoo
from mmzoo.builder import save_pretrained
from mmzoo.errors import HubError
from mmzoo.hub import push_run, remote_code
from mmzoo.hub.remote_code import bundle_code
from tests.common import BLOCK_MMZOO

PRESETS = ("mm-clip-tiny", "mm-siglip-tiny", "mm-albef-tiny")  # softmax, sigmoid (siglip config), fusion model
TEXTS = ["a red circle", "two blue squares", "a green triangle"]
LABELS = ["circle", "square", "triangle"]
COMPARED = ("text_embeds", "image_embeds", "logits_per_image", "fused_embeds", "fused_text_states")


@pytest.fixture(scope="module")
def bundle():
    return bundle_code()


# -- the bundle ------------------------------------------------------------------------------------------------
def test_bundle_has_no_mmzoo_import_left(bundle, tmp_path):
    assert {"configuration_mmzoo.py", "modeling_mmzoo.py", "processing_mmzoo.py",
            "mmzoo_fusion_co_attention.py", "mmzoo_objectives_itm.py", "mmzoo__registry.py"} <= set(bundle.files)
    for name, text in bundle.files.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] == "mmzoo" for a in node.names), (name, ast.unparse(node))
            elif isinstance(node, ast.ImportFrom):
                assert node.level in (0, 1), (name, ast.unparse(node))
                assert node.level == 1 or node.module.split(".")[0] != "mmzoo", (name, ast.unparse(node))
                assert node.level == 0 or not node.module or f"{node.module}.py" in bundle.files, (name, node.module)
        (tmp_path / name).write_text(text)
        # transformers' own readers: every `from .x import` names a bundled file, mmzoo is not a requirement
        assert {f"{m}.py" for m in get_relative_imports(tmp_path / name)} <= set(bundle.files), name
        assert "mmzoo" not in get_imports(tmp_path / name), name
    assert "mmzoo" not in bundle.packages and {"torch", "transformers"} <= set(bundle.packages)
    for package in bundle.packages:
        importlib.import_module(package)  # transformers' check_imports needs every one installed


@pytest.mark.parametrize("package", ["fusion", "objectives"])
def test_registry_loops_become_explicit_imports(bundle, package):
    source = (Path(mmzoo.__file__).parent / package / "__init__.py").read_text()
    # the registering submodules, imported explicitly (`from . import a, b`) or by an importlib loop
    body = ast.parse(source).body
    names = [a.name for n in body if isinstance(n, ast.ImportFrom) and n.level == 1 and not n.module for a in n.names]
    names += [e.value for n in body if isinstance(n, ast.For) for e in n.iter.elts]
    assert names
    present = [n for n in names if (Path(mmzoo.__file__).parent / package / f"{n}.py").is_file()]
    flat = bundle.files[f"mmzoo_{package}.py"]
    assert "import_module(" not in flat
    imported = {m for m in get_relative_imports_text(flat) if m.startswith(f"mmzoo_{package}_")}
    assert imported == {f"mmzoo_{package}_base"} | {f"mmzoo_{package}_{n}" for n in present}


def get_relative_imports_text(text: str) -> set[str]:
    return {n.module for n in ast.walk(ast.parse(text)) if isinstance(n, ast.ImportFrom) and n.level == 1 and n.module}


FAKE_PACKAGE = {
    "__init__.py": "",
    "reg.py": "REG = {}\n",
    "c.py": "C = 3\n\n\nclass K:\n    pass\n",
    "a/__init__.py": '''
        """Docstring kept."""
        from __future__ import annotations

        import importlib

        from ..reg import REG
        from . import b
        from .b import VALUE as B_VALUE, f
        import mmzoo.c as c_mod

        for _name in ("p1", "p2", "missing"):
            try:
                importlib.import_module(f"{__name__}.{_name}")
            except ModuleNotFoundError as _err:
                if _err.name != f"{__name__}.{_name}":
                    raise


        def lazy():
            from mmzoo.c import C  # function-level absolute import
            return C; from . import b as bb  # two flat statements on one line
        ''',
    "a/b.py": "VALUE = 2\n\n\ndef f():\n    return 'f'\n",
    "a/p1.py": "from ..reg import REG\n\nREG['p1'] = 1\n\n\nclass P1:\n    pass\n",
    "a/p2.py": "from mmzoo.reg import REG\n\nREG['p2'] = 2\n",  # defines nothing: anchored on __name__
}


def _fake_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / "mmzoo" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "mmzoo" / name).write_text(textwrap.dedent(text).lstrip())
    return root / "mmzoo"


def test_bundle_import_forms_behave_like_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(remote_code, "PACKAGE_DIR", _fake_package(tmp_path / "src", FAKE_PACKAGE))
    bundle = bundle_code(roots=("mmzoo.a",))
    assert set(bundle.modules) == {"mmzoo.a", "mmzoo.reg", "mmzoo.a.b", "mmzoo.c", "mmzoo.a.p1", "mmzoo.a.p2"}
    flat = bundle.files["mmzoo_a.py"]
    assert '"""Docstring kept."""\nfrom __future__ import annotations' in flat
    assert "from .mmzoo_a_p1 import P1" in flat and "from .mmzoo_a_p2 import __name__" in flat
    out = tmp_path / "out" / f"flat_{uuid.uuid4().hex[:8]}"
    out.mkdir(parents=True)
    (out / "__init__.py").write_text("")
    for name, text in bundle.files.items():
        (out / name).write_text(text)
    monkeypatch.syspath_prepend(str(out.parent))
    module = importlib.import_module(f"{out.name}.mmzoo_a")
    reg = importlib.import_module(f"{out.name}.mmzoo_reg")
    assert module.REG is reg.REG and reg.REG == {"p1": 1, "p2": 2}
    assert module.B_VALUE == 2 and module.b.VALUE == 2 and module.f() == "f"
    assert module.c_mod.C == 3 and module.lazy() == 3


@pytest.mark.parametrize("line, message", [
    ("import mmzoo.c\n", "cannot be bundled"),
    ("import importlib\nimportlib.import_module('mmzoo.c')\n", "dynamic import of an mmzoo module"),
    ("from mmzoo import c, reg_value\n", "top-level mmzoo package"),
    ("from .nowhere import x\n", "not a module of the mmzoo package"),
    ('"""Example:\nfrom .ghost import x\n"""\n', r"names \['ghost'\]"),
])
def test_unbundlable_imports_are_named(tmp_path, monkeypatch, line, message):
    files = {**FAKE_PACKAGE, "a/__init__.py": line}
    monkeypatch.setattr(remote_code, "PACKAGE_DIR", _fake_package(tmp_path, files))
    with pytest.raises(HubError, match=message):
        bundle_code(roots=("mmzoo.a",))


# -- pushed repos, loaded without mmzoo --------------------------------------------------------------------------
def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in TEXTS]


def _outputs(model, batch) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(**batch, return_loss=False)
    return {k: out[k] for k in COMPARED if out.get(k) is not None}


@pytest.fixture(scope="module")
def pushed(_hub_server_session, tmp_path_factory):
    """Each preset saved, pushed with remote_code=True, and its outputs computed with mmzoo (the expectations)."""
    root = tmp_path_factory.mktemp("remote-code")
    images = [Image.fromarray(a) for a in _images()]
    expected = {}
    for preset in PRESETS:
        torch.manual_seed(0)
        model, processor = mmzoo.build_model(preset).eval(), mmzoo.build_processor(preset)
        run = save_pretrained(model, processor, root / preset)
        repo_id = f"{_hub_server_session.user}/remote-code-{preset}-{uuid.uuid4().hex[:8]}"
        result = push_run(run, repo_id, remote_code=True)
        batch = processor(text=TEXTS, images=images)
        expected[preset] = {"repo_id": repo_id, "files": result.files, "batch": dict(batch),
                            "outputs": _outputs(model, batch)}
        if model.config.model_spec().scores_pairs:
            classifier = pipeline("zero-shot-image-classification", model=str(run))
            expected[preset]["zero_shot"] = classifier(images[0], candidate_labels=LABELS)
    return expected


CHILD = BLOCK_MMZOO + '''try:
    import mmzoo
    raise SystemExit("mmzoo is importable in the child process")
except ImportError:
    pass

import numpy as np
import torch
from PIL import Image
from transformers import AutoConfig, AutoModel, AutoProcessor, pipeline

expected = torch.load(sys.argv[1], weights_only=False)
got = {}
for preset, exp in expected.items():
    repo_id = exp["repo_id"]
    config = AutoConfig.from_pretrained(repo_id, trust_remote_code=True)
    model = AutoModel.from_pretrained(repo_id, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(repo_id, trust_remote_code=True)
    batch = processor(text=exp["texts"], images=[Image.fromarray(a) for a in exp["images"]])
    with torch.no_grad():
        out = model(**batch, return_loss=False)
    got[preset] = {
        "classes": [type(config).__module__ + "." + type(config).__name__, type(model).__module__ + "."
                    + type(model).__name__, type(processor).__module__ + "." + type(processor).__name__],
        "batch": dict(batch), "outputs": {k: out[k] for k in exp["outputs"]},
    }
    if "zero_shot" in exp:
        classifier = pipeline("zero-shot-image-classification", model=repo_id, trust_remote_code=True)
        got[preset]["zero_shot"] = classifier(Image.fromarray(exp["images"][0]), candidate_labels=exp["labels"])
got["mmzoo_modules"] = sorted(m for m in sys.modules if m == "mmzoo" or m.startswith("mmzoo."))
torch.save(got, sys.argv[2])
'''


@pytest.fixture(scope="module")
def loaded_without_mmzoo(pushed, _hub_server_session, tmp_path_factory):
    """One child process (outside the repo, mmzoo blocked, fresh HF_HOME) loads every pushed repo."""
    work = tmp_path_factory.mktemp("no-mmzoo")
    payload = {p: {"repo_id": e["repo_id"], "texts": TEXTS, "labels": LABELS, "images": _images(),
                   "outputs": list(e["outputs"]), **({"zero_shot": True} if "zero_shot" in e else {})}
               for p, e in pushed.items()}
    torch.save(payload, work / "expected.pt")
    (work / "child.py").write_text(CHILD)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(_hub_server_session.env(hf_home=work / "hf-home"))
    proc = subprocess.run([sys.executable, str(work / "child.py"), str(work / "expected.pt"), str(work / "got.pt")],
                          cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return torch.load(work / "got.pt", weights_only=False)


def test_push_adds_code_and_auto_map_in_one_commit(pushed, tmp_path):
    api = HfApi()
    for preset, exp in pushed.items():
        assert len(api.list_repo_commits(exp["repo_id"])) == 2  # initial commit + ONE push commit
        files = set(api.list_repo_files(exp["repo_id"]))
        assert {"configuration_mmzoo.py", "modeling_mmzoo.py", "processing_mmzoo.py", "mmzoo_fusion.py",
                "config.json", "model.safetensors"} <= files and set(exp["files"]) == files - {".gitattributes"}
        config = json.load(open(hf_hub_download(exp["repo_id"], "config.json", cache_dir=tmp_path)))
        processor = json.load(open(hf_hub_download(exp["repo_id"], "processor_config.json", cache_dir=tmp_path)))
        siglip = "Siglip" if preset == "mm-siglip-tiny" else ""
        assert config["auto_map"] == {
            "AutoConfig": f"configuration_mmzoo.Mmzoo{siglip}Config",
            "AutoModel": f"modeling_mmzoo.Mmzoo{siglip}Model",
            "AutoModelForZeroShotImageClassification": f"modeling_mmzoo.Mmzoo{siglip}ForZeroShotImageClassification",
        }, preset
        assert processor["auto_map"] == {"AutoProcessor": "processing_mmzoo.MmzooProcessor"}
        assert config["spec"]["name"] == preset  # the rest of config.json is unchanged


@pytest.mark.parametrize("preset", PRESETS)
def test_loads_without_mmzoo_and_matches(pushed, loaded_without_mmzoo, preset):
    got, exp = loaded_without_mmzoo[preset], pushed[preset]
    assert loaded_without_mmzoo["mmzoo_modules"] == []
    assert all(c.startswith("transformers_modules.") for c in got["classes"]), got["classes"]
    assert got["classes"][0].endswith("SiglipConfig") == (preset == "mm-siglip-tiny")
    assert got["batch"].keys() == exp["batch"].keys()
    for key, value in exp["batch"].items():
        assert torch.equal(got["batch"][key], value), key
    assert got["outputs"].keys() == exp["outputs"].keys()
    assert ("fused_embeds" in exp["outputs"]) == (preset == "mm-albef-tiny")
    for key, value in exp["outputs"].items():
        assert torch.equal(got["outputs"][key], value), key


@pytest.mark.parametrize("preset", ["mm-clip-tiny", "mm-siglip-tiny"])
def test_zero_shot_pipeline_without_mmzoo(pushed, loaded_without_mmzoo, preset):
    got, exp = loaded_without_mmzoo[preset]["zero_shot"], pushed[preset]["zero_shot"]
    assert [r["label"] for r in got] == [r["label"] for r in exp]
    assert [r["score"] for r in got] == pytest.approx([r["score"] for r in exp], abs=1e-6)
    if preset == "mm-siglip-tiny":  # independent sigmoid scores, not a softmax over the labels
        assert sum(r["score"] for r in got) != pytest.approx(1.0, abs=1e-3)


def test_bundle_loads_alongside_installed_mmzoo(pushed):
    """In a process that imported mmzoo, the bundle gets its own registries; both keep working."""
    exp = pushed["mm-albef-tiny"]
    config_class = get_class_from_dynamic_module("configuration_mmzoo.MmzooConfig", exp["repo_id"])
    model_class = get_class_from_dynamic_module("modeling_mmzoo.MmzooModel", exp["repo_id"])
    assert model_class.__module__.startswith("transformers_modules.") and model_class is not mmzoo.MmzooModel
    config = config_class.from_pretrained(exp["repo_id"])
    bundled = model_class.from_pretrained(exp["repo_id"], config=config).eval()
    for key, value in _outputs(bundled, exp["batch"]).items():
        assert torch.equal(value, exp["outputs"][key]), key
    from mmzoo.fusion import FUSIONS

    assert FUSIONS.get("cross_attention").__module__ == "mmzoo.fusion.cross_attention"
    assert type(bundled.fusion) is not FUSIONS.get("cross_attention")
    # with mmzoo imported, its registered classes win over the repo's code (transformers' explicit local code)
    assert type(AutoModel.from_pretrained(exp["repo_id"], trust_remote_code=True)) is mmzoo.MmzooModel


def test_cli_push_remote_code(hub_server, hub_repo_id, tiny_run, capsys):
    from mmzoo.cli import main

    assert main(["push", str(tiny_run), "--repo-id", hub_repo_id, "--remote-code", "--license", "mit",
                 "--commit-message", "first"]) == 0
    assert f"to {hub_repo_id}@main" in capsys.readouterr().out
    api = HfApi()
    assert "modeling_mmzoo.py" in api.list_repo_files(hub_repo_id)
    assert api.list_repo_commits(hub_repo_id)[0].title == "first"
    assert main(["push", str(tiny_run / "missing"), "--repo-id", hub_repo_id]) == 2
    assert capsys.readouterr().err.startswith("error: ") and len(api.list_repo_commits(hub_repo_id)) == 2


def test_cli_card(tiny_run, tmp_path, capsys):
    from mmzoo.cli import main

    assert main(["card", str(tiny_run), "--out", str(tmp_path / "README.md")]) == 0
    card = (tmp_path / "README.md").read_text()
    assert card.startswith("---\n") and "license: mit" in card
    assert main(["card", str(tiny_run), "--license", "cc-by-4.0"]) == 0
    assert "license: cc-by-4.0" in capsys.readouterr().out
    assert main(["card", str(tmp_path / "missing")]) == 2
    assert "config.json: no such file" in capsys.readouterr().err
