"""The user reference is generated from the code: docs/reference.md cannot drift, the CLI shows each section."""

from __future__ import annotations

from pathlib import Path

from mmzoo.cli import main
from mmzoo.cli.reference import REFERENCE_FILE, reference

REPO = Path(__file__).parents[2]


def test_docs_reference_matches_the_code():
    committed = (REPO / REFERENCE_FILE).read_text(encoding="utf-8")
    assert committed == reference(), (
        f"{REFERENCE_FILE} is out of date: regenerate it with `mmzoo docs --out {REFERENCE_FILE}`")


def test_reference_names_what_users_need():
    text = reference()
    for needed in ("`mmzoo:wordpiece-basic`", "### `shapes`", "`num_samples`", "### `digits`", "### `retrieval`",
                   "`recall_at`", "### `zero_shot_classification`", "`templates`", "### `captioning`",
                   "`max_new_tokens`", "### `itm`", "`threshold`", "### `vqa`", "| `mm-clip-tiny` |"):
        assert needed in text, needed


def test_cli_shows_each_section(capsys, tmp_path):
    assert main(["zoo", "list", "--datasets"]) == 0
    out = capsys.readouterr().out
    assert "### `shapes`" in out and "| `image_size` | `int` | `64` | ≥ 16, ≤ 1024 |" in out
    assert main(["zoo", "list", "--tokenizers"]) == 0
    assert "`mmzoo:wordpiece-basic`" in capsys.readouterr().out
    assert main(["eval", "--list-tasks"]) == 0
    out = capsys.readouterr().out
    assert "### `itm`" in out and "`batch_size`" in out
    assert main(["docs", "--out", str(tmp_path / "ref.md")]) == 0
    assert (tmp_path / "ref.md").read_text() == reference()
    assert main(["eval"]) == 2 and "--list-tasks" in capsys.readouterr().err
