"""Runbook files: the shipped pack loads and ends each runbook by verifying; errors name file:line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runbooks.loader import RunbookFileError, default_pack, load_file, load_runbooks
from runbooks.model import StepKind
from tests.local import ROOT
from tests.unit.runbooks.fakes import SIMPLE

PACK_RULES = ROOT / "alerting" / "pack"


def test_the_pack_loads_and_each_runbook_ends_by_verifying() -> None:
    books = load_runbooks(default_pack())
    assert len(books) >= 9
    for book in books.values():
        assert book.steps[-1].kind in (StepKind.CHECK, StepKind.WAIT_FOR), book.name


def test_every_runbook_the_default_rules_name_is_shipped() -> None:
    import re

    named = set()
    for path in PACK_RULES.glob("*.yaml"):
        named |= set(re.findall(r"^\s*runbook:\s*([a-z0-9-]+)", path.read_text(), re.M))
    books = load_runbooks(default_pack())
    wanted = {"inference-errors", "inference-latency", "inference-outage", "kv-cache-saturated", "engine-stalled",
              "engine-absent", "gpu-xid-reset", "gpu-lost", "gpu-throttling",
              "gpu-ecc-uncorrectable", "gpu-simulated-repair"}  # fmt: skip
    assert wanted <= set(books) and wanted <= named


def error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RunbookFileError) as caught:
        load_file(path)
    return str(caught.value)


@pytest.mark.parametrize(
    ("change", "line", "says"),
    [
        (("action: restart", "action: reboot"), 14, "'reboot' is not an action on a workload target"),
        (("metric: llm.tokens.generated", "metric: llm.tokens.made"), 17, "not in the catalogue"),
        (('llm.endpoint: "${target}"', 'llm.endpoint: "${endpoint}"'), 18, "unknown placeholder(s) endpoint"),
        (("function: rate", "function: avg"), 17, "does not apply to a sum metric"),
        (("timeout: 300ms", "timeout: 5"), 19, "needs a unit"),
        (("retries: 2", "retries: 99"), 11, "from 0 to 10"),
        (("target: workload", "target: cluster"), 3, "unknown target 'cluster'"),
        (("min: 0, max: 1}", "min: 0, max: 1}\n  fraction: {type: int, default: 1}"), 6, "given twice"),
        (("max: 1}", 'max: 1, label: "host name"}'), 5, "'host name' is not a label name"),
    ],
)
def test_errors_name_the_file_and_line(tmp_path: Path, change: tuple[str, str], line: int, says: str) -> None:
    message = error(tmp_path, SIMPLE.replace(*change))
    assert message.startswith(f"{tmp_path / 'bad.yaml'}:{line}: "), message
    assert says in message


def test_bad_yaml_names_its_line(tmp_path: Path) -> None:
    assert ":3: not valid YAML" in error(tmp_path, "name: x\ntarget: node\n  steps: [\n")


def test_a_step_has_exactly_one_kind(tmp_path: Path) -> None:
    message = error(tmp_path, "name: x\ntarget: node\nsteps:\n  - note: a\n    action: cordon\n")
    assert ":4: steps[0]: a step has exactly one of" in message


def test_vigil_runbook_check(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(SIMPLE)
    bad.write_text(SIMPLE.replace("action: restart", "action: reboot"))
    cmd = [sys.executable, "-c", "import sys; from runbooks import cli; import argparse; p = argparse.ArgumentParser();"
           " cli.register(p.add_subparsers()); a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))"]  # fmt: skip
    ok = subprocess.run([*cmd, "runbook", "check", str(good)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "ok: simple (3 steps)" in ok.stdout
    no = subprocess.run(
        [*cmd, "runbook", "check", str(good), str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert no.returncode == 1 and f"{bad}:14: steps[1].action: 'reboot'" in no.stdout


def test_a_parameter_names_the_alert_label_that_fills_it(tmp_path: Path) -> None:
    path = tmp_path / "rb.yaml"
    path.write_text(SIMPLE.replace("max: 1}", "max: 1, label: vigil.shed_fraction}"))
    book = load_file(path)
    assert book.params[0].alert_label == "vigil.shed_fraction"
    labels = {"vigil.shed_fraction": "0.2", "fraction": "0.9", "alertname": "X"}
    assert book.params_from_labels(labels) == {"fraction": "0.2"}  # the named label, not the one of its name
    assert load_file(tmp_path / "rb.yaml").bind_params(book.params_from_labels({})) == {"fraction": 0.5}
