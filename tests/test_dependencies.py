"""A fresh ``pip install .`` brings only ``[project].dependencies``: every package the library imports at
module level must be declared there, and every other third-party import must be declared at least as an
optional extra (and then be imported lazily: inside the function that needs it, or under ``try/except ImportError``). A
CI that installs the
extras would otherwise hide the gap, as it once hid scipy."""

from __future__ import annotations

import ast
import functools
import importlib.metadata as md
import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "moe_ablate"
# import name -> distribution name where they differ and the distribution may not be installed here
ALIASES = {"yaml": "pyyaml", "PIL": "pillow", "sklearn": "scikit-learn", "mlflow": "mlflow-skinny"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: list[str]) -> set[str]:
    return {_norm(re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]) for r in requirements}


def declared(pyproject: Path) -> tuple[set[str], set[str]]:
    """(required distributions, distributions of the optional extras)."""
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = set().union(*(_names(v) for v in project.get("optional-dependencies", {}).values()))
    return _names(project.get("dependencies", [])), extras


def _guarded(node: ast.Try) -> bool:
    """``try: import x / except ImportError`` makes x optional by construction."""
    return any(h.type is not None and any(n in ast.unparse(h.type) for n in ("ImportError", "ModuleNotFoundError"))
               for h in node.handlers)


def imports(tree: ast.Module) -> tuple[set[str], set[str]]:
    """(top-level modules imported at module level, those imported anywhere else), absolute imports only."""
    module_level, lazy = set(), set()

    def visit(node: ast.AST, top: bool) -> None:
        if isinstance(node, ast.Try) and _guarded(node):
            top = False
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            top = False
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        (module_level if top else lazy).update(n.split(".")[0] for n in names)
        for child in ast.iter_child_nodes(node):
            visit(child, top)

    visit(tree, True)
    return module_level, lazy


@functools.cache
def _installed() -> dict[str, list[str]]:
    return md.packages_distributions()


def distribution(module: str) -> str:
    installed = _installed().get(module)
    return _norm(installed[0] if installed else ALIASES.get(module, module))


def undeclared(package: Path, pyproject: Path) -> list[str]:
    """One line per import that a fresh install (or an extra) would not provide."""
    required, extras = declared(pyproject)
    third_party = lambda m: m not in sys.stdlib_module_names and m not in {package.name, "__future__"}  # noqa: E731
    problems = []
    for f in sorted(package.rglob("*.py")):
        module_level, lazy = imports(ast.parse(f.read_text(), filename=str(f)))
        where = f.relative_to(package.parent)
        for m in sorted(filter(third_party, module_level)):
            if distribution(m) not in required:
                problems.append(f"{where}: `import {m}` at module level, `{distribution(m)}` not in dependencies")
        for m in sorted(filter(third_party, lazy - module_level)):
            if distribution(m) not in required | extras:
                problems.append(f"{where}: `import {m}`, `{distribution(m)}` in neither dependencies nor an extra")
    return problems


def test_every_import_of_the_library_is_declared_in_pyproject():
    assert undeclared(PACKAGE, ROOT / "pyproject.toml") == []


def test_the_check_catches_an_undeclared_module_level_import(tmp_path):
    """The check itself can fail: scipy imported at module level with scipy missing from the dependencies
    (the bug a newcomer met), and an extra imported at module level instead of lazily."""
    pkg = tmp_path / "moe_ablate"
    pkg.mkdir()
    (pkg / "a.py").write_text("import os\nfrom scipy import stats\nfrom . import b\n"
                              "try:\n    import yaml\nexcept ImportError:\n    yaml = None\n")
    (pkg / "b.py").write_text("import ray\n\ndef f():\n    import wandb\n    import lm_eval\n")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["numpy"]\n'
                                             '[project.optional-dependencies]\nray = ["ray>=2"]\nwandb = ["wandb"]\n')
    problems = undeclared(pkg, tmp_path / "pyproject.toml")
    assert [p.split(": ", 1)[1].split(",")[0] for p in problems] == [
        "`import scipy` at module level", "`import yaml`", "`import ray` at module level", "`import lm_eval`"]
    assert [p.split(":")[0] for p in problems] == ["moe_ablate/a.py"] * 2 + ["moe_ablate/b.py"] * 2
