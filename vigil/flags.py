"""Command-line flags generated from a pydantic-settings class, so each option is written once.

`add_flags(parser, WorkloadSettings)` adds one flag per field: the name from the field name
(`max_num_seqs` → `--max-num-seqs`), the type from its annotation, the help from its description
with the default and the environment variable appended. `Literal` fields become choices, booleans
`--x/--no-x`, lists a repeatable flag. `settings_from(args, WorkloadSettings)` then builds the
settings with the precedence flag > environment > default: flags that were not given are absent
from the namespace (argparse.SUPPRESS), so pydantic-settings reads the environment for them.
"""

from __future__ import annotations

import argparse
import enum
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from vigil.errors import CliError

S = TypeVar("S", bound=BaseSettings)


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def env_name(settings_cls: type[BaseSettings], field: str) -> str:
    return (str(settings_cls.model_config.get("env_prefix", "")) + field).upper()


def add_flags(
    parser: argparse.ArgumentParser, settings_cls: type[BaseSettings], exclude: typing.Collection[str] = ()
) -> None:
    """Add a flag for every field of `settings_cls` not in `exclude`."""
    for name, field in settings_cls.model_fields.items():
        if name in exclude:
            continue
        parser.add_argument(
            flag_name(name), dest=name, default=argparse.SUPPRESS, **_kind(field, _help(settings_cls, name, field))
        )


def settings_from(args: argparse.Namespace, settings_cls: type[S]) -> S:
    """The settings from the flags given, then the environment, then the defaults.

    A value that fails validation raises `CliError` naming the flag and its environment variable.
    """
    given = {name: getattr(args, name) for name in settings_cls.model_fields if hasattr(args, name)}
    try:
        return settings_cls(**given)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            where = f"{flag_name(field)} (or {env_name(settings_cls, field)})" if field else settings_cls.__name__
            problems.append(f"{where}: {error['msg']}")
        raise CliError("; ".join(problems)) from None


def _help(settings_cls: type[BaseSettings], name: str, field: FieldInfo) -> str:
    default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
    shown = "none" if default in (None, "", []) else (default.value if isinstance(default, enum.Enum) else default)
    text = (field.description or "").replace("%", "%%")  # argparse formats help with %
    return f"{text} (default {shown}; env {env_name(settings_cls, name)})"


def _kind(field: FieldInfo, help_text: str) -> dict[str, Any]:
    """argparse keywords for the field's type."""
    annotation = _unoptional(field.annotation)
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction, "help": help_text}
    if origin is typing.Literal:
        choices = typing.get_args(annotation)
        return {"type": type(choices[0]), "choices": choices, "help": help_text}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"type": annotation, "choices": list(annotation), "help": help_text}
    if origin is list:
        (item,) = typing.get_args(annotation) or (str,)
        return {"type": item, "action": "append", "help": help_text + "; repeat for more"}
    if annotation in (int, float, str, Path):
        return {"type": annotation, "help": help_text}
    raise TypeError(f"no flag type for {annotation!r}")


def _unoptional(annotation: Any) -> Any:
    """`X | None` → `X`: a flag either gives a value or is left out."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation
