"""Items 8-10 of issue 13 and the push verification of item 2: every bad input gives one clear error (exit 2)
that names the file / key and the fix; secrets are never echoed and values are bounded."""

from __future__ import annotations

import importlib.abc
import json
import shutil
import struct
import sys

import pytest

from mmzoo.cli import main
from mmzoo.train import train

from .conftest import tiny

TOKEN = "hf_" + "A1b2C3d4E5f6G7h8I9j0KlMnOpQrStUv"
BASE = """\
model: {MODEL}
data:
  train: {source: builtin, name: shapes, split: train, max_length: 32, params: {num_samples: 8}}
training: {max_steps: 1, per_device_train_batch_size: 4, save_steps: null, cpu_threads: 1}
"""
MODEL = "{preset: mm-clip-tiny}"


def recipe_text(model: str = MODEL, extra: str = "", train_extra: str = "") -> str:
    text = BASE.replace("{MODEL}", model)
    if train_extra:
        text = text.replace("max_length: 32,", f"max_length: 32, {train_extra},")
    return text + extra


def _bomb(levels: int = 8) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def _custom_code_tower(folder):
    tower = folder / "custom-tower"
    tower.mkdir()
    (tower / "config.json").write_text(json.dumps({"model_type": "my_custom", "auto_map": {
        "AutoConfig": "configuration_my.MyConfig", "AutoModel": "modeling_my.MyModel"}}))
    return tower


# (id, recipe file content: str | bytes | callable(tmp_path) -> str, extra CLI args, expected regex)
RECIPES = [
    ("duplicate-top-level-key", recipe_text(extra="training: {max_steps: 5}\n"), [],
     r"duplicate key 'training' \(first at line 4\); keep only one"),
    ("duplicate-nested-key", recipe_text().replace("max_steps: 1,", "learning_rate: 1.0e-3, learning_rate: 5.0, "
                                                                    "max_steps: 1,"), [],
     r"duplicate key 'learning_rate'"),
    ("duplicate-key-in-source", recipe_text().replace("{source: builtin,", "{source: builtin, source: json,"), [],
     r"duplicate key 'source'"),
    ("alias-bomb", recipe_text(extra=_bomb()), [], r"aliases .* expand to more than 100,000 values"),
    ("alias-bomb-in-value", recipe_text(extra=_bomb(7) + "description: *a6\n"), [],
     r"aliases .* expand to more than"),
    ("oversized-file", recipe_text(extra="# " + "x" * 1_100_000 + "\n"), [], r"more than the 1,000,000"),
    ("latin-1-bytes", recipe_text(extra="description: caf\u00e9\n").encode("latin-1"), [],
     r"not UTF-8 text \(byte 0xe9 at line 5.*save the recipe as UTF-8"),
    ("utf-16-file", recipe_text().encode("utf-16"), [], r"not UTF-8 text \(byte 0xff"),
    ("invalid-yaml", recipe_text(extra="evaluation: [unclosed\n"), [], r"not valid YAML"),
    ("not-a-mapping", "- a\n- b\n", [], r"a recipe is a mapping with model:, data: and training:; got list"),
    ("empty-file", "", [], r"a recipe is a mapping .*got NoneType"),
    ("token-in-typed-field", recipe_text().replace("max_steps: 1,", f"max_steps: 1, seed: {TOKEN},"), [],
     r"training.seed: .*got 'hf_\*\*\*'"),
    ("secret-key-unknown", recipe_text(train_extra="token: hunter2-secret-value"), [],
     r"data.train.token: unknown key"),
    ("password-key", recipe_text(extra="hub: {password: hunter2-secret-value}\n"), [], r"hub.password: unknown key"),
    ("token-as-repo-id", recipe_text(extra=f"hub: {{repo_id: {TOKEN}}}\n"), [], r"hub.repo_id: 'hf_\*\*\*"),
    ("huge-value", recipe_text().replace("max_steps: 1,", "max_steps: " + "9" * 50_000 + "x,"), [],
     r"training.max_steps: .*\(truncated\)"),
    ("heads-do-not-divide-text", recipe_text("{preset: mm-clip-tiny, overrides: {encoders.text.config.hidden_size: 30}}"),
     [], r"encoders.text.config: hidden_size 30 is not divisible by num_attention_heads 4"),
    ("heads-do-not-divide-image",
     recipe_text("{preset: mm-clip-tiny, overrides: {encoders.image.config.hidden_size: 34}}"), [],
     r"encoders.image.config: hidden_size 34 is not divisible by num_attention_heads 4"),
    ("odd-number-of-heads",
     recipe_text("{preset: mm-clip-tiny, overrides: {encoders.text.config.num_attention_heads: 5}}"), [],
     r"hidden_size 32 is not divisible by num_attention_heads 5"),
    ("max-length-over-positions", recipe_text().replace("max_length: 32", "max_length: 100"), [],
     r"data.train.max_length: 100 tokens, but the text tower has only 64 position embeddings"),
    ("eval-max-length-over-positions",
     recipe_text().replace("training:", "  eval: {source: builtin, name: shapes, split: test, max_length: 65}\n"
                                        "training:"), [],
     r"data.eval.max_length: 65 tokens"),
    ("repo-id-without-namespace", recipe_text(extra="hub: {repo_id: mymodel}\n"), [], r"'mymodel' has no namespace"),
    ("repo-id-dot-dot", recipe_text(extra="hub: {repo_id: ../evil}\n"), [], r"hub.repo_id: '\.\./evil' is not a Hub"),
    ("repo-id-inner-dot-dot", recipe_text(extra="hub: {repo_id: me/../evil}\n"), [], r"is not a Hub repo id"),
    ("repo-id-two-slashes", recipe_text(extra="hub: {repo_id: a/b/c}\n"), [], r"is not a Hub repo id"),
    ("repo-id-space", recipe_text(extra="hub: {repo_id: me/my model}\n"), [], r"is not a Hub repo id"),
    ("custom-code-tower", lambda tmp: recipe_text(
        "{preset: mm-clip-tiny, overrides: {encoders.text.model: " + str(_custom_code_tower(tmp)) +
        ", encoders.text.config: null}}"), ["--dry-run"],
     r"encoders\.(0|text)\.model: .*config.json needs custom code \(auto_map \['AutoConfig', 'AutoModel'\]\).*never runs"),
    ("set-without-equals", recipe_text(), ["--set", "training.max_steps"], r"is not of the form key.path=value"),
    ("set-invalid-yaml", recipe_text(), ["--set", "training.max_steps=[1"], r"is not valid YAML"),
    ("set-token-value", recipe_text(), ["--set", f"training.seed={TOKEN}"], r"training.seed: .*'hf_\*\*\*'"),
    ("set-secret-key", recipe_text(), ["--set", "hub.hf_token=hunter2-secret-value"], r"hub.hf_token: unknown key"),
    ("resume-without-checkpoint", recipe_text(), ["--resume"], r"--resume: no checkpoint-\* folder in"),
]
SPEC_FILES = [
    ("spec-duplicate-key", "name: x\nname: y\n", r"spec.yaml: not valid YAML: duplicate key 'name'"),
    ("spec-alias-bomb", _bomb(), r"spec.yaml: its aliases .* expand"),
    ("spec-latin-1", "name: caf\u00e9\n".encode("latin-1"), r"spec.yaml: not UTF-8 text.*save the spec as UTF-8"),
]


def _write(path, content):
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))


def _run_cli(capsys, args):
    code = main(args)
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("case,content,args,expected", RECIPES, ids=[r[0] for r in RECIPES])
def test_bad_recipe(tmp_path, capsys, case, content, args, expected):
    path = tmp_path / "recipe.yaml"
    _write(path, content(tmp_path) if callable(content) else content)
    code, err = _run_cli(capsys, ["train", str(path), f"--set=training.output_dir={tmp_path / 'run'}", *args])
    assert code == 2, err
    assert err.startswith("error: ") and "Traceback" not in err, err
    assert __import__("re").search(expected, err, flags=__import__("re").S), err
    assert TOKEN not in err and "hunter2" not in err
    assert len(err) < 5000, len(err)
    assert not (tmp_path / "run" / "model.safetensors").exists()


@pytest.mark.parametrize("case,content,expected", SPEC_FILES, ids=[s[0] for s in SPEC_FILES])
def test_bad_spec_file(tmp_path, capsys, case, content, expected):
    _write(tmp_path / "spec.yaml", content)
    _write(tmp_path / "recipe.yaml", recipe_text("spec.yaml"))
    code, err = _run_cli(capsys, ["train", str(tmp_path / "recipe.yaml"), "--dry-run"])
    assert code == 2 and __import__("re").search(expected, err, flags=__import__("re").S), err


class _Hide(importlib.abc.MetaPathFinder):
    """Makes ``names`` look uninstalled (whether or not this machine has them)."""

    def __init__(self, names):
        self.names = names

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


@pytest.mark.parametrize("tracker,modules", [("tensorboard", ("tensorboard", "tensorboardX")), ("wandb", ("wandb",))])
def test_missing_tracker_is_named_before_training(tmp_path, capsys, monkeypatch, tracker, modules):
    monkeypatch.setattr(sys, "meta_path", [_Hide(modules), *sys.meta_path])
    for name in list(sys.modules):
        if name.split(".")[0] in modules:
            monkeypatch.delitem(sys.modules, name)
    _write(tmp_path / "recipe.yaml", recipe_text())
    code, err = _run_cli(capsys, ["train", str(tmp_path / "recipe.yaml"), f"--set=training.output_dir={tmp_path / 'r'}",
                                  f"--set=training.report_to=[{tracker}]"])
    assert code == 2, err
    assert f"training.report_to: {tracker} is not installed; `pip install {tracker}`" in err
    assert not (tmp_path / "r" / "model.safetensors").exists()


# -- push verification: what would be uploaded must be whole -------------------------------------------------
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    train(tiny(out), progress=False)
    return out


def _cut(n):
    def apply(run):
        data = (run / "model.safetensors").read_bytes()
        (run / "model.safetensors").write_bytes(data[:n(data)])
    return apply


def _header_len(data):
    return struct.unpack("<Q", data[:8])[0]


def _write_file(name, text):
    def apply(run):
        (run / name).write_text(text)
    return apply


def _drop_marker(run):
    (run / "checkpoint-4" / "mmzoo_checkpoint.json").unlink()


PUSHES = [
    ("empty-weights", _cut(lambda d: 0), [], r"model.safetensors: not a whole safetensors file \(0 bytes"),
    ("weights-shorter-than-header", _cut(lambda d: 5), [], r"shorter than a safetensors header"),
    ("weights-header-cut", _cut(lambda d: 8 + _header_len(d) // 2), [], r"header claims \d+ bytes but the file has"),
    ("weights-data-cut-by-one-byte", _cut(lambda d: len(d) - 1), [], r"tensor data needs \d+ bytes but the file holds"),
    ("weights-trailing-bytes", lambda run: open(run / "model.safetensors", "ab").write(b"junk"), [],
     r"tensor data needs \d+ bytes"),
    ("weights-garbage-header", lambda run: (run / "model.safetensors").write_bytes(struct.pack("<Q", 4) + b"{{{{"),
     [], r"header is not valid JSON"),
    ("config-not-json", _write_file("config.json", "{not json"), [], r"config.json: the config does not load"),
    ("config-unknown-model-type", _write_file("config.json", '{"model_type": "no_such_type"}'), [],
     r"config.json: the config does not load"),
    ("run-still-running", _write_file("mmzoo_run.json", '{"status": "running"}'), [],
     r"did not finish \(mmzoo_run.json says 'running'.*mmzoo train RECIPE --resume"),
    ("run-status-unreadable", _write_file("mmzoo_run.json", "{"), [], r"says 'unreadable'"),
    ("missing-shard", _write_file("model.safetensors.index.json",
                                  '{"weight_map": {"a": "model-00002-of-00002.safetensors"}}'), [],
     r"shards \['model-00002-of-00002.safetensors'\] are missing"),
    ("incomplete-checkpoint", _drop_marker, ["checkpoint-4"], r"incomplete checkpoint \(no mmzoo_checkpoint.json"),
    ("repo-id-without-namespace", lambda run: None, ["--repo-id=mymodel"], r"'mymodel' has no namespace"),
    ("repo-id-parent", lambda run: None, ["--repo-id=../evil"], r"'\.\./evil' is not a Hub repo id"),
    ("repo-id-token", lambda run: None, [f"--repo-id={TOKEN}"], r"'hf_\*\*\*' has no namespace"),
]


@pytest.mark.parametrize("case,damage,args,expected", PUSHES, ids=[p[0] for p in PUSHES])
def test_push_refuses(tmp_path, capsys, finished, hub_server, case, damage, args, expected):
    run = shutil.copytree(finished, tmp_path / "run")
    damage(run)
    folder = run / args[0] if args and not args[0].startswith("--") else run
    repo = [a for a in args if a.startswith("--repo-id")] or [f"--repo-id={hub_server.user}/never-created"]
    before = len(hub_server.requests)
    code, err = _run_cli(capsys, ["push", str(folder), *repo])
    assert code == 2, err
    assert __import__("re").search(expected, err, flags=__import__("re").S), err
    assert TOKEN not in err and "Traceback" not in err
    assert len(hub_server.requests) == before  # refused before any request: nothing uploaded


def test_push_of_a_missing_folder(capsys, tmp_path):
    code, err = _run_cli(capsys, ["push", str(tmp_path / "nope"), "--repo-id=me/x"])
    assert code == 2 and "no such folder" in err


# -- the library itself (no CLI in between) never puts a secret or a huge value in an exception -------------
LIBRARY = [
    ("token-value", recipe_text().replace("max_steps: 1,", f"max_steps: 1, seed: {TOKEN},"), "training.seed"),
    ("secret-key", recipe_text(train_extra="password: hunter2-secret-value"), "data.train.password"),
    ("huge-string", recipe_text().replace("max_steps: 1,", "max_steps: " + "9" * 50_000 + "x,"), "training.max_steps"),
    ("huge-aliased-list", _bomb(4) + recipe_text().replace("max_steps: 1,", "max_steps: *a3,"),
     "training.max_steps"),
]


@pytest.mark.parametrize("case,content,key", LIBRARY, ids=[c[0] for c in LIBRARY])
def test_validation_errors_are_redacted_and_bounded(tmp_path, case, content, key):
    from mmzoo.errors import RecipeError
    from mmzoo.recipe import load_recipe

    _write(tmp_path / "recipe.yaml", content)
    with pytest.raises(RecipeError) as info:
        load_recipe(tmp_path / "recipe.yaml")
    message = str(info.value)
    assert key in message
    assert TOKEN not in message and "hunter2" not in message
    assert len(message) < 2000 and max(map(len, message.splitlines())) < 600, message[:3000]
