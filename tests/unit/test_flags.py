"""vigil.flags: argparse flags generated from a pydantic-settings class."""

import argparse
from typing import Literal

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from vigil.errors import CliError
from vigil.flags import add_flags, settings_from
from workload.settings import WorkloadSettings


class Demo(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_")

    max_num_seqs: int = Field(32, ge=1, description="Most sequences in one batch.")
    ratio: float = Field(0.5, description="A share.")
    device: Literal["auto", "cpu"] = Field("auto", description="Where it runs.")
    verbose: bool = Field(False, description="Say more.")
    label: list[str] = Field(default_factory=list, description="A label.")
    name: str | None = Field(None, description="A name.")
    hidden: int = Field(1, description="Not a flag.")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_flags(parser, Demo, exclude=("hidden",))
    return parser.parse_args(argv)


def test_flags_are_named_typed_and_documented_from_the_fields() -> None:
    parser = argparse.ArgumentParser()
    add_flags(parser, Demo, exclude=("hidden",))
    actions = {a.dest: a for a in parser._actions}
    assert actions["max_num_seqs"].option_strings == ["--max-num-seqs"] and actions["max_num_seqs"].type is int
    assert actions["ratio"].type is float and actions["device"].choices == ("auto", "cpu")
    assert actions["verbose"].option_strings == ["--verbose", "--no-verbose"]
    assert "hidden" not in actions
    assert actions["max_num_seqs"].help == "Most sequences in one batch. (default 32; env DEMO_MAX_NUM_SEQS)"
    assert "(default none; env DEMO_NAME)" in actions["name"].help


def test_flag_beats_environment_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert settings_from(parse(), Demo).max_num_seqs == 32
    monkeypatch.setenv("DEMO_MAX_NUM_SEQS", "8")
    assert settings_from(parse(), Demo).max_num_seqs == 8
    assert settings_from(parse("--max-num-seqs", "4"), Demo).max_num_seqs == 4


def test_bools_lists_and_optionals() -> None:
    got = settings_from(parse("--verbose", "--label", "a", "--label", "b", "--name", "n", "--ratio", "0.25"), Demo)
    assert got.verbose is True and got.label == ["a", "b"] and got.name == "n" and got.ratio == 0.25
    assert settings_from(parse("--no-verbose"), Demo).verbose is False


def test_a_bad_value_names_the_flag_and_its_variable() -> None:
    with pytest.raises(CliError, match=r"--max-num-seqs \(or DEMO_MAX_NUM_SEQS\): Input should be greater"):
        settings_from(parse("--max-num-seqs", "0"), Demo)
    with pytest.raises(SystemExit):
        parse("--device", "tpu")


def test_the_workload_keeps_every_flag_name_and_default() -> None:
    parser = argparse.ArgumentParser()
    add_flags(parser, WorkloadSettings)
    flags = {a.option_strings[0] for a in parser._actions if a.option_strings and a.dest != "help"}
    assert flags >= {
        "--port",
        "--host",
        "--device",
        "--max-num-seqs",
        "--max-num-batched-tokens",
        "--num-blocks",
        "--max-waiting",
        "--stall-after",
        "--threads",
        "--demo-rate",
    }
    wl = settings_from(parser.parse_args([]), WorkloadSettings)
    assert (wl.port, wl.host, wl.device, wl.max_num_seqs, wl.max_num_batched_tokens) == (
        8000,
        "127.0.0.1",
        "auto",
        32,
        2048,
    )
    assert (wl.num_blocks, wl.max_waiting, wl.stall_after, wl.threads, wl.demo_rate) == (512, 256, 5.0, 1, 0.0)
