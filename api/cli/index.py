"""`s2m index ...`: embed the archive with a bundle and build, refresh and inspect the fused index."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, ContextManager, Optional

import typer

from api.cli.archive import open_archive
from api.cli.errors import add_group
from generation.presets import SHIPPED_BUNDLE

if TYPE_CHECKING:
    from generation.bundle import Bundle
    from indexing.archive import Archive

HELP = "The archive index: stored vectors and the fused FAISS index."

MODEL_HELP = "model bundle with synthesizer, embedder and encoder"


def _embed(archive: "Archive", bundle: "Bundle", device: str, batch_size: int, progress: bool) -> str:
    """Store the vectors of every live image lacking them (this process's shard under torchrun); the bundle version."""
    import torch.distributed as dist

    from generation.training import init_distributed, make_progress
    from indexing.vectors import ArchiveModels, Shard, embed_archive

    ctx = init_distributed(device)
    models = ArchiveModels.load(bundle, ctx.device)
    with make_progress(disable=not progress or not ctx.is_main) as bar:
        task = bar.add_task("embed", total=None, status=f"rank {ctx.rank}/{ctx.world_size}")
        report = embed_archive(archive, models, batch_size, Shard(ctx.rank, ctx.world_size),
                               on_batch=lambda done, total: bar.update(task, completed=done, total=total))
    if ctx.distributed:
        dist.barrier()  # every shard stored before rank 0 indexes
    typer.echo(f"rank {ctx.rank}: embedded {report.embedded} images ({report.blank_sketches} with no instance found by S)")
    return models.version


def _is_main() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


def _one_at_a_time(archive: "Archive") -> ContextManager[None]:
    """The archive's index lock for the main process (a second build or refresh is one sentence,
    exit 2); a torchrun job's other ranks embed their own shards under their rank 0's lock."""
    from indexing.locks import index_build_lock

    return index_build_lock(archive.engine, archive.settings.data_dir) if _is_main() else nullcontext()


def build(
    model: Path = typer.Option(SHIPPED_BUNDLE, "--model", help=MODEL_HELP),
    factory: str = typer.Option("Flat", "--factory", help="FAISS factory string: Flat, IVF1024,Flat, IVF4096,PQ32, HNSW32, ..."),
    appearance_dims: int = typer.Option(256, "--appearance-dims", min=0, help="PCA dims of the appearance channel (0: none)"),
    shape_dims: int = typer.Option(64, "--shape-dims", min=0, help="PCA dims of the shape channel (0: none)"),
    latent_dims: int = typer.Option(0, "--latent-dims", min=0, help="PCA dims of the latent channel (0: none)"),
    weights: Optional[str] = typer.Option(None, "--weights", help="appearance,latent,shape weights (default 0,0.1,1: indexing.fused_index.ChannelWeights)"),
    nprobe: int = typer.Option(32, "--nprobe", min=1, help="IVF lists searched per query"),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
    activate: bool = typer.Option(True, "--activate/--no-activate",
                                  help="activate the build at once (default), or leave it beside the active one for `s2m index activate`"),
) -> None:
    """Embed every live image lacking vectors for the bundle (resumable; shards under torchrun), then build and activate a fresh index.

    The bundle's folder is recorded with the build: serving replicas move to it when the build is activated."""
    from generation.bundle import Bundle
    from indexing.fused_index import BuildConfig, build_index
    from indexing.shape import ShapeConfig

    bundle = Bundle.open(model)  # opened once: its resolution here, its networks in _embed
    config = BuildConfig(factory=factory, appearance_dims=appearance_dims or None, shape_dims=shape_dims or None,
                         latent_dims=latent_dims or None, weights=_weights(weights), nprobe=nprobe,
                         shape=ShapeConfig(side=bundle.resolution))  # the shape channel reads the sketches S stores
    with open_archive() as archive, _one_at_a_time(archive):
        version = _embed(archive, bundle, device, batch_size, progress)
        if not _is_main():
            return
        row = build_index(archive, version, config, bundle=model.resolve(), activate=activate)
        done = "built and activated" if activate else "built (not activated: `s2m index activate ID` switches to it)"
        typer.echo(f"{done} index build {row.id}: {row.vector_count} images, factory {row.factory}, bundle version {version}")


def refresh(
    model: Path = typer.Option(SHIPPED_BUNDLE, "--model", help=MODEL_HELP),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    device: str = typer.Option("auto", "--device"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Embed new images, add them to a copy of the active index and drop soft-deleted ones; activate it."""
    from generation.bundle import Bundle
    from indexing.fused_index import refresh_index, require_active_build

    with open_archive() as archive, _one_at_a_time(archive):
        require_active_build(archive)
        version = _embed(archive, Bundle.open(model), device, batch_size, progress)
        if not _is_main():
            return
        report = refresh_index(archive, version)
        how = "rebuilt (the factory cannot remove vectors)" if report.rebuilt else "refreshed"
        typer.echo(f"{how} into index build {report.build.id}: {report.added} added, {report.removed} removed, "
                   f"{report.build.vector_count} images")


def activate(build_id: int = typer.Argument(..., help="the id `s2m index build --no-activate` printed")) -> None:
    """Make a finished build the active one; every serving replica moves to it (and to its bundle) on its next search."""
    from indexing.fused_index import activate_build

    with open_archive() as archive:
        row = activate_build(archive, build_id)
    typer.echo(f"activated index build {row.id}: {row.vector_count} images, bundle version {row.model_version}")


def status() -> None:
    """The active build: images, bundle version, factory, weights, age, and live images not yet indexed."""
    from indexing.fused_index import index_status
    from indexing.models import utc_now

    with open_archive() as archive:
        state = index_status(archive)
    if state.build_id is None:
        typer.echo(f"no active index build; {state.live_images} live images not indexed (run `s2m index build`)")
        return
    age_h = (utc_now() - state.created_at).total_seconds() / 3600
    weights = ", ".join(f"{name} {value:g}" for name, value in state.weights.items())
    typer.echo(f"active build {state.build_id}: {state.vector_count} images, bundle version {state.version}, "
               f"factory {state.factory}, weights {weights}, built {age_h:.1f} h ago")
    typer.echo(f"{state.not_indexed} of {state.live_images} live images not indexed yet")


def set_weights(weights: str = typer.Argument(..., help="appearance,latent,shape, e.g. 0.2,0.3,1")) -> None:
    """Change the active build's channel weights (query-side: nothing is re-embedded or rebuilt)."""
    from indexing.fused_index import set_weights as store_weights

    parsed = _weights(weights)
    with open_archive() as archive:
        row = store_weights(archive, parsed)
    typer.echo(f"index build {row.id} now weighs appearance {parsed.appearance:g}, latent {parsed.latent:g}, shape {parsed.shape:g}")


def _weights(text: Optional[str]):  # type: ignore[no-untyped-def]
    from formats.errors import InputError
    from indexing.fused_index import ChannelWeights

    if text is None:
        return ChannelWeights()
    try:
        appearance, latent, shape = (float(part) for part in text.split(","))
        return ChannelWeights(appearance, latent, shape)
    except ValueError:
        raise InputError("weights are three numbers >= 0, not all zero: appearance,latent,shape") from None


def register(app: typer.Typer) -> None:
    """Add the `s2m index` command group to the top-level app."""
    add_group(app, "index", HELP, {"build": build, "refresh": refresh, "activate": activate, "status": status,
                                   "set-weights": set_weights})
