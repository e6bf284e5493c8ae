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
from pathlib import Path

import faiss
from sqlalchemy import func, select

from api.bench.search import SIZES, faiss_scaling, real_vectors, stage_latency
from generation.presets import SHIPPED_BUNDLE
from indexing.archive import Archive
from indexing.models import Sketch
from indexing.settings import Settings
from indexing.vectors import CHANNELS
from retrieval.engine import EngineConfig, SearchEngine


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

    stages = stage_latency(engine, sketches)  # one query at a time, as an unbatched request
    report["total_2000_real_flat_ms"] = stages.pop("total")
    report["stages_2000_real_flat_ms"] = stages
    archive = Archive.open(settings)
    real, queries, vectors = real_vectors(engine, archive, sketches)
    with archive.sessions() as session:
        png_bytes = session.scalar(select(func.avg(func.length(Sketch.png))))
    archive.close()
    report["bytes_per_image"] = {
        "raw_float32": {n: int(vectors.channels[n].shape[1] * 4) for n in CHANNELS},
        "index_float32": {n: int(build.transforms[n].output_dim * 4) for n in CHANNELS},
        "fused_dim": int(real.shape[1]),
        "db_sketch_png_mean": float(png_bytes),
    }
    report["synthetic"] = faiss_scaling(real, queries, tuple(args.sizes), args.work, args.nlist,
                                        on_entry=lambda size, name, entry: print(size, name, json.dumps(entry), flush=True))
    engine.close()
    text = json.dumps(report, indent=2)
    print(text)
    (args.report or args.work / "latency.json").write_text(text)


if __name__ == "__main__":
    main()
