"""The import rules between the five packages, and imports without side effects.

Layering (imports only go down; ``ncaio`` is the shared floor):

    ncaio     imports nothing of the project
    nca       ncaio
    lm        ncaio (it trains on any token dataset; it never imports nca, not even lazily)
    search    ncaio, nca, lm; lazily also analysis.trial_figure (the per-trial figure artifact),
              analysis.frame and analysis.confirmation (the closing summary's confirmed table
              and power, read as the report reads them)
    analysis  at module level ncaio, search.storage and search.record (the storage opener and the
              trial record, both torch-free); nca and lm only lazily, inside functions

Imports are read with ``ast``: module-level ones are those that run on import (``if
TYPE_CHECKING:`` blocks are skipped), lazy ones are inside a function or class body.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("ncaio", "nca", "lm", "search", "analysis")

TOP_LEVEL_ALLOWED: dict[str, tuple[str, ...]] = {
    "ncaio": (),
    "nca": ("ncaio",),
    "lm": ("ncaio",),
    "search": ("ncaio", "nca", "lm"),
    "analysis": ("ncaio", "search.storage", "search.record"),
}
LAZY_ALLOWED: dict[str, tuple[str, ...]] = {
    "ncaio": (),
    "nca": ("ncaio",),
    "lm": ("ncaio",),
    "search": ("ncaio", "nca", "lm", "analysis.trial_figure", "analysis.frame",
               "analysis.confirmation"),
    "analysis": ("ncaio", "search.storage", "search.record", "nca", "lm"),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class _Import:
    module: str
    """The imported project module (``from search import storage`` is ``search.storage``)."""
    line: int
    """Where the import is."""
    lazy: bool
    """True inside a function or class body."""


def _modules(package: str) -> list[Path]:
    return sorted((REPO / package).glob("*.py"))


def _module_name(path: Path) -> str:
    package = path.parent.name
    return package if path.stem == "__init__" else f"{package}.{path.stem}"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _targets(node: ast.Import | ast.ImportFrom, path: Path) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: resolve against the module's own package
        base = ".".join([path.parent.name, *([base] if base else [])])
    names = []
    for alias in node.names:
        sub = REPO / Path(*base.split(".")) / f"{alias.name}.py"
        names.append(f"{base}.{alias.name}" if sub.is_file() else base)
    return names


def _imports(path: Path) -> list[_Import]:
    """Every project import of a module, module-level or lazy."""
    found: list[_Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for module in _targets(node, path):
                if module.split(".")[0] in PACKAGES:
                    found.append(_Import(module=module, line=node.lineno, lazy=lazy))
        inner = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                                          ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(path.read_text(), filename=str(path)), False)
    return found


def _allowed(module: str, rules: tuple[str, ...]) -> bool:
    return any(module == r or module.startswith(r + ".") for r in rules)


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_follow_the_layering(package: str) -> None:
    bad = []
    for path in _modules(package):
        for imp in _imports(path):
            if imp.module.split(".")[0] == package:
                continue
            rules = LAZY_ALLOWED[package] if imp.lazy else TOP_LEVEL_ALLOWED[package]
            if not _allowed(imp.module, rules):
                where = "inside a function" if imp.lazy else "at module level"
                bad.append(f"{path.relative_to(REPO)}:{imp.line} imports {imp.module} {where}")
    assert not bad, "\n".join(bad)


def test_no_library_module_imports_an_lm_command_line() -> None:
    """The cache keys leave lm's command lines out of lm's source (search.plan.lm_source_key):
    sound only while nothing a trial runs imports them."""
    from search.plan import LM_COMMAND_LINES

    lines = {f"lm.{Path(name).stem}" for name in LM_COMMAND_LINES}
    bad = [f"{path.relative_to(REPO)}:{imp.line} imports {imp.module}"
           for package in PACKAGES for path in _modules(package)
           if _module_name(path) not in lines
           for imp in _imports(path) if imp.module in lines]
    assert not bad, "\n".join(bad)



def test_nca_generator_modules_are_what_a_data_build_imports() -> None:
    """``nca._util._GENERATOR_MODULES`` (the NCA cache's code version) is kept by hand: it must be
    exactly the nca modules ``nca.dataset`` imports, directly or not, so a new module a build runs
    can never be left out of the key (and a tool module, such as ``nca.render``, never retires
    every cached dataset)."""
    from nca import _util

    seen, todo = set(), ["nca.dataset"]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            path = REPO / Path(*name.split(".")).with_suffix(".py")
            todo.extend(i.module for i in _imports(path) if i.module.startswith("nca."))
    assert {f"{name.split('.')[1]}.py" for name in seen} == set(_util._GENERATOR_MODULES)

def test_the_checker_sees_every_kind_of_import(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A rule test that parses nothing would pass: check the parser on each form."""
    pkg = tmp_path / "analysis"
    pkg.mkdir()
    (pkg / "frame.py").write_text("")
    (pkg / "x.py").write_text(
        "import nca.rules\nfrom search import storage\nfrom . import frame\nfrom .frame import y\n"
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import lm\n"
        "try:\n    import search.trial\nexcept ImportError:\n    pass\n"
        "def f():\n    import lm.model\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    (search_pkg := tmp_path / "search").mkdir()
    (search_pkg / "storage.py").write_text("")
    got = [(i.module, i.lazy) for i in _imports(pkg / "x.py")]
    assert got == [("nca.rules", False), ("search.storage", False), ("analysis.frame", False),
                   ("analysis.frame", False), ("search.trial", False), ("lm.model", True)]


def _fresh(code: str) -> Any:
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_search_storage_imports_no_torch_and_no_other_search_module() -> None:
    got = _fresh("import json, sys\nimport search.storage\n"
                 "print(json.dumps(sorted(m for m in sys.modules if m == 'torch'"
                 " or m.split('.')[0] in ('search', 'nca', 'lm', 'analysis'))))")
    assert got == ["search", "search.storage"]


_EVERY_MODULE = """
import importlib, json, logging, pkgutil, sys
import matplotlib, torch

def state():
    return {"backend": repr(dict.__getitem__(matplotlib.rcParams, "backend")),  # not resolved
            "threads": torch.get_num_threads(), "interop": torch.get_num_interop_threads(),
            "root_handlers": [repr(h) for h in logging.getLogger().handlers],
            "root_level": logging.getLogger().level}

torch.set_num_threads(3)  # a value no module would pick
before = state()
names = []
for package in %r:
    pkg = importlib.import_module(package)
    names.append(package)
    for m in pkgutil.iter_modules(pkg.__path__):
        names.append(f"{package}.{m.name}")
        importlib.import_module(names[-1])
print(json.dumps({"before": before, "after": state(), "modules": names}))
"""


def test_importing_every_module_changes_no_process_wide_state() -> None:
    got = _fresh(_EVERY_MODULE % (PACKAGES,))
    assert got["after"] == got["before"]
    assert len(got["modules"]) == sum(len(_modules(p)) for p in PACKAGES)
