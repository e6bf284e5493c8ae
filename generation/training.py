"""Plumbing every training loop shares: runs, JSONL logs, checkpoints, RNG, DDP, progress.

Each network keeps its own small loop whose loss assembly reads like the paper; everything
that is not the maths lives here, once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
import torch
import torch.distributed as dist

from formats.errors import InputError
from generation.configs import config_from_dict, legacy_cadence
from generation.files import atomic_target

# Config fields that say how long a run goes on and how it is driven, not what it learns:
# a resumed run may change them (e.g. train on to more steps).
RUN_LENGTH_FIELDS = frozenset({"steps", "epochs", "cadence"})


@dataclass(frozen=True)
class RunOptions:
    """How one training run is driven, the same for every loop (what it learns is in its configs).

    Every `train_*` loop takes one of these and its resolved configs; presets are resolved by the
    CLI, never inside a loop. `seed` seeds every random stream of the run (process r draws from
    seed + r); `max_minutes` stops the run early (checkpointed and exported as at its end);
    `limit` keeps only the first N training items.
    """

    data: Path
    run_dir: Path
    bundle: Path | None = None  # read from and/or written into, as the loop says
    device: str = "auto"  # cpu, cuda, cuda:N or auto (CUDA when present)
    seed: int = 0
    workers: int = 0  # DataLoader worker processes
    resume: bool = False
    max_minutes: float | None = None
    limit: int | None = None
    progress: bool = True  # a progress bar on the main process

    def required_bundle(self) -> Path:
        """The bundle folder of a loop that cannot run without one."""
        if self.bundle is None:
            raise InputError("this training run needs a model bundle (--bundle)")
        return Path(self.bundle)


@dataclass(frozen=True)
class RunDir:
    """Layout of one training run folder."""

    root: Path

    @property
    def log(self) -> Path:
        return self.root / "log.jsonl"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def loss_curve(self) -> Path:
        return self.root / "loss_curve.png"

    def create(self) -> "RunDir":
        self.samples.mkdir(parents=True, exist_ok=True)
        return self


class JsonlLogger:
    """Append one JSON object per line; each record gets the wall time since the run began and this
    process's CPU time since then (on a shared core the two differ: the CPU time is what a step cost)."""

    def __init__(self, path: Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self._start = time.time()
        self._cpu_start = time.process_time()

    def log(self, **record: Any) -> None:
        if not self.enabled:
            return
        record = {"time_s": round(time.time() - self._start, 3), "cpu_s": round(time.process_time() - self._cpu_start, 3),
                  **record}
        with self.path.open("a") as handle:
            handle.write(json.dumps(record, default=float) + "\n")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All records of a JSONL log (empty if it does not exist yet)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def capture_rng_state() -> dict[str, Any]:
    """Every RNG a loop may draw from, as tensors and plain values (loadable with weights_only)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch so that a run is reproducible on CPU."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically: temporary file, fsync, rename (a crash leaves the old one)."""
    with atomic_target(Path(path)) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by `save_checkpoint` without unpickling arbitrary objects."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; start without --resume")
    return torch.load(path, map_location=map_location, weights_only=True)


def save_run_state(
    path: Path,
    ctx: "DistContext",
    modules: Mapping[str, torch.nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
    configs: Mapping[str, Any],
    **extra: Any,
) -> None:
    """Checkpoint a run: named modules and optimisers, the configs, every process's RNG state.

    Every process must call it at the same step (it gathers each one's random state, so that
    each resumes its own stream); the main process writes. `configs` are dataclasses;
    `extra` holds plain values such as the step.
    """
    rng = gather_rng_states(ctx)
    if not ctx.is_main:
        return
    save_checkpoint(path, {
        "modules": {name: module.state_dict() for name, module in modules.items()},
        "optimizers": {name: optimizer.state_dict() for name, optimizer in optimizers.items()},
        "configs": {name: dataclasses.asdict(config) for name, config in configs.items()},
        "rng": rng, "world_size": ctx.world_size, **extra,
    })


def restore_run_state(
    path: Path,
    ctx: "DistContext",
    modules: Mapping[str, torch.nn.Module],
    optimizers: Mapping[str, torch.optim.Optimizer],
    configs: Mapping[str, Any],
    seed: int,
    may_change: Iterable[str] = RUN_LENGTH_FIELDS,
) -> dict[str, Any]:
    """Load what `save_run_state` wrote into `modules` and `optimizers`; returns its `extra` values.

    Refuses (InputError) a checkpoint whose configs differ from `configs` in any field but those
    in `may_change` (how long the run goes on), before anything is loaded. This process resumes
    its own random stream; a run resumed on another number of processes reseeds each one from
    `seed`, its rank and the step instead.
    """
    state = load_checkpoint(path, map_location=ctx.device)
    if "configs" not in state:
        raise InputError(f"{path} was written before the shared run protocol; start a new run dir")
    allowed = set(may_change)
    for name, config in configs.items():
        if name not in state["configs"]:
            raise InputError(f"{path} holds no {name}; start a new run dir")
        try:
            saved = config_from_dict(type(config), legacy_cadence(type(config), state["configs"][name]))
        except (TypeError, ValueError):
            raise InputError(f"{path} was written with another {type(config).__name__}; start a new run dir") from None
        changed = [f.name for f in dataclasses.fields(config)
                   if f.name not in allowed and getattr(saved, f.name) != getattr(config, f.name)]
        if changed:
            raise InputError(f"{path} was trained with another {type(config).__name__} ({', '.join(changed)}); "
                             "resume with the settings it was started with or start a new run dir")
    for name, module in modules.items():
        module.load_state_dict(state["modules"][name])
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(state["optimizers"][name])
    extra = {k: v for k, v in state.items() if k not in ("modules", "optimizers", "configs", "rng", "world_size")}
    if len(state["rng"]) == ctx.world_size:
        restore_rng_state(state["rng"][ctx.rank])
    else:
        seed_everything(seed + ctx.rank + int(extra.get("step", 0)))
    return extra


def gather_rng_states(ctx: "DistContext") -> list[dict[str, Any]]:
    """The RNG state of every process (rank order), so each resumes its own stream."""
    state = capture_rng_state()
    if not ctx.distributed:
        return [state]
    states: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(states, state)
    return states


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in a (possibly single-process) run."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str) -> torch.device:
    """`cpu`, `cuda`, `cuda:N` or `auto` (CUDA when available); a clear error if CUDA is missing."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name} was asked for but no CUDA device is available")
    return device


def init_distributed(device: str) -> DistContext:
    """Join the process group torchrun set up (gloo on CPU, nccl on CUDA), or run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    dev = resolve_device(device)
    if world_size > 1:
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if dev.type == "cuda":
            dev = torch.device("cuda", local_rank)
            torch.cuda.set_device(dev)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world_size, device=dev)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def distributed(device: str) -> Iterator[DistContext]:
    """This process's place in the run (joining torchrun's process group), left however the run ends."""
    ctx = init_distributed(device)
    try:
        yield ctx
    finally:
        shutdown_distributed()


def all_reduce_mean(value: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Mean of a tensor over all processes (identity when alone); for logging."""
    if not ctx.distributed:
        return value
    value = value.detach().clone()
    dist.all_reduce(value)
    return value / ctx.world_size


def any_process(local: bool, ctx: DistContext) -> bool:
    """Whether `local` holds on any process: a decision every process takes at the same step."""
    if not ctx.distributed:
        return local
    flag = torch.tensor(float(local), device=ctx.device)  # nccl needs a tensor on the process's device
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def budget_spent(elapsed_s: float, max_minutes: float | None, ctx: DistContext) -> bool:
    """Whether a run's time budget is used up, agreed by every process so that all stop at one step."""
    if max_minutes is None:
        return False
    return any_process(elapsed_s > max_minutes * 60, ctx)


def all_reduce_gradients(module: torch.nn.Module, ctx: DistContext) -> None:
    """Average gradients over processes for a module not wrapped in DDP."""
    if not ctx.distributed:
        return
    for parameter in module.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad /= ctx.world_size


def broadcast_parameters(module: torch.nn.Module, ctx: DistContext) -> None:
    """Start every process from rank 0's weights (DDP does this itself for wrapped modules)."""
    if not ctx.distributed:
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=0)


class ResumableBatchSampler:
    """This rank's batches of a DistributedSampler, epoch after epoch, from batch `start` on.

    Batch b of a run is the same whether the run was resumed or not.
    """

    def __init__(self, sampler: torch.utils.data.DistributedSampler, batch_size: int, start: int) -> None:
        self.sampler = sampler
        self.batch_size = batch_size
        self.start = start
        self.per_epoch = len(sampler) // batch_size
        if self.per_epoch == 0:
            raise InputError(f"{len(sampler)} images per process are fewer than one batch of {batch_size}")

    def __iter__(self) -> Iterator[list[int]]:
        epoch, skip = divmod(self.start, self.per_epoch)
        while True:
            self.sampler.set_epoch(epoch)
            indices = list(self.sampler)
            for batch in range(skip, self.per_epoch):
                yield indices[batch * self.batch_size:(batch + 1) * self.batch_size]
            skip, epoch = 0, epoch + 1


def make_progress(disable: bool = False):
    """A rich progress bar with rate and ETA (disabled on non-main ranks)."""
    stream = random.getstate()  # rich draws from Python's global RNG when first imported: keep the run's stream
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    random.setstate(stream)

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        disable=disable,
    )


def save_loss_curve(log_path: Path, png_path: Path, keys: list[str]) -> None:
    """Plot the named scalar series of a JSONL log against `step` into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_jsonl(log_path)
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in keys:
        points = [(r["step"], r[key]) for r in records if key in r and "step" in r]
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, label=key)
    ax.set_xlabel("step")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def save_image_grid(images: torch.Tensor, path: Path, nrow: int = 8) -> None:
    """Save a batch in [-1, 1] ([B, C, H, W], C = 1 or 3) as one PNG grid."""
    from torchvision.utils import save_image

    save_image(images.detach().float().cpu().clamp(-1, 1) * 0.5 + 0.5, path, nrow=nrow, padding=2, format="PNG")
