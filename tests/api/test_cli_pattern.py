"""The CLI's one registration pattern and one error policy (api/cli/errors.py)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from api.cli import app
from api.cli.errors import add_command
from formats.errors import InputError, ProjectError

CLI = Path(__file__).resolve().parents[2] / "api" / "cli"


def _leaf_commands(command: Any, path: str = "s2m") -> dict[str, Any]:
    children = getattr(command, "commands", None)
    if children:
        leaves: dict[str, Any] = {}
        for name, child in children.items():
            leaves.update(_leaf_commands(child, f"{path} {name}"))
        return leaves
    return {path: command}


def test_every_command_is_registered_under_the_error_policy():
    leaves = _leaf_commands(get_command(app))
    assert {"s2m generate", "s2m train encoder", "s2m phantom sketch", "s2m archive ingest", "s2m db status"} <= set(leaves)
    unwrapped = [path for path, command in leaves.items() if not hasattr(command.callback, "__wrapped__")]
    assert unwrapped == [], f"registered without add_command: {unwrapped}"


def _registrations_outside_register(tree: ast.Module) -> list[int]:
    """Lines that add a command or a group (add_command, add_group, add_typer, .command) outside a `register`
    function (or errors.py's `add_command` and `add_group`, the one way to add a command or a group)."""
    inside = {id(node) for function in tree.body
              if isinstance(function, ast.FunctionDef) and function.name in ("register", "add_command", "add_group")
              for node in ast.walk(function)}
    def adds(call: ast.Call) -> bool:
        if isinstance(call.func, ast.Attribute):  # app.command(...), app.add_typer(...)
            return call.func.attr in ("add_command", "add_typer", "command")
        return isinstance(call.func, ast.Name) and call.func.id in ("add_command", "add_group", "add_typer")

    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call) and id(node) not in inside and adds(node)]


def test_command_modules_register_one_way():
    """Every area the app composes has `register()`; commands and groups are added only inside one;
    no `@app.command` at import time and no imports below the definitions (the old cycle)."""
    from api import cli

    areas = {node.id for node in ast.walk(ast.parse((CLI / "__init__.py").read_text()))
             if isinstance(node, ast.Name) and isinstance(getattr(cli, node.id, None), type(ast))}
    assert {"train", "archive", "evaluate", "bench"} <= areas
    for path in sorted(CLI.glob("*.py")):
        tree = ast.parse(path.read_text())
        names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        if path.stem in areas:
            assert "register" in names, f"{path.name} has no register()"
        assert _registrations_outside_register(tree) == [], f"{path.name} adds commands outside register()"
        first_definition = next((i for i, node in enumerate(tree.body) if isinstance(node, (ast.FunctionDef, ast.ClassDef))),
                                len(tree.body))
        late_imports = [node.lineno for node in tree.body[first_definition:] if isinstance(node, (ast.Import, ast.ImportFrom))]
        assert late_imports == [], f"{path.name} imports below its definitions at lines {late_imports}"
        decorated = [node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
                     for decorator in node.decorator_list if isinstance(decorator, ast.Call)
                     and getattr(decorator.func, "attr", None) in ("command", "callback")]  # @app.command(...)
        assert decorated == [], f"{path.name} registers by decorator: {decorated}"


def _app_raising(error: BaseException) -> typer.Typer:
    def fail() -> None:
        raise error

    def other() -> None:  # two commands, so that typer keeps command names
        pass

    test_app = typer.Typer()
    add_command(test_app, "fail", fail)
    add_command(test_app, "other", other)
    return test_app


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InputError("the sketch is blank;\n draw the outline"), 2),
        (ValueError("bad value"), 2),
        (FileNotFoundError("no such file: x.png"), 2),
        (ProjectError("the index build failed"), 1),
        (RuntimeError("CUDA ran out of memory"), 1),
        (KeyError("no image with id 7"), 1),
    ],
)
def test_foreseen_errors_become_one_line_on_stderr_and_an_exit_code(error, code):
    result = CliRunner().invoke(_app_raising(error), ["fail"])
    assert result.exit_code == code
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "Traceback" not in result.output and "'" not in result.stderr
    assert result.stdout == ""


def test_a_bug_is_not_hidden_as_bad_input():
    result = CliRunner().invoke(_app_raising(TypeError("a bug")), ["fail"])
    assert result.exit_code == 1 and isinstance(result.exception, TypeError)


def test_typer_exits_and_usage_errors_pass_through_unchanged():
    assert CliRunner().invoke(_app_raising(typer.Exit(3)), ["fail"]).exit_code == 3
    usage = CliRunner().invoke(_app_raising(typer.BadParameter("no")), ["fail"])
    assert usage.exit_code == 2 and "Usage" in usage.output


def test_shared_options_stand_in_place_of_their_group_and_reach_the_command_as_one_object(tmp_path):
    from api.cli.run_options import PAIRED, RUN, SKETCHES, shared_options

    received = {}

    def command(data: Path = typer.Option(..., "--data"), sketches: Path = SKETCHES, paired: Any = PAIRED,
                run_dir: Path = typer.Option(Path("runs/x"), "--run-dir"), options: Any = RUN) -> None:
        received.update(paired=paired, options=options)

    test_app = typer.Typer()
    add_command(test_app, "go", shared_options(command))
    add_command(test_app, "other", lambda: None)
    names = [p.name for p in get_command(test_app).commands["go"].params]
    assert names == ["data", "sketches", "val_data", "val_sketches", "warm_start", "freehand_augment", "run_dir",
                     "max_minutes", "limit", "resume", "device", "workers", "seed", "progress"]
    result = CliRunner().invoke(test_app, ["go", "--data", str(tmp_path), "--sketches", "s", "--val-data", "v",
                                           "--seed", "3", "--no-progress", "--freehand-augment"])
    assert result.exit_code == 0, result.output
    options, paired = received["options"], received["paired"]
    assert (options.data, options.run_dir, options.bundle, options.seed, options.progress, options.device) == (
        tmp_path, Path("runs/x"), None, 3, False, "auto")
    assert (paired.sketches, paired.val_data, paired.val_sketches) == (Path("s"), Path("v"), None)
    assert paired.sketch_augment is not None and paired.warm_start is None
