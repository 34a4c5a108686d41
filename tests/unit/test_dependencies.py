"""Every third-party module the shipped packages import is a declared runtime dependency.

`make test` installs the test extras too, so a runtime import that only an extra provides (httpx
once was) passes every other test and breaks `make up` on a fresh machine. This scan needs no
network; `make install-check` (tests/install) proves the same by running from a bare install.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from tests.project import ROOT, normalize, runtime_requirements, shipped_packages


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(source: str) -> Iterator[tuple[str, int]]:
    """(module, line) for every absolute import, at any depth, but not under `if TYPE_CHECKING:`.

    `from a.b import c` yields `a.b.c`: c may be a submodule, which matters in a namespace package.
    """
    stack: list[ast.AST] = [ast.parse(source)]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)  # the body never runs
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                yield (node.module if alias.name == "*" else f"{node.module}.{alias.name}"), node.lineno
        stack.extend(ast.iter_child_nodes(node))


@cache
def _top_level_owners() -> dict[str, list[str]]:
    return md.packages_distributions()


@cache
def _files(dist: str) -> tuple[str, ...]:
    return tuple(str(f) for f in md.distribution(dist).files or ())


def distributions_of(module: str) -> set[str]:
    """The installed distributions that provide `module` (normalized names); empty if none does.

    `packages_distributions()` answers by top-level name, which is several distributions for a
    namespace package (`google`, `opentelemetry`); then the owner is whichever ships the longest
    prefix of the module's path.
    """
    parts = module.split(".")
    owners = _top_level_owners().get(parts[0], [])
    if len(owners) <= 1:
        return {normalize(d) for d in owners}
    for depth in range(len(parts), 1, -1):
        path = "/".join(parts[:depth])
        shipping = {
            normalize(d) for d in owners if any(f == f"{path}.py" or f.startswith(f"{path}/") for f in _files(d))
        }
        if shipping:
            return shipping
    return {normalize(d) for d in owners}


def undeclared_imports(files: list[Path], declared: set[str], first_party: set[str]) -> list[str]:
    """One line per import of a third-party module that no declared distribution provides."""
    problems = []
    for path in files:
        for module, line in imported_modules(path.read_text()):
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top in first_party:
                continue
            owners = distributions_of(module)
            where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{line}"
            if not owners:
                problems.append(f"{where}: {module} is installed by no distribution here")
            elif not owners & declared:
                problems.append(f"{where}: {module} comes from {'/'.join(sorted(owners))}, not in dependencies")
    return problems


def package_files() -> list[Path]:
    return sorted(p for pkg in shipped_packages() for p in (ROOT / pkg).rglob("*.py"))


def test_every_third_party_import_is_a_declared_runtime_dependency() -> None:
    problems = undeclared_imports(package_files(), runtime_requirements(), set(shipped_packages()))
    assert not problems, "declare these in pyproject.toml's [project] dependencies:\n" + "\n".join(problems)


def test_the_scan_reads_every_shipped_package() -> None:
    scanned = {p.relative_to(ROOT).parts[0] for p in package_files()}
    assert scanned == {"vigil", "collector", "gpu_agent", "workload", "alerting", "dashboard", "runbooks"}
    modules = {m for p in package_files() for m, _ in imported_modules(p.read_text())}
    # imports inside functions count: the workload's torch and the demo traffic's httpx are such
    assert {"httpx", "torch", "grpc"} <= modules


def test_an_undeclared_import_is_reported_wherever_it_runs(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import json\n"
        "import vigil.logs\n"
        "if TYPE_CHECKING:\n"
        "    import rich\n"
        "else:\n"
        "    import numpy\n"
        "def f():\n"
        "    import httpx\n"
        "    from google.protobuf import json_format\n"
    )
    problems = undeclared_imports([source], {"protobuf"}, {"vigil"})
    assert sorted(p.split(": ", 1)[1] for p in problems) == [
        "httpx comes from httpx, not in dependencies",
        "numpy comes from numpy, not in dependencies",
    ]
    assert sorted(p.split(":")[1] for p in problems) == ["7", "9"]


def test_a_namespace_package_maps_to_the_distribution_that_ships_the_module() -> None:
    assert distributions_of("google.protobuf.json_format") == {"protobuf"}
    assert distributions_of("google.rpc.status_pb2") == {"googleapis-common-protos"}
    assert distributions_of("opentelemetry.metrics.CallbackOptions") == {"opentelemetry-api"}
    assert distributions_of("opentelemetry.sdk.metrics.MeterProvider") == {"opentelemetry-sdk"}
    assert distributions_of("no_such_module_anywhere") == set()
