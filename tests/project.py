"""What pyproject.toml declares: the packages that ship and the runtime requirements they install."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def shipped_packages() -> list[str]:
    """The top-level packages setuptools ships (its `include` patterns, `vigil*` read as `vigil`)."""
    include = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    return sorted({pattern.split(".")[0].rstrip("*") for pattern in include})


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them: `Prometheus_Client` and `prometheus-client` are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_requirements() -> set[str]:
    """The normalized names in `[project] dependencies`: what `pip install .` brings, extras aside."""
    names = set()
    for spec in pyproject()["project"]["dependencies"]:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
        if not match:
            raise ValueError(f"pyproject.toml: cannot read a distribution name in {spec!r}")
        names.add(normalize(match.group(1)))
    return names
