"""The one protocol every training loop runs on: `LoopRun` around its steps, `TrainResult` out of it.

Each loop (G, S, C, E, H, pix2pix) keeps its own steps, losses and exports so that the maths
reads like its paper; seeding, the run folder, the log, resume, checkpoints, the time budget,
the progress bar and what a run returns are done here, the same way for all of them.
"""

from __future__ import annotations

import functools
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch

from generation.training import (
    DistContext,
    JsonlLogger,
    RunDir,
    RunOptions,
    budget_spent,
    distributed,
    make_progress,
    restore_run_state,
    save_run_state,
    seed_everything,
)


@dataclass(frozen=True)
class TrainResult:
    """What every `train_*` returns: how far the run got, what this invocation did, where it wrote.

    `metrics` holds the loop's own closing figures (last losses, validation DICE, probe scores,
    ADA's p, ...), empty on processes other than the main one (`main` False), which report nothing.
    """

    run_dir: Path
    step: int  # steps trained in total, over every start of the run
    steps_this_run: int
    seconds: float  # wall time of this invocation
    stopped_early: bool  # the time budget (--max-minutes) ended it before its planned length
    bundle: Path | None = None  # the bundle the trained network was written into, if any
    main: bool = True
    metrics: dict[str, Any] = field(default_factory=dict)


class LoopRun:
    """What a step-counted loop does around its own steps, the same way in every loop:
    seeds this process (seed + rank) and starts the clock when made, resumes and checkpoints the
    named modules, optimisers and configs, creates the run folder and its JSONL log only once the
    set-up has checked the input, tells when the time budget is spent, and builds the result.

    The loop keeps its steps, losses and exports (no Coach: the maths stays readable in the loop).
    """

    def __init__(self, options: RunOptions, ctx: DistContext) -> None:
        self.options, self.ctx = options, ctx
        self.started = time.time()
        seed_everything(options.seed + ctx.rank)
        self.dir = RunDir(Path(options.run_dir))
        self.logger = JsonlLogger(self.dir.log, enabled=False)  # until `open_log`
        self.start_step = 0
        self.stopped_early = False
        self._state: tuple[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]] = ({}, {}, {})

    def resume(self, modules: Mapping[str, torch.nn.Module], optimizers: Mapping[str, torch.optim.Optimizer],
               configs: Mapping[str, Any]) -> dict[str, Any]:
        """Track what `save` checkpoints; with --resume, restore it and return the saved extra values ({} if fresh).

        The saved step (`step`, or G's `state["step"]`; 0 when fresh) becomes `start_step`, from which
        `result` counts this run's steps.
        """
        self._state = (modules, optimizers, configs)
        if not self.options.resume:
            return {}
        extra = restore_run_state(self.dir.checkpoint, self.ctx, modules, optimizers, configs, self.options.seed)
        self.start_step = int(extra.get("step", extra.get("state", {}).get("step", 0)))
        return extra

    def save(self, **extra: Any) -> None:
        """Checkpoint what `resume` tracks (every process calls it at the same step)."""
        save_run_state(self.dir.checkpoint, self.ctx, *self._state, **extra)

    def open_log(self, start: dict[str, Any] | None) -> JsonlLogger:
        """Create the run folder (main process) and its log; `start` is logged as the `start` event
        (a fresh run's; None for a resumed one). Called after the set-up, so bad input leaves no folder."""
        if self.ctx.is_main:
            self.dir.create()
        self.logger = JsonlLogger(self.dir.log, enabled=self.ctx.is_main)
        if self.ctx.is_main and start is not None:
            self.logger.log(event="start", **start)
        return self.logger

    def out_of_time(self) -> bool:
        """Whether `options.max_minutes` is spent, agreed by every process (remembered for the result)."""
        self.stopped_early = self.stopped_early or budget_spent(time.time() - self.started, self.options.max_minutes,
                                                                self.ctx)
        return self.stopped_early

    def seconds(self) -> float:
        """Wall time since this invocation began."""
        return time.time() - self.started

    @contextmanager
    def progress(self, name: str, total: int, completed: int) -> Iterator[Callable[..., None]]:
        """The progress bar of the loop's one task `name`, shown on the main process unless --no-progress;
        yields the task's update (`completed=`, `status=`)."""
        with make_progress(disable=not (self.ctx.is_main and self.options.progress)) as bar:
            yield functools.partial(bar.update, bar.add_task(name, total=total, completed=completed, status=""))

    def result(self, step: int, metrics: Mapping[str, Any], bundle: Path | None = None) -> TrainResult:
        """What the loop returns once it has ended at `step`; only the main process reports metrics."""
        return TrainResult(
            run_dir=self.dir.root, step=step, steps_this_run=step - self.start_step,
            seconds=self.seconds(), stopped_early=self.stopped_early, bundle=bundle,
            main=self.ctx.is_main, metrics=dict(metrics) if self.ctx.is_main else {},
        )


def run_loop(options: RunOptions, train: Callable[..., TrainResult], *inputs: Any) -> TrainResult:
    """`train(loop, *inputs)` inside the process group `options.device` asks for, on a fresh `LoopRun`
    (made first, so that this process is seeded before the loop builds or draws anything)."""
    with distributed(options.device) as ctx:
        return train(LoopRun(options, ctx), *inputs)

