"""Search latency per stage and IVF recall against Flat, from 2,000 real to 1M synthetic vectors.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/index_latency.py --work data/bench/quality

Needs the archive that `benchmarks/retrieval_quality.py` built in --work (2,000 phantoms, the
shipped bundle, an active Flat build). Per-stage timings come from the engine on that archive
(one query at a time). The FAISS stage at 10k, 100k and 1M vectors uses synthetic archive
vectors drawn around the real fused vectors (a random mix of two real images plus noise, so the
data keeps the real spectrum) and the real free-hand query vectors; recall@10 of an IVF factory
is measured against Flat, raw and after the engine's exact re-rank of its candidates.
Also reports bytes per image per channel, raw and compressed. Writes a JSON report.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import faiss
import numpy as np
from sqlalchemy import func, select

from generation.presets import SHIPPED_BUNDLE
from indexing.archive import Archive
from indexing.fused_index import fuse, load_archive_vectors
from indexing.models import Sketch
from indexing.settings import Settings
from indexing.vectors import CHANNELS
from retrieval.engine import EngineConfig, SearchEngine

K = 10
CANDIDATES = 50  # what the engine fetches for k = 10 (oversample 4, at least 50)
SIZES = (10_000, 100_000, 1_000_000)
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


def timed_search(index: faiss.Index, queries: np.ndarray, count: int, params=None) -> tuple[np.ndarray, list[float]]:  # type: ignore[no-untyped-def]
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--archive", type=Path, default=Path("data/bench/archive2000"))
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--nlist", type=int, default=1024)
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--report", type=Path, default=None)
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    settings = Settings(data_dir=args.work / "data", database_url=f"sqlite:///{args.work / 'archive.sqlite3'}", pseudonym_key=b"bench")
    engine = SearchEngine.open(settings, EngineConfig(bundle=SHIPPED_BUNDLE, device="cpu"))
    build = engine.build
    report: dict = {"command": "benchmarks/index_latency.py", "threads": 1, "build_factory": build.factory}

    from phantoms.preview import SketchStyle, case_ids, dataset_categories, draw_sketch, load_case

    categories = dataset_categories(args.archive)
    names = case_ids(args.archive)[: args.queries]
    sketches = [draw_sketch(load_case(args.archive, n, categories), SketchStyle.freehand, 300) for n in names]

    stage_times: dict[str, list[float]] = {}
    for sketch in sketches:  # one query at a time, as an unbatched request
        for stage, ms in engine.search(sketch, k=K).timings_ms.items():
            stage_times.setdefault(stage, []).append(ms)
    report["stages_2000_real_flat_ms"] = {stage: percentiles(values) for stage, values in stage_times.items()}
    report["total_2000_real_flat_ms"] = percentiles([sum(v) for v in zip(*stage_times.values())])

    canonical = engine.canonicalise(sketches)
    generated_w, images = engine.generate(canonical)
    channels = engine.embed(generated_w, images, canonical, build)
    queries = fuse(build.transforms, {n: build.weights.of(n) for n in CHANNELS}, channels, archive_side=False)
    archive = Archive.open(settings)
    with archive.sessions() as session:
        vectors = load_archive_vectors(session, build.version, build.shape)
        png_bytes = session.scalar(select(func.avg(func.length(Sketch.png))))
    archive.close()
    real = build.fused_archive(vectors)
    report["bytes_per_image"] = {
        "raw_float32": {n: int(vectors.channels[n].shape[1] * 4) for n in CHANNELS},
        "index_float32": {n: int(build.transforms[n].output_dim * 4) for n in CHANNELS},
        "fused_dim": int(real.shape[1]),
        "db_sketch_png_mean": float(png_bytes),
    }
    rng = np.random.default_rng(0)
    scaling = {}
    for size in args.sizes:
        data = synthetic(real, size, rng)
        ids = np.arange(size, dtype=np.int64)
        flat = faiss.IndexIDMap2(faiss.IndexFlatIP(data.shape[1]))
        flat.add_with_ids(data, ids)
        truth, flat_times = timed_search(flat, queries, CANDIDATES)
        row = {"flat_ms": percentiles(flat_times), "flat_bytes_per_image": data.shape[1] * 4}
        nlist = min(args.nlist, size // 40)
        for factory in (f"IVF{nlist},Flat", f"IVF{nlist},PQ{data.shape[1] // 8}"):
            start = time.perf_counter()
            index = faiss.IndexIDMap2(faiss.index_factory(data.shape[1], factory, faiss.METRIC_INNER_PRODUCT))
            index.train(data[rng.choice(size, size=min(TRAIN_SAMPLE, size), replace=False)])
            index.add_with_ids(data, ids)
            built_s = time.perf_counter() - start
            path = args.work / "latency.faiss"
            faiss.write_index(index, str(path))
            entry = {"build_s": built_s, "file_bytes_per_image": path.stat().st_size / size}
            path.unlink()
            for nprobe in (8, 16, 32, 64):
                params = faiss.SearchParametersIVF()
                params.nprobe = nprobe
                found, times = timed_search(index, queries, CANDIDATES, params)
                entry[f"nprobe{nprobe}"] = {"ms": percentiles(times), "recall@10": recall(found, truth),
                                            "recall@10_reranked": recall(reranked(found, data, queries), truth)}
            row[factory] = entry
            print(size, factory, json.dumps(entry), flush=True)
        row["flat_recall_check"] = recall(truth, truth)
        scaling[str(size)] = row
        print(size, "flat", row["flat_ms"], flush=True)
        del data, flat
    report["synthetic"] = scaling
    engine.close()
    text = json.dumps(report, indent=2)
    print(text)
    (args.report or args.work / "latency.json").write_text(text)


if __name__ == "__main__":
    main()
