"""vigil.flags: a pydantic-settings class → argparse flags, one declaration per setting."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from vigil.errors import CliError
from vigil.flags import Flag, FlagError, add_flags, settings_from
from workload.settings import WorkloadSettings


class Example(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_EXAMPLE_")

    slow_interval: Annotated[float, Flag("S", "timing")] = Field(2.5, gt=0, description="Seconds between slow reads.")
    workers: int = Field(4, ge=1, description="Threads that work.")
    data: Path | None = Field(None, description="Where to keep things; 100% optional.")
    gzip: bool = Field(True, description="Compress what is sent.")
    urls: Annotated[list[str], NoDecode, Flag(name="url")] = Field(default_factory=list, description="A target.")
    secret: Annotated[int | None, Flag(hidden=True)] = Field(None, description="For tests.")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="example")
    add_flags(p, Example)
    return p


def parse(*argv: str) -> Example:
    return settings_from(Example, parser().parse_args(list(argv)))


def test_flags_follow_field_names_types_and_shapes() -> None:
    s = parse("--slow-interval", "0.5", "--workers", "8", "--data", "/tmp/x", "--no-gzip", "--url", "a", "--url", "b")
    assert (s.slow_interval, s.workers, s.data, s.gzip, s.urls) == (0.5, 8, Path("/tmp/x"), False, ["a", "b"])


def test_help_is_the_description_the_default_and_the_variable() -> None:
    text = " ".join(parser().format_help().split())
    assert "--slow-interval S Seconds between slow reads (default 2.5, env VIGIL_EXAMPLE_SLOW_INTERVAL)" in text
    assert "--gzip, --no-gzip Compress what is sent (default on, env VIGIL_EXAMPLE_GZIP)" in text
    assert "--url URLS A target (repeatable, env VIGIL_EXAMPLE_URLS)" in text
    assert "100% optional" in text
    assert "timing:" in text
    assert "--secret" not in text


def test_a_flag_overrides_its_variable_which_overrides_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse().workers == 4
    monkeypatch.setenv("VIGIL_EXAMPLE_WORKERS", "6")
    assert parse().workers == 6
    assert parse("--workers", "9").workers == 9
    assert parse("--secret", "7").secret == 7  # hidden, still accepted


def test_a_bad_value_names_the_flag_or_the_variable_it_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FlagError, match=r"^--workers 0: should be greater than or equal to 1$"):
        parse("--workers", "0")
    monkeypatch.setenv("VIGIL_EXAMPLE_SLOW_INTERVAL", "-1")
    with pytest.raises(FlagError, match=r"^VIGIL_EXAMPLE_SLOW_INTERVAL '-1': should be greater than 0$"):
        parse()


class Choices(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_CHOICES_")

    device: Literal["auto", "cpu"] = Field("auto", description="Where it runs.")
    hidden: int = Field(1, description="Not a flag.")


def test_literal_fields_are_choices_and_excluded_fields_are_not_flags() -> None:
    p = argparse.ArgumentParser()
    add_flags(p, Choices, exclude=("hidden",))
    assert settings_from(Choices, p.parse_args(["--device", "cpu"])).device == "cpu"
    with pytest.raises(SystemExit):
        p.parse_args(["--device", "tpu"])
    with pytest.raises(SystemExit):
        p.parse_args(["--hidden", "2"])


def test_a_flag_error_is_a_cli_error_naming_the_flag() -> None:
    with pytest.raises(CliError, match=r"--workers 0: .*greater than or equal to 1"):
        parse("--workers", "0")


def test_the_workload_keeps_every_flag_name_and_default() -> None:
    p = argparse.ArgumentParser()
    add_flags(p, WorkloadSettings)
    flags = {a.option_strings[0] for a in p._actions if a.option_strings and a.dest != "help"}
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
    wl = settings_from(WorkloadSettings, p.parse_args([]))
    assert (wl.port, wl.host, wl.device, wl.max_num_seqs, wl.max_num_batched_tokens) == (
        8000,
        "127.0.0.1",
        "auto",
        32,
        2048,
    )
    assert (wl.num_blocks, wl.max_waiting, wl.stall_after, wl.threads, wl.demo_rate) == (512, 256, 5.0, 1, 0.0)
