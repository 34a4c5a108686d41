"""vigil.flags: a pydantic-settings class → argparse flags, one declaration per setting."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from vigil.flags import Flag, FlagError, add_flags, settings_from


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
