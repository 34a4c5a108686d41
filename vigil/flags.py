"""Command-line flags generated from a pydantic-settings class, so each setting is declared once.

Each field of the class becomes one flag:
- the flag is the field's name with `-` for `_` (`slow_interval` → `--slow-interval`), or `Flag.name`;
- its help is the field's description, its default and its environment variable (`--help` and the
  README say the same thing because they read the same text);
- `bool` fields are `--x/--no-x`; `list` fields are repeatable, and so are `dict` fields, whose
  `K=V` strings reach the class's validators as a list; `Literal` and `Enum` fields become choices;
  `int`, `float`, `str` and `Path` values are converted by argparse, anything else reaches the
  validators as the string typed.

Flags are parsed with no defaults of their own: a flag given on the command line overrides the
environment variable, which overrides the field's default. `settings_from` builds the instance and
turns validation errors into a `FlagError` that names the flag (or the variable) and the value.

    class WorkerSettings(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="VIGIL_WORKER_")
        interval: Annotated[float, Flag(metavar="S")] = Field(1.0, gt=0, description="Seconds between runs.")

    add_flags(parser, WorkerSettings)
    settings = settings_from(WorkerSettings, parser.parse_args())
"""

from __future__ import annotations

import argparse
import enum
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from vigil.errors import CliError

S = TypeVar("S", bound=BaseSettings)
_CONVERTED = (int, float, str, Path)


class FlagError(CliError, ValueError):
    """A flag's or variable's value was refused; the message names it, its value and why."""


@dataclass(frozen=True)
class Flag:
    """How one field appears on the command line, given as `Annotated[type, Flag(...)]`."""

    metavar: str | None = None
    group: str | None = None  # the --help section it is listed under
    name: str | None = None  # the flag without `--`, when it is not the field's name (`label` for `labels`)
    hidden: bool = False  # accepted but left out of --help (test hooks)


def flag_of(field: FieldInfo) -> Flag:
    return next((m for m in field.metadata if isinstance(m, Flag)), Flag())


def flag_name(name: str, field: FieldInfo) -> str:
    return "--" + (flag_of(field).name or name.replace("_", "-"))


def env_name(cls: type[BaseSettings], name: str) -> str:
    return f"{cls.model_config.get('env_prefix', '')}{name}".upper()


def choices_of(annotation: Any) -> tuple[Any, ...] | None:
    """The values a `Literal[...]` or `Enum` field (or `X | None` of one) allows, else None."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return choices_of(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return choices_of(inner[0]) if len(inner) == 1 else None
    if origin is typing.Literal:
        return typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return tuple(m.value for m in annotation)
    return None


def _shape(annotation: Any) -> tuple[type | None, str]:
    """The annotation's scalar type (None when argparse should pass the string) and its shape:
    `bool`, `list`, `dict` or `scalar`. `X | None` is X."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _shape(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _shape(inner[0]) if len(inner) == 1 else (None, "scalar")
    if annotation is bool:
        return bool, "bool"
    if origin in (list, set, frozenset):
        args = typing.get_args(annotation)
        item = args[0] if args else str
        return (item if item in _CONVERTED else None), "list"
    if origin is dict or annotation is dict:
        return None, "dict"
    return (annotation if annotation in _CONVERTED else None), "scalar"


def _default_text(field: FieldInfo) -> str:
    if field.default_factory is not None or field.default in (PydanticUndefined, None, "", [], {}):
        return ""
    if isinstance(field.default, enum.Enum):
        return f"default {field.default.value}"
    if isinstance(field.default, bool):
        return "default on" if field.default else "default off"
    return f"default {field.default:g}" if isinstance(field.default, float) else f"default {field.default}"


def add_flags(parser: argparse.ArgumentParser, cls: type[BaseSettings], exclude: typing.Collection[str] = ()) -> None:
    """One flag per field of `cls` not in `exclude`, in declaration order, grouped by `Flag.group`."""
    groups: dict[str | None, Any] = {None: parser}
    for name, field in cls.model_fields.items():
        if name in exclude:
            continue
        flag = flag_of(field)
        if flag.group not in groups:
            groups[flag.group] = parser.add_argument_group(flag.group)
        kind, shape = _shape(field.annotation)
        repeatable = "repeatable" if shape in ("list", "dict") else ""
        notes = ", ".join(x for x in (_default_text(field), repeatable, f"env {env_name(cls, name)}") if x)
        text = f"{(field.description or '').rstrip('.')} ({notes})".replace("%", "%%")
        options: dict[str, Any] = {
            "dest": name,
            "default": argparse.SUPPRESS,
            "help": argparse.SUPPRESS if flag.hidden else text,
        }
        if shape == "bool":
            options["action"] = argparse.BooleanOptionalAction
        else:
            options["metavar"] = flag.metavar or ("K=V" if shape == "dict" else name.upper())
            if kind is not None:
                options["type"] = kind
            choices = choices_of(field.annotation)
            if choices is not None:
                options["choices"] = choices
                options["type"] = type(choices[0])
            if shape in ("list", "dict"):
                options["action"] = "append"
        groups[flag.group].add_argument(flag_name(name, field), **options)


def settings_from(cls: type[S], args: argparse.Namespace) -> S:
    """The settings: flags given in `args` over the environment over the defaults."""
    given = {name: getattr(args, name) for name in cls.model_fields if hasattr(args, name)}
    try:
        return cls(**given)
    except ValidationError as exc:
        raise FlagError(describe(cls, exc, set(given))) from None


def describe(cls: type[BaseSettings], exc: ValidationError, from_flags: set[str]) -> str:
    """A validation error as people read it: `--interval 0.0: should be greater than or equal to 0.05`."""
    problems = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ").removeprefix("Input ")
        loc = error["loc"]
        if not loc or loc[0] not in cls.model_fields:  # a check across fields: its message names them
            problems.append(message)
            continue
        name = str(loc[0])
        where = flag_name(name, cls.model_fields[name]) if name in from_flags else env_name(cls, name)
        value = error.get("input")
        scalar = isinstance(value, (str, int, float)) and not isinstance(value, bool)
        shown = f" {value!r}" if scalar and not (isinstance(value, str) and repr(value) in message) else ""
        problems.append(f"{where}{shown}: {message}")
    return "; ".join(problems)
