"""What the runbook pages show, from the runbook view's JSON: timing, outputs, the form's fields, buttons."""

from __future__ import annotations

from typing import Any

from dashboard import run_format as f

BOOK: dict[str, Any] = {
    "name": "b",
    "params": [
        {"name": "seqs", "type": "int", "default": 3, "description": "", "min": 1, "max": 64},
        {"name": "ratio", "type": "float", "default": 0.5, "description": "", "min": None, "max": None},
        {"name": "fast", "type": "bool", "default": False, "description": "", "min": None, "max": None},
        {"name": "why", "type": "str", "default": "", "description": "said", "min": None, "max": None},
    ],
}


def ev(step: int, event: str, at: float, attempt: int = 1, output: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"step": step, "event": event, "at": at, "attempt": attempt, "step_name": f"s{step}", "output": output or {}}


def run(state: str, log: list[dict[str, Any]], dry: bool = False) -> dict[str, Any]:
    steps = [{"index": 0, "name": "s0", "kind": "action", "status": log[-1]["event"] if log else "pending"}]
    return {"id": "r1", "runbook": "b", "state": state, "dry_run": dry, "log": log, "steps": steps, "approvals": []}


def test_the_form_has_a_typed_field_per_parameter_holding_what_was_given_or_the_default() -> None:
    fields = {p["name"]: p for p in f.param_fields(BOOK, {"seqs": "7"})}
    assert (fields["seqs"]["input"], fields["seqs"]["step"], fields["seqs"]["value"]) == ("number", "1", "7")
    assert (fields["seqs"]["min"], fields["seqs"]["max"]) == ("1", "64")
    assert (fields["ratio"]["step"], fields["ratio"]["value"], fields["ratio"]["min"]) == ("any", "0.5", "")
    assert (fields["fast"]["input"], fields["fast"]["value"]) == ("select", "false")
    assert fields["why"]["input"] == "text"


def test_only_fields_named_after_parameters_are_taken_and_empty_ones_mean_the_default() -> None:
    form = {"seqs": " 4 ", "why": "", "csrf_token": "x", "target": "t", "other": "1"}
    assert f.form_params(BOOK, form) == {"seqs": "4"}


def test_a_step_retried_from_its_failure_is_timed_from_its_latest_go() -> None:
    log = [ev(0, "started", 100), ev(0, "failed", 101), ev(0, "started", 200), ev(0, "succeeded", 202.5)]
    (step,) = f.run_page(run("succeeded", log), now=300)["steps"]
    assert step["started"] == f.when(200) and step["took"] == "2.5s"


def test_retries_within_one_go_count_in_its_time_and_a_running_step_says_so_far() -> None:
    log = [ev(0, "started", 100), ev(0, "failed", 101), ev(0, "started", 102, attempt=2)]
    (step,) = f.run_page(run("running", log), now=190)["steps"]
    assert step["started"] == f.when(100) and step["took"] == "1m 30s so far"


def test_outputs_are_cut_on_the_page() -> None:
    text = f.output_text({"answer": "x" * (f.OUTPUT_SHOWN * 2)})
    assert len(text) < f.OUTPUT_SHOWN + 100 and text.endswith("the run's JSON has it whole")
    assert f.output_text({}) == ""


def test_the_buttons_follow_the_state() -> None:
    def buttons(state: str, dry: bool = False) -> tuple[bool, bool, bool]:
        page = f.run_page(run(state, [], dry), now=0)
        return page["can_approve"], page["can_retry"], page["can_cancel"]

    assert buttons("waiting_approval") == (True, False, True)
    assert buttons("running") == (False, False, True)
    assert buttons("failed") == (False, True, False)
    assert buttons("interrupted") == (False, True, False)
    assert buttons("failed", dry=True) == (False, False, False)
    assert buttons("succeeded") == (False, False, False)
    assert f.run_page(run("succeeded", []), now=0)["finished"]
