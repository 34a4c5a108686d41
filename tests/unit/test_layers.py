"""Imports run downward only: composition root → features → kernel and shared modules.

Read from the source with `ast`, so an import inside a function or under TYPE_CHECKING counts too:
the layers are a design rule, not only a run-time one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FEATURES = ("collector", "gpu_agent", "workload", "alerting", "dashboard", "runbooks")
# The only modules that may import features: they compose `vigil up`.
COMPOSITION_ROOT = ("vigil.cli", "vigil.app", "vigil.supervisor", "vigil.serve", "vigil.health")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    return imports_in(path.read_text(), module_name(path), is_package=path.name == "__init__.py")


def imports_in(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module `source` imports, absolute; `from a import b` yields both `a` and `a.b`."""
    tree = ast.parse(source)
    package = module.split(".")
    if not is_package:
        package.pop()
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            name = ".".join([*base, *([node.module] if node.module else [])])
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


def within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def sources(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def violations(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module_name(path)} imports {name}"
        for path in sources(package)
        for name in imports(path)
        if any(within(name, f) for f in forbidden)
    )


@pytest.mark.parametrize("feature", FEATURES)
def test_a_feature_imports_no_other_feature_and_not_the_composition_root(feature: str) -> None:
    others = tuple(f for f in FEATURES if f != feature)
    assert violations(feature, (*others, *COMPOSITION_ROOT)) == []


def test_the_kernel_and_shared_modules_import_no_feature_and_not_the_composition_root() -> None:
    found = []
    for path in sources("vigil"):
        if any(within(module_name(path), root) for root in COMPOSITION_ROOT):
            continue
        found += [
            f"{module_name(path)} imports {name}"
            for name in imports(path)
            if any(within(name, f) for f in (*FEATURES, *COMPOSITION_ROOT))
        ]
    assert sorted(found) == []


def test_the_rule_sees_relative_imports_and_imports_inside_functions() -> None:
    source = "from . import service\nfrom ..vigil import app\n\ndef f():\n    from workload import engine\n"
    found = imports_in(source, "collector.probe")
    assert {"collector.service", "vigil.app", "workload.engine"} <= found
    assert imports_in("from .pipeline import X\n", "collector", is_package=True) >= {"collector.pipeline"}
