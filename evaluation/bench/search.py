"""Search speed: the engine's per-stage latency on a real archive, and the FAISS stage alone at larger sizes.

The larger sizes use synthetic archive vectors drawn around the real fused vectors (a random mix
of two real images plus noise, so the data keeps the real spectrum) and the real query vectors;
recall@10 of an IVF index is measured against Flat, raw and after the engine's exact re-rank.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from generation.signs import PRESENT
from indexing.archive import Archive
from indexing.fused_index import fuse, load_archive_vectors
from indexing.vectors import CHANNELS
from retrieval.engine import SearchEngine

K = 10
CANDIDATES = 50  # what the engine fetches for k = 10 (oversample 4, at least 50)
SIZES = (10_000, 100_000, 1_000_000)
NPROBES = (8, 16, 32, 64)
TRAIN_SAMPLE = 50_000
NOISE = 0.1


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95))}


def synthetic(real: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """[count, D] around the real rows: lambda a + (1 - lambda) b + noise, chunked to bound memory."""
    spread = real.std(axis=0, keepdims=True)
    out = np.empty((count, real.shape[1]), dtype=np.float32)
    for start in range(0, count, 100_000):
        n = min(100_000, count - start)
        mix = rng.uniform(size=(n, 1)).astype(np.float32)
        a, b = real[rng.integers(len(real), size=n)], real[rng.integers(len(real), size=n)]
        out[start : start + n] = mix * a + (1 - mix) * b + NOISE * spread * rng.standard_normal((n, real.shape[1]), dtype=np.float32)
    return out


def timed_search(index: faiss.Index, queries: np.ndarray, count: int, params: Any = None) -> tuple[np.ndarray, list[float]]:
    """Each query alone (an unbatched request): the found ids and each search's milliseconds."""
    ids, times = [], []
    for query in queries:
        start = time.perf_counter()
        _, found = index.search(query[None], count, params=params)
        times.append((time.perf_counter() - start) * 1000)
        ids.append(found[0])
    return np.stack(ids), times


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[:K]) & set(t[:K])) / K for f, t in zip(found, truth)]))


def reranked(candidates: np.ndarray, vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The engine's exact re-rank: candidates re-scored with the uncompressed vectors, best first."""
    out = []
    for query, ids in zip(queries, candidates):
        ids = ids[ids >= 0]
        out.append(ids[np.argsort(-(vectors[ids] @ query), kind="stable")])
    return np.array([np.pad(o, (0, CANDIDATES - len(o)), constant_values=-1) for o in out])


def stage_latency(engine: SearchEngine, sketches: list[np.ndarray]) -> dict[str, dict[str, float]]:
    """p50/p95 ms of each engine stage and of their total, one query at a time."""
    stage_times: dict[str, list[float]] = {}
    for sketch in sketches:
        for stage, ms in engine.search(sketch, k=K).timings_ms.items():
            stage_times.setdefault(stage, []).append(ms)
    report = {stage: percentiles(values) for stage, values in stage_times.items()}
    report["total"] = percentiles([sum(v) for v in zip(*stage_times.values())])
    return report


def sign_cost(engine: SearchEngine, sketches: list[np.ndarray]) -> dict[str, Any] | None:
    """What applying clinical signs costs a query, one query at a time, every sign the bundle has asked
    "present": the signs' own work (check, W offset, appearance edit: p50/p95 ms) and the engine's total
    with and without them (the W edit changes no stage's shape, so the difference is that work). None
    when the bundle has no sign directions."""
    directions = engine.models.signs
    if directions is None or not directions.current:
        return None
    asked = {sign: PRESENT for sign in directions.names}
    own, plain, signed = [], [], []
    for sketch in sketches:
        start = time.perf_counter()
        strengths = engine.models.sign_strengths(asked)
        offset = engine.models.w_offsets([strengths])
        directions.edit_appearance(np.ones(directions.appearance.shape[1], np.float32), strengths)
        directions.applied(strengths)
        own.append((time.perf_counter() - start) * 1000)
        del offset
        plain.append(sum(engine.search(sketch, k=K).timings_ms.values()))
        signed.append(sum(engine.search(sketch, k=K, signs=asked).timings_ms.values()))
    return {"signs": len(asked), "apply_ms": percentiles(own), "total_ms_without": percentiles(plain),
            "total_ms_with": percentiles(signed)}


def real_vectors(engine: SearchEngine, archive: Archive, sketches: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, Any]:
    """The archive's fused vectors, the sketches' fused query vectors, and the stored vectors (for byte counts)."""
    build = engine.build
    canonical = engine.canonicalise(sketches)
    generated = engine.generate(canonical)
    channels = engine.embed(generated.w, generated.image, canonical, build)
    queries = fuse(build.transforms, {n: build.weights.of(n) for n in CHANNELS}, channels, archive_side=False)
    with archive.sessions() as session:
        vectors = load_archive_vectors(session, build.version, build.shape)
    return build.fused_archive(vectors), queries, vectors


def ivf_entry(data: np.ndarray, queries: np.ndarray, truth: np.ndarray, factory: str, rng: np.random.Generator,
              work: Path, nprobes: tuple[int, ...] = NPROBES) -> dict[str, Any]:
    """Build `factory` (an IVF index) on `data`: build seconds, file bytes per image, and per nprobe ms and recall@10."""
    size = len(data)
    start = time.perf_counter()
    index = faiss.IndexIDMap2(faiss.index_factory(data.shape[1], factory, faiss.METRIC_INNER_PRODUCT))
    index.train(data[rng.choice(size, size=min(TRAIN_SAMPLE, size), replace=False)])
    index.add_with_ids(data, np.arange(size, dtype=np.int64))
    entry: dict[str, Any] = {"build_s": time.perf_counter() - start}
    path = work / "latency.faiss"
    faiss.write_index(index, str(path))
    entry["file_bytes_per_image"] = path.stat().st_size / size
    path.unlink()
    for nprobe in nprobes:
        params = faiss.SearchParametersIVF()
        params.nprobe = nprobe
        found, times = timed_search(index, queries, CANDIDATES, params)
        entry[f"nprobe{nprobe}"] = {"ms": percentiles(times), "recall@10": recall(found, truth),
                                    "recall@10_reranked": recall(reranked(found, data, queries), truth)}
    return entry


def faiss_scaling(real: np.ndarray, queries: np.ndarray, sizes: tuple[int, ...], work: Path, nlist: int = 1024,
                  pq: bool = True, on_entry: Callable[[int, str, dict], None] | None = None) -> dict[str, dict[str, Any]]:
    """Flat and IVF (nlist capped at size / 40; with `pq`, also IVF,PQ) on synthetic vectors of each size."""
    rng = np.random.default_rng(0)
    scaling = {}
    for size in sizes:
        data = synthetic(real, size, rng)
        flat = faiss.IndexIDMap2(faiss.IndexFlatIP(data.shape[1]))
        flat.add_with_ids(data, np.arange(size, dtype=np.int64))
        truth, flat_times = timed_search(flat, queries, CANDIDATES)
        row: dict[str, Any] = {"flat_ms": percentiles(flat_times), "flat_bytes_per_image": data.shape[1] * 4}
        lists = max(1, min(nlist, size // 40))
        factories = [f"IVF{lists},Flat"] + ([f"IVF{lists},PQ{data.shape[1] // 8}"] if pq else [])
        for factory in factories:
            row[factory] = ivf_entry(data, queries, truth, factory, rng, work)
            if on_entry is not None:
                on_entry(size, factory, row[factory])
        row["flat_recall_check"] = recall(truth, truth)
        scaling[str(size)] = row
        if on_entry is not None:
            on_entry(size, "flat", row["flat_ms"])
        del data, flat
    return scaling
