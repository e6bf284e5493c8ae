"""The CLI's one error policy: an error becomes one line on stderr and an exit code, never a traceback.

Exit code 2: bad input or usage (the project's `InputError`, and a ValueError or OSError that a
lower layer raised about what the user gave: a value, a file that is missing or unreadable).
Exit code 1: a failure while running (any other `ProjectError`, a RuntimeError, a LookupError
for something asked for that is not there). Anything else is a bug and keeps its traceback.

Every command gets the policy by being registered with `add_command`, the one way commands
join the app: each command module has `register(app)` calling it (or `add_group`, which does) (see `api/cli/__init__.py`).
"""

from __future__ import annotations

from contextlib import ContextDecorator
from typing import Any, Callable, Mapping

import typer

from formats.errors import InputError, ProjectError

BAD_INPUT = 2
FAILURE = 1


def exit_code_for(error: BaseException) -> int | None:
    """The exit code the policy gives `error`, or None when it is a bug or click's own (left to raise)."""
    if isinstance(error, (typer.Exit, typer.Abort, typer.TyperException)):
        return None
    if isinstance(error, ProjectError):
        return error.exit_code
    if isinstance(error, (ValueError, OSError)):
        return BAD_INPUT
    if isinstance(error, (RuntimeError, LookupError)):
        return FAILURE
    return None


def one_line(error: BaseException) -> str:
    """The error's own sentence, on one line (a KeyError's repr quotes are dropped)."""
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(text.split()) or type(error).__name__


class reported_errors(ContextDecorator):
    """Context manager and decorator: foreseen errors inside become `error: <sentence>` and an exit code."""

    def __enter__(self) -> "reported_errors":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: Any) -> bool:
        code = None if error is None else exit_code_for(error)
        if code is None:
            return False
        typer.echo(f"error: {one_line(error)}", err=True)
        raise typer.Exit(code) from None


def add_command(app: typer.Typer, name: str, function: Callable[..., Any]) -> None:
    """Register `function` as command `name` of `app`, under the error policy."""
    app.command(name)(reported_errors()(function))


def add_group(app: typer.Typer, name: str, help: str, commands: Mapping[str, Callable[..., Any]]) -> typer.Typer:
    """Add command group `name` to `app`, holding `commands` (name -> function, listed in that order)
    under the error policy; returns the group for modules that add more to it."""
    group = typer.Typer(help=help, no_args_is_help=True)
    for command, function in commands.items():
        add_command(group, command, function)
    app.add_typer(group, name=name)
    return group


__all__ = ["BAD_INPUT", "FAILURE", "InputError", "ProjectError", "add_command", "add_group", "exit_code_for", "reported_errors"]
