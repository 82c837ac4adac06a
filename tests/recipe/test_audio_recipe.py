"""The audio recipes: the dry run measures an audio sample, and the twin is the quickstart's model family."""

from __future__ import annotations

from pathlib import Path

from mmzoo.recipe import load_recipe, resolve_model_spec

RECIPES = Path(__file__).parents[2] / "recipes"


def test_dry_run_of_the_audio_twin_measures_an_audio_clip():
    from mmzoo.train.dry_run import dry_run

    report = dry_run(load_recipe(RECIPES / "tiny" / "clap-tones.yaml"))
    text = report.render()
    assert "1.00 s audio clip" in text and "px image" not in text and report.forward_flops > 0


def test_the_quickstart_and_its_twin_are_text_audio_models_on_tones():
    for path in (RECIPES / "clap-tones.yaml", RECIPES / "tiny" / "clap-tones.yaml"):
        recipe = load_recipe(path)
        assert sorted(e.modality for e in resolve_model_spec(recipe).encoders) == ["audio", "text"]
        assert (recipe.data.train.name, recipe.data.eval.split) == ("tones", "test")
        assert [(t.task, t.correct) for t in recipe.evaluation] == [("retrieval", "same_caption")]
