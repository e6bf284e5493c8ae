"""Where the engine's index searches: the selection rules, and the CPU fallback with its log line.

The GPU path itself cannot run here (no GPU build of faiss, no CUDA device): it is unverified.
"""

from __future__ import annotations

import logging

import faiss
import numpy as np
import pytest

from formats.errors import InputError
from indexing.faiss_device import choose_index_device, place_index


@pytest.mark.parametrize(("requested", "has_gpu_faiss", "gpus", "device", "why"), [
    ("cpu", True, 2, "cpu", None),
    ("auto", True, 1, "cuda", None),
    ("cuda", True, 1, "cuda", None),
    ("auto", False, 0, "cpu", "no GPU support"),
    ("cuda", False, 0, "cpu", "no GPU support"),
    ("auto", True, 0, "cpu", "no CUDA device"),
    ("cuda", True, 0, "cpu", "no CUDA device"),
])
def test_the_index_device_is_the_gpu_only_when_faiss_and_cuda_both_allow_it(requested, has_gpu_faiss, gpus, device, why) -> None:  # type: ignore[no-untyped-def]
    choice = choose_index_device(requested, has_gpu_faiss, gpus)
    assert choice.device == device
    assert (choice.reason is None) == (why is None) and (why is None or why in choice.reason)


def test_an_unknown_index_device_is_a_usage_error() -> None:
    with pytest.raises(InputError, match="choose one of auto, cpu, cuda"):
        choose_index_device("gpu0", True, 1)


def test_asking_for_cuda_here_falls_back_to_the_cpu_with_one_warning(caplog) -> None:  # type: ignore[no-untyped-def]
    index = faiss.IndexIDMap2(faiss.IndexFlatIP(4))
    index.add_with_ids(np.eye(4, dtype=np.float32), np.arange(10, 14))
    with caplog.at_level(logging.INFO, logger="indexing.faiss_device"):
        placed = place_index(index, "cuda", nprobe=8)
    assert placed.device == "cpu" and placed.gpu_index is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "searches on the CPU" in warnings[0].getMessage()
    with caplog.at_level(logging.INFO, logger="indexing.faiss_device"):
        caplog.clear()
        assert place_index(index, "cpu", nprobe=8).device == "cpu"
    assert caplog.records == []  # asked for the CPU: nothing to explain
