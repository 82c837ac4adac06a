"""load_recipe: YAML + --set overrides, model sources and overrides, and errors naming file and key."""

from __future__ import annotations

import json

import pytest

from mmzoo.errors import RecipeError
from mmzoo.recipe import RecipeSpec, load_recipe, parse_assignment, resolve_model_spec, set_dotted

BASE = """
model: mm-clip-tiny
data:
  train: {source: builtin, name: shapes, split: train, params: {num_samples: 8}}
  eval: {source: builtin, name: shapes, split: test, params: {num_samples: 8}}
training:
  max_steps: 2
"""


@pytest.fixture
def recipe_file(tmp_path):
    def write(text: str = BASE, name: str = "r.yaml"):
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


def test_defaults_name_and_base_dir(recipe_file):
    path = recipe_file(name="my run.yaml")
    recipe = load_recipe(path)
    assert recipe.name == "my-run"
    assert recipe.base_dir == str(path.parent.resolve())
    assert recipe.model.preset == "mm-clip-tiny" and recipe.training.max_steps == 2


def test_set_overrides_are_yaml_parsed_and_nested(recipe_file):
    recipe = load_recipe(recipe_file(), [
        "training.learning_rate=3e-4", "training.report_to=[tensorboard]", "hub.repo_id=me/model",
        "data.train.params.num_samples=4", "training.trainer_args.optim=adamw_torch",
    ])
    assert recipe.training.learning_rate == pytest.approx(3e-4)
    assert recipe.training.report_to == ["tensorboard"]
    assert recipe.hub.repo_id == "me/model"
    assert recipe.data.train.params == {"num_samples": 4}
    assert recipe.training.trainer_args == {"optim": "adamw_torch"}


def test_set_model_overrides_from_the_command_line(recipe_file):
    recipe = load_recipe(recipe_file(), ["model.overrides.encoders.text.pooling=mean",
                                         "model.overrides.projection_dim=48"])
    assert recipe.model.overrides == {"encoders.text.pooling": "mean", "projection_dim": 48}
    spec = resolve_model_spec(recipe)
    assert spec.encoder("text").pooling == "mean" and spec.projection_dim == 48


def test_unknown_set_key_names_the_file_and_key(recipe_file):
    path = recipe_file()
    with pytest.raises(RecipeError, match=r"r\.yaml → training\.max_stepz: unknown key") as err:
        load_recipe(path, ["training.max_stepz=5"])
    assert "--set overrides applied: training.max_stepz=5" in str(err.value)


@pytest.mark.parametrize("item, message", [
    ("training.max_steps", "not of the form key.path=value"),
    ("=3", "not of the form"),
    ("training..x=1", "not of the form"),
    ("training.max_steps=[1", "not valid YAML"),
])
def test_malformed_set_items(item, message):
    with pytest.raises(RecipeError, match=message):
        parse_assignment(item)


def test_bad_set_value_type_names_the_key(recipe_file):
    with pytest.raises(RecipeError, match=r"training\.max_steps: .*(integer|int)"):
        load_recipe(recipe_file(), ["training.max_steps=many"])


def test_set_through_a_scalar_is_an_error(recipe_file):
    with pytest.raises(RecipeError, match=r"--set training\.max_steps\.x: cannot set .* holds 2"):
        load_recipe(recipe_file(), ["training.max_steps.x=1"])


def test_model_override_keys_must_exist_with_a_suggestion(recipe_file):
    text = BASE.replace("model: mm-clip-tiny", "model: {preset: mm-clip-tiny, overrides: {projection_dimm: 8}}")
    with pytest.raises(RecipeError, match=r"model\.overrides\.projection_dimm: projection_dimm does not exist; "
                                          r"did you mean 'projection_dim'"):
        load_recipe(recipe_file(text))


def test_model_override_selects_list_items_by_name_and_index(recipe_file):
    text = BASE.replace("model: mm-clip-tiny", """model:
  preset: mm-clip-tiny
  overrides:
    encoders.image.pooling: mean
    encoders.0.config.num_hidden_layers: 1
    encoders.text.config.hidden_dropout_prob: 0.0
    objectives.contrastive.init_temperature: 0.2""")
    spec = resolve_model_spec(load_recipe(recipe_file(text)))
    assert spec.encoder("image").pooling == "mean"
    assert spec.encoder("text").config["num_hidden_layers"] == 1
    assert spec.encoder("text").config["hidden_dropout_prob"] == 0.0  # new key inside a free-form HF config
    assert spec.objective("contrastive").init_temperature == 0.2


def test_model_override_with_an_unknown_item_name(recipe_file):
    text = BASE.replace("model: mm-clip-tiny",
                        "model: {preset: mm-clip-tiny, overrides: {encoders.audio.pooling: mean}}")
    with pytest.raises(RecipeError, match=r"encoders\.audio: no item of encoders is named 'audio'.*"
                                          r"\['text', 'image'\]"):
        load_recipe(recipe_file(text))


def test_model_override_that_breaks_the_spec_names_the_key(recipe_file):
    text = BASE.replace("model: mm-clip-tiny", "model: {preset: mm-clip-tiny, overrides: {encoders.text.pooling: sum}}")
    with pytest.raises(RecipeError, match=r"r\.yaml → model\.preset 'mm-clip-tiny' \+ model\.overrides → "
                                          r"encoders\.0\.pooling"):
        load_recipe(recipe_file(text))


def test_model_sources(recipe_file, tmp_path):
    from mmzoo import load_spec

    spec = load_spec("mm-siglip-tiny")
    (tmp_path / "spec.yaml").write_text(spec.to_yaml())
    by_path = load_recipe(recipe_file(BASE.replace("model: mm-clip-tiny", "model: spec.yaml")))
    assert by_path.model.path == "spec.yaml" and resolve_model_spec(by_path) == spec
    inline = BASE.replace("model: mm-clip-tiny", "model: " + json.dumps(spec.to_dict()))
    by_spec = load_recipe(recipe_file(inline))
    assert by_spec.model.spec == spec and resolve_model_spec(by_spec) == spec
    with pytest.raises(RecipeError, match="unknown preset 'mm-clip-tinyy'; did you mean 'mm-clip-tiny'"):
        load_recipe(recipe_file(BASE.replace("model: mm-clip-tiny", "model: mm-clip-tinyy")))
    with pytest.raises(RecipeError, match="model needs exactly one of preset, path, spec or init_from"):
        load_recipe(recipe_file(BASE.replace("model: mm-clip-tiny", "model: {preset: mm-clip-tiny, path: a.yaml}")))


@pytest.mark.parametrize("setting, message", [
    ("training.epochs=2", r"training.max_steps \(2\) and training.epochs \(2.0\) are both set"),
    ("training.trainer_args.learning_rate=1", r"trainer_args.learning_rate: set by the recipe itself; use "
                                               r"`training.learning_rate`"),
    ("training.trainer_args.hub_token=x", r"trainer_args.hub_token: .*never in a recipe"),
    ("training.precision=fp8", r"training.precision: Input should be 'auto', 'fp32', 'bf16' or 'fp16'"),
    ("training.warmup_steps=1.5", "neither a step count"),
    ("data.eval.split=train", "eval reads the same data as train"),
    ("evaluation=[{task: retrieve}]", r"evaluation.0.task: Input should be 'retrieval'"),
])
def test_cross_field_rules(recipe_file, setting, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(recipe_file(), [setting])


def test_streaming_needs_max_steps(recipe_file):
    with pytest.raises(RecipeError, match="training.max_steps: data.train is streaming"):
        load_recipe(recipe_file(), ["data.train.streaming=true", "training.max_steps=null", "training.epochs=1"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(RecipeError, match="no such recipe file"):
        load_recipe(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(RecipeError, match="bad.yaml: not valid YAML"):
        load_recipe(bad)
    bad.write_text("- a list")
    with pytest.raises(RecipeError, match="a recipe is a mapping"):
        load_recipe(bad)


def test_evaluation_entries_keep_free_params_and_hub_is_reserved(recipe_file):
    recipe = load_recipe(recipe_file(), ["evaluation=[{task: retrieval, batch_size: 16, split: test}]",
                                         "hub.push_checkpoints=true", "hub.private=true"])
    task = recipe.evaluation[0]
    assert task.task == "retrieval" and task.split == "test" and task.model_extra == {"batch_size": 16}
    assert recipe.hub.push_checkpoints and recipe.hub.private


def test_set_dotted_create_false_refuses_new_keys():
    data = {"a": {"b": 1}}
    set_dotted(data, "a.b", 2, where="x", create=False)
    assert data == {"a": {"b": 2}}
    with pytest.raises(RecipeError, match="x: a.c does not exist"):
        set_dotted(data, "a.c", 1, where="x", create=False)


def test_json_schema_has_every_section():
    schema = RecipeSpec.model_json_schema()
    assert {"model", "data", "training", "evaluation", "hub"} <= set(schema["properties"])
    assert "grad_cache_chunk_size" in json.dumps(schema)


def test_cli_schema_recipe(capsys):
    from mmzoo.cli import main

    assert main(["schema", "recipe"]) == 0
    assert "TrainingSpec" in json.loads(capsys.readouterr().out)["$defs"]


def test_init_from_reads_the_saved_spec(recipe_file, tmp_path):
    import mmzoo
    from mmzoo.builder import save_pretrained

    saved = tmp_path / "saved"
    save_pretrained(mmzoo.build_model("mm-siglip-tiny"), mmzoo.build_processor("mm-siglip-tiny"), saved)
    recipe = load_recipe(recipe_file(BASE.replace("model: mm-clip-tiny", "model: {init_from: saved}")))
    assert resolve_model_spec(recipe) == mmzoo.load_spec("mm-siglip-tiny")
    with pytest.raises(RecipeError, match="model.overrides cannot change a saved model"):
        load_recipe(recipe_file(BASE.replace("model: mm-clip-tiny",
                                             "model: {init_from: saved, overrides: {projection_dim: 8}}")))
    with pytest.raises(RecipeError, match=r"model: .*nowhere/config.json: no such file"):
        load_recipe(recipe_file(BASE.replace("model: mm-clip-tiny", "model: {init_from: nowhere}")))
