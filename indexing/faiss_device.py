"""Where a loaded index searches: a GPU when faiss has GPU support and CUDA is present, else the CPU.

Install one faiss per environment: the `[cpu]` extra (faiss-cpu, what `make` installs) or the
`[gpu]` extra (faiss-gpu-cu12 alone). The engine asks for `auto` (GPU if it can), `cpu` or `cuda`;
whenever it gets the CPU instead of a GPU it says why in one log line. The GPU copy answers
unfiltered queries; a filtered query (an IDSelector, which FAISS's GPU indexes do not take) and a
graph index (HNSW, which does not move to a GPU) search the CPU copy, which is always kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import faiss

from formats.errors import InputError

INDEX_DEVICES = ("auto", "cpu", "cuda")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceChoice:
    device: str  # "cpu" or "cuda"
    reason: str | None = None  # why not the GPU, when one could have been wanted


def gpu_support() -> tuple[bool, int]:
    """(this faiss has GPU support, the number of CUDA devices it sees)."""
    if not hasattr(faiss, "StandardGpuResources"):
        return False, 0
    try:
        return True, int(faiss.get_num_gpus())
    except RuntimeError:
        return True, 0


def choose_index_device(requested: str, has_gpu_faiss: bool, gpus: int) -> DeviceChoice:
    """The device a `requested` index device resolves to, and why it is not the GPU (pure: tested)."""
    if requested not in INDEX_DEVICES:
        raise InputError(f"unknown index device {requested!r}; choose one of {', '.join(INDEX_DEVICES)}")
    if requested == "cpu":
        return DeviceChoice("cpu")
    if not has_gpu_faiss:
        return DeviceChoice("cpu", "this faiss has no GPU support (install the [gpu] extra instead of [cpu])")
    if gpus == 0:
        return DeviceChoice("cpu", "faiss has GPU support but sees no CUDA device")
    return DeviceChoice("cuda")


@dataclass(frozen=True)
class PlacedIndex:
    """A GPU copy of an index (None: search the CPU one) and what keeps it alive."""

    gpu_index: Any = None
    resources: Any = None

    @property
    def device(self) -> str:
        return "cpu" if self.gpu_index is None else "cuda"


def place_index(index: faiss.Index, requested: str, nprobe: int) -> PlacedIndex:
    """A GPU copy of `index` when `requested` resolves to CUDA and the index type moves there."""
    choice = choose_index_device(requested, *gpu_support())
    if choice.device == "cpu":
        if choice.reason is not None:
            log = logger.warning if requested == "cuda" else logger.info
            log("the FAISS index searches on the CPU: %s", choice.reason)
        return PlacedIndex()
    try:
        resources = faiss.StandardGpuResources()
        gpu_index = faiss.index_cpu_to_gpu(resources, 0, index)
        if faiss.try_extract_index_ivf(index.index if hasattr(index, "index") else index) is not None:
            faiss.GpuParameterSpace().set_index_parameter(gpu_index, "nprobe", nprobe)
    except (RuntimeError, AttributeError) as error:  # e.g. HNSW: no GPU version
        logger.warning("the FAISS index searches on the CPU: this index type does not move to a GPU (%s)",
                       str(error).splitlines()[0] if str(error) else type(error).__name__)
        return PlacedIndex()
    logger.info("the FAISS index searches on GPU 0 (filtered queries on its CPU copy)")
    return PlacedIndex(gpu_index, resources)
