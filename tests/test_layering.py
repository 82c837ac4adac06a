"""mmzoo/specs must not import torch or transformers (specs are pure pydantic)."""

from __future__ import annotations

import ast
from pathlib import Path

SPECS = Path(__file__).parents[1] / "mmzoo" / "specs"
FORBIDDEN = {"torch", "transformers"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_specs_do_not_import_torch():
    files = list(SPECS.glob("*.py"))
    assert files
    for path in files:
        assert not imported_roots(path) & FORBIDDEN, path


def test_specs_import_without_torch_in_subprocess():
    import subprocess
    import sys

    code = "import sys, mmzoo.specs; assert 'torch' not in sys.modules, 'torch imported'"
    # mmzoo/__init__ imports the models; import the subpackage alone through a path hack
    code = ("import importlib.util, sys; sys.modules['mmzoo'] = type(sys)('mmzoo'); "
            f"sys.modules['mmzoo'].__path__ = [{str(SPECS.parent)!r}]; " + code)
    subprocess.run([sys.executable, "-c", code], check=True)
