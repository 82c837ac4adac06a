"""Every code block of every generated card runs as pasted, against the loopback Hub.

One finished tiny run per head (dual encoder, sigmoid, ITM fusion, VQA, captioning) is pushed twice: as a plain
repo (snippets `import mmzoo`) and with remote code (snippets use `trust_remote_code=True`). Each ```python block
of each pushed README then runs in its own process: a runner process imports torch/transformers once and forks
one child per block, which executes the block's text as `__main__` with nothing predefined; for remote-code
cards the child first makes mmzoo unimportable, as on a machine without it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from huggingface_hub import hf_hub_download

from mmzoo.hub import push_run
from mmzoo.hub.card import code_blocks

HEADS = ("clip", "siglip", "albef", "vqa", "captioning")
# what each card's blocks must print (one pattern per block, in order), proving the head really ran
NUMBER = r"[0-9.e+-]+"
ZERO_SHOT = [r"'label': 'a (red circle|blue square)'", rf"tensor\(\[\[{NUMBER}, {NUMBER}\]\]\)"]
EXPECTED = {  # head -> per block, the patterns its output must show (proving the head really ran)
    "clip": [ZERO_SHOT],
    "siglip": [ZERO_SHOT],
    "albef": [ZERO_SHOT, [r"P\(match \| image, 'a red circle'\) = [01]\.\d{3}"]],
    "vqa": [[r"\[\('[\w ]+', [01]\.\d+\), \('[\w ]+', [01]\.\d+\), \('[\w ]+', [01]\.\d+\)\]"]],
    "captioning": [[r"^\[['\"].*['\"]\]$"], ZERO_SHOT],
}
PIPELINE_TAGS = {"clip": "zero-shot-image-classification", "siglip": "zero-shot-image-classification",
                 "albef": "zero-shot-image-classification", "vqa": "visual-question-answering",
                 "captioning": "image-to-text"}

BROKEN = "from transformers import pipeline\nprint(image)\n"
RUNNER = r'''
import contextlib, io, json, os, sys, traceback
import torch, PIL.Image, PIL.ImageDraw  # libraries imported once (not mmzoo); each block imports what it uses
from transformers import (AutoModel, AutoModelForImageTextToText, AutoModelForVisualQuestionAnswering,
                          AutoProcessor, pipeline)
import transformers.pipelines.zero_shot_image_classification

class BlockMmzoo:  # remote-code cards: mmzoo is not installed on the reader's machine
    def find_spec(self, name, path=None, target=None):
        if name == "mmzoo" or name.startswith("mmzoo."):
            raise ImportError(f"No module named {name!r} (blocked by the test)")

results = []
for item in json.load(open(sys.argv[1])):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a fresh interpreter state as far as the block can tell
        os.close(read)
        out, status = io.StringIO(), 0
        try:
            if item["remote_code"]:
                sys.meta_path.insert(0, BlockMmzoo())
            with contextlib.redirect_stdout(out):
                exec(compile(item["code"], item["name"], "exec"), {"__name__": "__main__"})
            mods = sorted(m for m in sys.modules if m == "mmzoo" or m.startswith("mmzoo."))
        except BaseException:
            status, mods = 1, []
            out.write(traceback.format_exc())
        os.write(write, json.dumps({"status": status, "out": out.getvalue(), "mmzoo": mods}).encode())
        os._exit(0)
    os.close(write)
    chunks = []
    while chunk := os.read(read, 65536):
        chunks.append(chunk)
    os.waitpid(pid, 0)
    results.append({**item, **json.loads(b"".join(chunks) or b'{"status": 2, "out": "child died", "mmzoo": []}')})
json.dump(results, open(sys.argv[2], "w"))
'''


REMOTE_IN_DEFAULT = ("clip", "captioning")  # the other heads' remote-code cards run with -m slow
CASES = [pytest.param(head, remote, id=f"{head}-{'remote-code' if remote else 'mmzoo'}",
                      marks=[pytest.mark.slow] if remote and head not in REMOTE_IN_DEFAULT else [])
         for head in HEADS for remote in (False, True)]


def _is_default(head: str, remote: bool) -> bool:
    return not remote or head in REMOTE_IN_DEFAULT


@pytest.fixture(scope="module")
def pushed_cards(trained_run, _hub_server_session, tmp_path_factory):
    """head -> {remote_code: (repo_id, README text)} for every head, both exports."""
    root = tmp_path_factory.mktemp("cards")
    out = {}
    for head in HEADS:
        out[head] = {}
        for remote in (False, True):
            repo_id = f"{_hub_server_session.user}/card-{head}{'-remote' if remote else ''}"
            push_run(trained_run(head), repo_id, remote_code=remote)
            readme = open(hf_hub_download(repo_id, "README.md", cache_dir=root / "dl")).read()
            out[head][remote] = (repo_id, readme)
    return out


def _execute(pushed_cards, server, work, wanted) -> dict:
    """Run every python block of the cards ``wanted(head, remote)`` selects; head -> remote -> [results]."""
    items = [{"head": head, "remote_code": remote, "name": f"README.md of {repo_id} block {i}", "code": code}
             for head, cards in pushed_cards.items() for remote, (repo_id, readme) in cards.items()
             if wanted(head, remote) for i, code in enumerate(code_blocks(readme))]
    items.append({"head": "broken", "remote_code": False, "name": "broken", "code": BROKEN})
    (work / "blocks.json").write_text(json.dumps(items))
    (work / "runner.py").write_text(RUNNER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(server.env(hf_home=work / "hf-home"))
    env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")  # the installed-mmzoo cards import this checkout
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, str(work / "runner.py"), str(work / "blocks.json"),
                           str(work / "results.json")], cwd=work, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results: dict = {}
    for r in json.loads((work / "results.json").read_text()):
        results.setdefault(r["head"], {}).setdefault(r["remote_code"], []).append(r)
    return results


@pytest.fixture(scope="module")
def executed(pushed_cards, _hub_server_session, tmp_path_factory):
    return _execute(pushed_cards, _hub_server_session, tmp_path_factory.mktemp("snippets"), _is_default)


@pytest.fixture(scope="module")
def executed_slow(pushed_cards, _hub_server_session, tmp_path_factory):
    return _execute(pushed_cards, _hub_server_session, tmp_path_factory.mktemp("snippets-slow"),
                    lambda head, remote: not _is_default(head, remote))


@pytest.mark.parametrize(("head", "remote_code"), CASES)
def test_every_card_block_runs_as_pasted(request, head, remote_code):
    executed = request.getfixturevalue("executed" if _is_default(head, remote_code) else "executed_slow")
    blocks = executed[head][remote_code]
    assert len(blocks) == len(EXPECTED[head]), [b["code"] for b in blocks]
    for block, patterns in zip(blocks, EXPECTED[head]):
        assert block["status"] == 0, f"{block['name']} failed:\n{block['code']}\n{block['out']}"
        for pattern in patterns:
            assert re.search(pattern, block["out"], flags=re.MULTILINE), (block["out"], pattern)
        if remote_code:
            assert "trust_remote_code=True" in block["code"] and "import mmzoo" not in block["code"]
            assert block["mmzoo"] == []
        else:
            assert "import mmzoo" in block["code"] and "trust_remote_code" not in block["code"]


@pytest.mark.parametrize("head", HEADS)
def test_pipeline_tag_follows_the_head(pushed_cards, head):
    from huggingface_hub import HfApi, ModelCard

    repo_id, readme = pushed_cards[head][False]
    assert ModelCard(readme).data.pipeline_tag == PIPELINE_TAGS[head]
    assert HfApi().model_info(repo_id).pipeline_tag == PIPELINE_TAGS[head]
    wanted = {"vqa": "AutoModelForVisualQuestionAnswering", "captioning": "model.generate(",
              "albef": "P(match"}.get(head)
    if wanted:
        assert wanted in readme


def test_the_runner_catches_a_broken_snippet(executed):
    """A block using a name it never defines (what the old cards' snippets did) is reported as failed."""
    [broken] = executed["broken"][False]
    assert broken["status"] == 1 and "NameError: name 'image' is not defined" in broken["out"]
