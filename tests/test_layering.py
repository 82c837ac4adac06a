"""The import direction between mmzoo's packages, and mmzoo/specs free of torch and transformers.

Every package sits in a layer (``LAYERS``, lowest first); a module may import from its own layer and the layers
below, never from above. Imports inside functions and ``importlib.import_module("mmzoo....")`` count too: a lazy
import is still a dependency.
"""

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


PACKAGE = Path(__file__).parents[1] / "mmzoo"
# lowest first; a package may import its own layer and those below
LAYERS = [
    {"errors", "version", "utils", "_registry", "modalities"},
    {"specs", "presets", "_spec_io", "_sources"},
    {"losses", "data"},
    {"encoders"},
    {"fusion"},
    {"objectives"},
    {"modeling", "adapters"},  # LoRA injection: modeling applies it, adapters' helpers load models (both lazy)
    {"builder"},
    {"recipe"},
    {"train"},
    {"eval"},
    {"hub"},
    {"cli", "testing", "__init__"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}
# upward edges allowed, each with its reason; none today (what a lower layer needs from a higher one comes in as
# a service that `import mmzoo` provides: mmzoo.utils.services)
KNOWN_UPWARD: dict[tuple[str, str], str] = {}


def _package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def mmzoo_imports(path: Path) -> set[str]:
    """Modules of mmzoo that ``path`` imports (absolute, relative, lazy or through importlib)."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("").parts
    module = list(rel[:-1] if rel[-1] == "__init__" else rel)
    here = module if path.name == "__init__.py" else module[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here[: len(here) - (node.level - 1)]
            if node.module:
                found.add(".".join([*base, node.module]))
            else:
                found |= {".".join([*base, a.name]) for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "mmzoo":
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "mmzoo"}
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("mmzoo")):
            found.add(node.args[0].value)
    return found


def package_edges() -> dict[tuple[str, str], set[str]]:
    edges: dict[tuple[str, str], set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _package_of(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
        for module in mmzoo_imports(path):
            target = _package_of(module)
            if target != source:
                edges.setdefault((source, target), set()).add(str(path.relative_to(PACKAGE.parent)))
    return edges


def test_every_package_has_a_layer():
    packages = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
                if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists()))}
    assert packages - set(LAYER) == set(), "add the new package to LAYERS"


def test_imports_only_point_down():
    edges = package_edges()
    assert ("modeling", "fusion") in edges and ("train", "modeling") in edges  # the scan sees real imports
    upward = {edge: files for edge, files in edges.items() if LAYER[edge[1]] > LAYER[edge[0]]}
    unexpected = {edge: sorted(files) for edge, files in upward.items() if edge not in KNOWN_UPWARD}
    assert not unexpected, f"imports against the layering (source, target): files {unexpected}"
