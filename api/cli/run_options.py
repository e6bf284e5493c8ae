"""The options that several `s2m train` commands share, declared once so that they read and default alike
(and the comma-separated lists `s2m eval` and `s2m bench` take, read one way).

A command names a group by one parameter whose default is the group (`options: RunOptions = RUN`,
`paired: PairedInputs = PAIRED`); `shared_options(command)` puts the group's options in that
parameter's place, so `--help` lists them there, and calls the command with the one object they
make. Presets are resolved in the command, and the loop gets resolved configs only.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

import typer

from formats.errors import InputError

if TYPE_CHECKING:
    from generation.loop_run import TrainResult
    from generation.losses import SimilarityConfig
    from generation.paired import PairedInputs
    from generation.training import RunOptions

PHOTOS = typer.Option(..., "--data", help="dataset folder of photos (images/)")
SKETCHES = typer.Option(..., "--sketches", help="synthesized sketches of those photos, same file names")
PRESET = typer.Option("small", "--preset", help="tiny, small or paper")
BATCH_SIZE = typer.Option(None, "--batch-size", min=1, help="per process; default: the preset's")
EMBEDDER_SIDE = typer.Option(None, "--embedder-side",
                             help="px at which C reads L_sim's images: smaller is cheaper but another loss "
                                  "(docs/benchmarks.md); default: the side C was trained at")


@dataclass(frozen=True)
class OptionGroup:
    """Typer options that stand in for one parameter of a command; `build(values, arguments)` makes
    that parameter's value from the group's own values and the command's other arguments."""

    parameters: tuple[inspect.Parameter, ...]
    build: Callable[[Mapping[str, Any], Mapping[str, Any]], Any]


def _options(**declared: tuple[Any, Any]) -> tuple[inspect.Parameter, ...]:
    return tuple(inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=annotation, default=option)
                 for name, (annotation, option) in declared.items())


def _run_options(values: Mapping[str, Any], arguments: Mapping[str, Any]) -> RunOptions:
    from generation.training import RunOptions

    return RunOptions(data=arguments["data"], run_dir=arguments["run_dir"], bundle=arguments.get("bundle"), **values)


def _paired_inputs(values: Mapping[str, Any], arguments: Mapping[str, Any]) -> PairedInputs:
    from generation.paired import PairedInputs
    from generation.sketch_augment import FREEHAND_AUGMENT

    return PairedInputs(arguments["sketches"], values["val_data"], values["val_sketches"], warm_start=values["warm_start"],
                        sketch_augment=FREEHAND_AUGMENT if values["freehand_augment"] else None)


# What drives a run (generation.training.RunOptions), with the command's --data, --run-dir and --bundle.
RUN = OptionGroup(_options(
    max_minutes=(Optional[float], typer.Option(None, "--max-minutes", min=0.0,
                                               help="stop (checkpointed and exported) after this long")),
    limit=(Optional[int], typer.Option(None, "--limit", min=1, help="use only the first N training images")),
    resume=(bool, typer.Option(False, "--resume", help="continue from RUN_DIR/checkpoint.pt (same settings)")),
    device=(str, typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto (CUDA when present)")),
    workers=(int, typer.Option(0, "--workers", min=0, help="DataLoader worker processes")),
    seed=(int, typer.Option(0, "--seed", help="seeds every random stream of the run (process r draws from seed + r)")),
    progress=(bool, typer.Option(True, "--progress/--no-progress", help="a progress bar on the main process")),
), _run_options)

# What E and H train on besides the photos (generation.paired.PairedInputs), with the command's --sketches.
PAIRED = OptionGroup(_options(
    val_data=(Optional[Path], typer.Option(None, "--val-data", help="held-out photos for free-hand validation")),
    val_sketches=(Optional[Path], typer.Option(None, "--val-sketches", help="free-hand sketches of --val-data")),
    warm_start=(Optional[Path], typer.Option(None, "--warm-start", help="bundle whose trained network to start from")),
    freehand_augment=(bool, typer.Option(False, "--freehand-augment",
                                         help="augment the training sketches free-hand style")),
), _paired_inputs)


def _evaluated(annotation: Any, command: Callable[..., Any]) -> Any:
    """A string annotation (postponed evaluation) as the type it names in `command`'s module."""
    return eval(annotation, command.__globals__) if isinstance(annotation, str) else annotation  # noqa: S307


def shared_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`command` as typer should see it: each parameter whose default is an `OptionGroup` replaced,
    in place, by the group's options; called with the object the group builds."""
    groups: dict[str, OptionGroup] = {}
    parameters: list[inspect.Parameter] = []
    for parameter in inspect.signature(command).parameters.values():
        if isinstance(parameter.default, OptionGroup):
            groups[parameter.name] = parameter.default
            parameters.extend(parameter.default.parameters)
        else:
            parameters.append(parameter.replace(annotation=_evaluated(parameter.annotation, command)))

    @functools.wraps(command)
    def expanded(**arguments: Any) -> Any:
        for name, group in groups.items():
            values = {p.name: arguments.pop(p.name) for p in group.parameters}
            arguments[name] = group.build(values, arguments)
        return command(**arguments)

    expanded.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    expanded.__annotations__ = {p.name: p.annotation for p in parameters}
    return expanded


def comma_ints(text: str, option: str, least: int) -> tuple[int, ...]:
    """`text` as comma-separated integers, each at least `least`; bad input is one InputError sentence."""
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(f"{option} takes comma-separated integers, not {text}") from None
    if not values or min(values) < least:
        raise InputError(f"{option} takes comma-separated integers of at least {least}, not {text}")
    return values


def comma_names(text: str, option: str, known: tuple[str, ...]) -> tuple[str, ...]:
    """`text` as comma-separated names, each one of `known`."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in known]
    if unknown:
        raise InputError(f"{option} takes some of {', '.join(known)}, not {', '.join(unknown)}")
    return names


def echo_result(result: TrainResult, detail: str = "") -> None:
    """The one line every `s2m train` command ends with (main process only: under torchrun rank 0 reports)."""
    if not result.main:
        return
    ended = "; stopped by --max-minutes" if result.stopped_early else ""
    saved = f"; saved into {result.bundle}" if result.bundle is not None else ""
    typer.echo(f"trained to step {result.step} ({result.steps_this_run} steps in {result.seconds:.0f} s this run"
               f"{', ' + detail if detail else ''}{ended}); run in {result.run_dir}{saved}")


def similarity_config(preset: str, embedder_side: int | None) -> "SimilarityConfig":
    """The preset's L_sim (E's and H's loops), with C reading at `embedder_side` px when one is given."""
    import dataclasses

    from generation.losses import SimilarityConfig

    config = SimilarityConfig.for_preset(preset)
    return config if embedder_side is None else dataclasses.replace(config, embedder_side=embedder_side)
