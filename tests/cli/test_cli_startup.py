"""`mmzoo --help`, `validate`, `schema` and `zoo list` start without importing torch or transformers.

Each command runs as the installed console script does (a file named `mmzoo` calling `mmzoo.cli.main`) and as
`python -m mmzoo.cli`, under `-X importtime`, which lists every module the process imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
HEAVY = ("torch", "transformers", "datasets", "accelerate", "matplotlib")
LIGHT_COMMANDS = [["--help"], ["validate", "mm-clip-tiny"], ["schema"], ["schema", "recipe"], ["zoo", "list"],
                  ["zoo", "list", "--datasets"], ["zoo", "list", "--tokenizers"]]


def _imported(cmd: list[str], tmp_path: Path) -> tuple[set[str], str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-X", "importtime", *cmd], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    modules = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    return modules, proc.stdout


@pytest.fixture(scope="module")
def console_script(tmp_path_factory) -> Path:
    """What pip writes for `[project.scripts] mmzoo = "mmzoo.cli:main"`."""
    path = tmp_path_factory.mktemp("bin") / "mmzoo"
    path.write_text("import sys\nfrom mmzoo.cli import main\nsys.exit(main())\n")
    return path


@pytest.mark.parametrize("args", LIGHT_COMMANDS, ids=" ".join)
def test_light_commands_import_no_model_stack(console_script, tmp_path, args):
    modules, out = _imported([str(console_script), *args], tmp_path)
    assert out.strip()
    assert not {m.split(".")[0] for m in modules} & set(HEAVY), sorted(m for m in modules if m.split(".")[0] in HEAVY)


def test_python_dash_m_is_light_too(tmp_path):
    modules, out = _imported(["-m", "mmzoo.cli", "--help"], tmp_path)
    assert "usage: mmzoo" in out and "torch" not in modules and "transformers" not in modules


def test_the_check_can_fail(tmp_path):
    """A plain `import mmzoo` does load the model stack (and registers the Auto classes): the check sees it."""
    modules, _ = _imported(["-c", "import mmzoo; print(mmzoo.MmzooModel)"], tmp_path)
    assert "torch" in modules and "transformers" in modules
