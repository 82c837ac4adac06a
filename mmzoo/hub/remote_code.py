"""Export mmzoo's modeling code for ``trust_remote_code=True`` loading without mmzoo installed.

transformers' dynamic-module loader (``transformers.dynamic_module_utils``) fetches an entry file named in
``auto_map`` plus every file it imports as ``from .name import ...``, all from the repo's top folder. mmzoo's
modeling code spans packages, so the bundler walks the imports of ``mmzoo.modeling`` with ``ast``, copies each
module into one flat file (``mmzoo.fusion.co_attention`` -> ``mmzoo_fusion_co_attention.py``) and rewrites every
intra-mmzoo import (relative or absolute) into a flat relative import. The registries' ``importlib`` loops in
package ``__init__`` files become explicit imports. Three entry files (``configuration_mmzoo.py``,
``modeling_mmzoo.py``, ``processing_mmzoo.py``) re-export the classes named in ``auto_map``.

The loader runs each repo in its own ``transformers_modules.<user>.<repo>.<commit>`` package, so a bundle's
registries are separate objects from those of an installed mmzoo; the two never collide.
"""

from __future__ import annotations

import ast
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import HubError
from ..version import __version__
from .card import Run, load_run

PACKAGE = "mmzoo"
ROOTS = ("mmzoo.modeling",)
PACKAGE_DIR = Path(__file__).resolve().parents[1]
CONFIG_ENTRY, MODEL_ENTRY, PROCESSOR_ENTRY = "configuration_mmzoo", "modeling_mmzoo", "processing_mmzoo"

# Auto class -> (mmzoo model class, does the saved model support it? (spec, config.json dict))
MODEL_AUTO_CLASSES: dict[str, tuple[str, Callable[[Any, dict], bool]]] = {
    "AutoModel": ("MmzooModel", lambda spec, config: True),
    "AutoModelForZeroShotImageClassification": ("MmzooForZeroShotImageClassification",
                                                lambda spec, config: spec.scores_pairs),
    "AutoModelForImageTextToText": ("MmzooForConditionalGeneration",
                                    lambda spec, config: spec.generates_text),
    "AutoModelForVisualQuestionAnswering": ("MmzooForVisualQuestionAnswering",
                                            lambda spec, config: "pair_embedding" in spec.fusion.provides
                                            and bool(config.get("answer_vocab"))),
}
# config.json model_type -> config class (the siglip flavour makes the zero-shot pipeline use sigmoid scores)
CONFIG_CLASSES = {"mmzoo": "MmzooConfig", "mmzoo_siglip": "MmzooSiglipConfig"}
PROCESSOR_CLASS = "MmzooProcessor"
PROCESSOR_CLASSES = (PROCESSOR_CLASS, "MmzooAudioProcessor")  # the saved processor_config.json names which one


@dataclass(frozen=True)
class CodeBundle:
    """Flat source files (name -> text) and the mmzoo module each was made from (module -> flat name)."""

    files: dict[str, str]
    modules: dict[str, str]
    packages: tuple[str, ...]  # third-party top-level packages the files import (must be installed to load)


# -- module graph ----------------------------------------------------------------------------------------------
def flat_name(module: str) -> str:
    """``mmzoo.fusion.co_attention`` -> ``mmzoo_fusion_co_attention`` (a package keeps its own name)."""
    return module.replace(".", "_")


def module_file(module: str) -> Path | None:
    """Source file of an mmzoo module (``.py`` or package ``__init__.py``); None if there is none."""
    base = PACKAGE_DIR.joinpath(*module.split(".")[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if module != PACKAGE and candidate.is_file():
            return candidate
    return PACKAGE_DIR / "__init__.py" if module == PACKAGE else None


def _is_package(module: str) -> bool:
    file = module_file(module)
    return file is not None and file.name == "__init__.py"


def _ours(module: str | None) -> bool:
    return module is not None and (module == PACKAGE or module.startswith(PACKAGE + "."))


def _absolute(node: ast.ImportFrom, module: str) -> str:
    """The absolute module a ``from ... import`` statement in ``module`` reads from."""
    if node.level == 0:
        return node.module or ""
    parts = module.split(".") if _is_package(module) else module.split(".")[:-1]
    if node.level - 1 > len(parts) - 1:
        raise HubError(f"{module_file(module)}:{node.lineno}: relative import goes above the {PACKAGE} package")
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join(parts + ([node.module] if node.module else []))


def _loop_submodules(node: ast.stmt, module: str) -> list[str] | None:
    """Submodules imported by a registry loop ``for name in ("a", ...): importlib.import_module(...)``."""
    if not (isinstance(node, ast.For) and isinstance(node.iter, (ast.Tuple, ast.List))):
        return None
    if not all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.iter.elts):
        return None
    if not any(_is_import_module_call(n) for n in ast.walk(node)):
        return None
    if not _is_package(module):
        raise HubError(f"{module_file(module)}:{node.lineno}: an importlib loop outside a package __init__ cannot "
                       "be bundled; import the modules explicitly")
    # the loop skips modules that do not exist; so does the bundle
    return [f"{module}.{e.value}" for e in node.iter.elts if module_file(f"{module}.{e.value}") is not None]


def _is_import_module_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Attribute) and func.attr == "import_module") or (
        isinstance(func, ast.Name) and func.id in ("import_module", "__import__"))


class _Edit:
    """One statement replaced by flat imports; ``deps`` are the mmzoo modules it needs."""

    def __init__(self, node: ast.stmt, statements: list[str], deps: list[str]) -> None:
        self.node, self.statements, self.deps = node, statements, deps


def _anchor(module: str) -> str:
    """A name defined at the top of ``module`` (``from .flat import <anchor>`` makes transformers fetch the file)."""
    tree = ast.parse(module_file(module).read_text(encoding="utf-8"))
    for stmt in tree.body:
        if isinstance(stmt, (ast.ClassDef, ast.FunctionDef)) and not stmt.name.startswith("_"):
            return stmt.name
    return "__name__"


def _module_import(target: str, alias: str) -> list[str]:
    """Bind module ``target`` to ``alias``. ``from . import x`` alone is invisible to transformers' file fetcher
    (its regex reads ``from .x import``), so an anchor import names the file first."""
    flat = flat_name(target)
    return [f"from .{flat} import {_anchor(target)} as _{flat}  # noqa: F401 (makes transformers fetch the file)",
            f"from . import {flat} as {alias}"]


def _edits(tree: ast.Module, module: str) -> list[_Edit]:
    edits: list[_Edit] = []
    loops = {id(stmt): subs for stmt in tree.body if (subs := _loop_submodules(stmt, module)) is not None}
    in_loops = {id(n) for stmt in tree.body if id(stmt) in loops for n in ast.walk(stmt)} - set(loops)
    for node in ast.walk(tree):
        if id(node) in in_loops:
            continue
        if id(node) in loops:
            subs = loops[id(node)]
            edits.append(_Edit(node, [f"from .{flat_name(s)} import {_anchor(s)} as _{flat_name(s)}  # noqa: F401 "
                                      "(imported for its registrations)" for s in subs], subs))
        elif isinstance(node, ast.ImportFrom) and (node.level > 0 or _ours(node.module)):
            edits.append(_from_import(node, module))
        elif isinstance(node, ast.Import) and any(_ours(a.name) for a in node.names):
            edits.append(_plain_import(node, module))
        elif _is_import_module_call(node):
            args = node.args[:1]
            if args and any(isinstance(n, (ast.Constant, ast.JoinedStr)) and PACKAGE in ast.unparse(n)
                            or isinstance(n, ast.Name) and n.id in ("__name__", "__package__")
                            for a in args for n in ast.walk(a)):
                raise HubError(f"{module_file(module)}:{node.lineno}: dynamic import of an mmzoo module "
                               f"({ast.unparse(node)}) cannot be bundled for remote code; import it explicitly")
    return edits


def _from_import(node: ast.ImportFrom, module: str) -> _Edit:
    target = _absolute(node, module)
    where = f"{module_file(module)}:{node.lineno}"
    if module_file(target) is None:
        raise HubError(f"{where}: imports {target!r}, which is not a module of the {PACKAGE} package")
    names, statements, deps = [], [], [target]
    for alias in node.names:
        sub = f"{target}.{alias.name}"
        if alias.name != "*" and module_file(sub) is not None:  # `from . import x`: a submodule
            statements += _module_import(sub, alias.asname or alias.name)
            deps.append(sub)
        else:
            names.append(alias.name + (f" as {alias.asname}" if alias.asname else ""))
    if names:
        if target == PACKAGE:
            raise HubError(f"{where}: imports {names} from the top-level {PACKAGE} package, which pulls in the whole "
                           "library; import from the module that defines them")
        statements.insert(0, f"from .{flat_name(target)} import {', '.join(names)}")
    else:
        deps.remove(target)  # only submodules were imported
    return _Edit(node, statements, deps)


def _plain_import(node: ast.Import, module: str) -> _Edit:
    statements, deps = [], []
    for alias in node.names:
        if not _ours(alias.name):
            statements.append(f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else ""))
            continue
        if alias.asname is None or module_file(alias.name) is None:
            raise HubError(f"{module_file(module)}:{node.lineno}: `import {alias.name}` cannot be bundled for remote "
                           f"code; write `from {alias.name.rpartition('.')[0] or alias.name} import ...` instead")
        statements += _module_import(alias.name, alias.asname)
        deps.append(alias.name)
    return _Edit(node, statements, deps)


def _rewrite(source: str, edits: list[_Edit]) -> str:
    """Apply the edits to ``source`` (ast offsets are UTF-8 byte offsets), keeping comments and layout."""
    data = source.encode("utf-8")
    lines = data.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    for edit in sorted(edits, key=lambda e: (e.node.lineno, e.node.col_offset), reverse=True):
        node, line = edit.node, lines[edit.node.lineno - 1]
        indent = line[: len(line) - len(line.lstrip())].rstrip(b"\r\n")
        separator = b"\n" + indent if node.col_offset == len(indent) else b"; "
        text = separator.join(s.encode("utf-8") for s in edit.statements) or b"pass"
        begin = starts[node.lineno - 1] + node.col_offset
        end = starts[node.end_lineno - 1] + node.end_col_offset
        data = data[:begin] + text + data[end:]
    return data.decode("utf-8")


def bundle_code(roots: tuple[str, ...] = ROOTS) -> CodeBundle:
    """Flatten every mmzoo module reachable from ``roots`` and add the three entry files.

    Raises:
        HubError: an import the bundle cannot express (``import mmzoo.x`` without ``as``, a dynamic import of
            an mmzoo module by name, an import from the top-level package), or a file transformers would misread.
    """
    queue, modules, files = list(roots), {}, {}
    while queue:
        module = queue.pop(0)
        if module in modules:
            continue
        file = module_file(module)
        if file is None:
            raise HubError(f"cannot bundle {module!r}: no such module in {PACKAGE_DIR}")
        source = file.read_text(encoding="utf-8")
        try:
            tree = ast.parse(source, filename=str(file))
        except SyntaxError as err:
            raise HubError(f"{file}: cannot be parsed for the remote-code bundle ({err})") from None
        edits = _edits(tree, module)
        name = flat_name(module)
        if f"{name}.py" in files or name in (CONFIG_ENTRY, MODEL_ENTRY, PROCESSOR_ENTRY):
            raise HubError(f"{file}: flat file name {name}.py is already taken; rename the module")
        modules[module] = name
        relative = file.relative_to(PACKAGE_DIR.parent).as_posix()
        header = (f"# Generated by mmzoo {__version__} from {relative} for transformers' trust_remote_code loading;"
                  " imports are flattened. Do not edit.\n")
        files[f"{name}.py"] = header + _rewrite(source, edits)
        queue += [dep for edit in edits for dep in edit.deps]
    files.update(_entry_files(modules[roots[0]]))
    return CodeBundle(files, modules, _check(files))


def _entry_files(package: str) -> dict[str, str]:
    """Entry files re-exporting the classes of ``auto_map`` from the flat ``package`` (``mmzoo.modeling``)."""
    doc = (f'"""Entry point for `{{auto}}.from_pretrained(repo, trust_remote_code=True)`: mmzoo {__version__}\'s '
           f'classes, loadable without mmzoo installed (generated by mmzoo.hub.remote_code)."""\n\n')
    model_classes = [cls for cls, _ in MODEL_AUTO_CLASSES.values()]
    siglip = "".join(f"\n\nclass {_siglip(cls)}({cls}):\n    config_class = MmzooSiglipConfig\n"
                     for cls in model_classes)
    return {
        f"{CONFIG_ENTRY}.py": doc.format(auto="AutoConfig")
        + f"from .{package} import {', '.join(CONFIG_CLASSES.values())}\n",
        f"{MODEL_ENTRY}.py": doc.format(auto="AutoModel")
        + f"from .{package} import MmzooSiglipConfig, {', '.join(model_classes)}\n{siglip}",
        f"{PROCESSOR_ENTRY}.py": doc.format(auto="AutoProcessor") + f"from .{package} import {', '.join(PROCESSOR_CLASSES)}\n",
    }


def _siglip(cls: str) -> str:
    return cls.replace("Mmzoo", "MmzooSiglip", 1)


def _check(files: dict[str, str]) -> tuple[str, ...]:
    """Check the bundle with transformers' own readers; returns the third-party packages it imports."""
    from transformers.dynamic_module_utils import get_imports, get_relative_imports

    packages: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="mmzoo-remote-code-") as tmp:
        for name, text in files.items():
            (Path(tmp) / name).write_text(text, encoding="utf-8")
        for name in files:
            path = Path(tmp) / name
            missing = [m for m in get_relative_imports(path) if f"{m}.py" not in files]
            if missing:
                raise HubError(f"remote-code bundle file {name} names {missing} in a `from .x import` line (maybe in a "
                               "docstring) that is not in the bundle; transformers would fail to fetch them")
            packages.update(get_imports(path))
    if PACKAGE in packages:
        raise HubError(f"remote-code bundle still imports {PACKAGE!r}; it would not load without mmzoo installed")
    return tuple(sorted(p for p in packages if p not in sys.stdlib_module_names))


# -- run directory -> files to push ----------------------------------------------------------------------------
def auto_map(run: Run) -> dict[str, str]:
    """config.json's ``auto_map``: the config class for the run's model_type and the Auto classes it supports."""
    model_type = run.config.get("model_type")
    if model_type not in CONFIG_CLASSES:
        raise HubError(f"{run.path / 'config.json'}: model_type {model_type!r} has no remote-code config class; "
                       f"expected one of {sorted(CONFIG_CLASSES)}")
    siglip = model_type == "mmzoo_siglip"
    mapping = {"AutoConfig": f"{CONFIG_ENTRY}.{CONFIG_CLASSES[model_type]}"}
    for auto, (cls, supported) in MODEL_AUTO_CLASSES.items():
        if supported(run.spec, run.config):
            mapping[auto] = f"{MODEL_ENTRY}.{_siglip(cls) if siglip else cls}"
    return mapping


def remote_code_files(run_dir: str | Path | Run, bundle: CodeBundle | None = None) -> dict[str, bytes]:
    """The bundle's files plus ``config.json`` / ``processor_config.json`` with their ``auto_map`` set.

    Example:
        >>> files = remote_code_files("runs/mm-clip-tiny")  # doctest: +SKIP
        >>> json.loads(files["config.json"])["auto_map"]["AutoModel"]  # doctest: +SKIP
        'modeling_mmzoo.MmzooModel'
    """
    run = run_dir if isinstance(run_dir, Run) else load_run(run_dir)
    bundle = bundle or bundle_code()
    out = {name: text.encode("utf-8") for name, text in bundle.files.items()}
    out["config.json"] = _json({**run.config, "auto_map": auto_map(run)})
    processor_file = run.path / "processor_config.json"
    if not processor_file.is_file():
        raise HubError(f"{processor_file}: no such file; save the processor with save_pretrained() next to the model "
                       "so AutoProcessor can load it with trust_remote_code=True")
    try:
        processor = json.loads(processor_file.read_text(encoding="utf-8"))
    except ValueError as err:
        raise HubError(f"{processor_file}: cannot be parsed ({err}); save the processor again") from None
    name = processor.get("processor_class") if processor.get("processor_class") in PROCESSOR_CLASSES else PROCESSOR_CLASS
    processor["auto_map"] = {**processor.get("auto_map", {}), "AutoProcessor": f"{PROCESSOR_ENTRY}.{name}"}
    out["processor_config.json"] = _json(processor)
    return out


def export_remote_code(run_dir: str | Path) -> list[Path]:
    """Write :func:`remote_code_files` into the run directory (``config.json`` and ``processor_config.json`` get
    their ``auto_map``), so ``AutoModel.from_pretrained(run_dir, trust_remote_code=True)`` works from the folder."""
    files = remote_code_files(run_dir)
    target, written = Path(run_dir), []
    for name, data in sorted(files.items()):
        (target / name).write_bytes(data)
        written.append(target / name)
    return written


def _json(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")
