"""Every name the project imports from a module of `mmm_core` is in that module's `__all__`.

A module's `__all__` is its public interface (STYLE.md): a name used elsewhere but missing
from it is a hidden dependency, and a name listed but undefined is a broken promise.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mmm_core", "mmm_cli", "pipelines", "components", "benchmarks")


@functools.cache
def _imports() -> list[tuple[str, str, str]]:
    """(importing file:line, module, name) of every ``from mmm_core.X import name``."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mmm_core"):
                    where = f"{path.relative_to(ROOT)}:{node.lineno}"
                    found.extend((where, node.module, alias.name) for alias in node.names)
    return found


def _modules() -> list[str]:
    return sorted({module for _, module, _ in _imports()})


def test_the_scan_sees_the_engine():
    modules = _modules()
    assert {"mmm_core.engine.build", "mmm_core.engine.phases", "mmm_core.engine.lifecycle"} <= set(
        modules
    )


@pytest.mark.parametrize("module", _modules())
def test_imported_names_are_exported(module: str):
    loaded = importlib.import_module(module)
    exported = getattr(loaded, "__all__", None)
    if exported is None:  # a package namespace: its submodules are what is imported
        assert hasattr(loaded, "__path__"), f"{module} has no __all__"
        return
    missing = [n for n in exported if not hasattr(loaded, n)]
    assert not missing, f"{module}.__all__ lists undefined names {missing}"
    hidden = sorted(
        f"{where} imports {name}"
        for where, source, name in _imports()
        if source == module and name not in exported and not _is_submodule(loaded, name)
    )
    assert not hidden, f"{module}: names used elsewhere but missing from __all__: {hidden}"


def _is_submodule(loaded, name: str) -> bool:
    if not hasattr(loaded, "__path__"):
        return False
    return importlib.util.find_spec(f"{loaded.__name__}.{name}") is not None
