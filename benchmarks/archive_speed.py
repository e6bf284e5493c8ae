"""Archive-side throughput (images/s) and where each image's time goes: S, C, E, the sketch, the DB.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/archive_speed.py --dataset data/bench/archive2000 \
        --count 512 --batch-size 32 --threads 1 [--device cuda]

Times the steps `indexing.vectors.embed_archive` runs, on the dataset's images read from disk:
reading and resizing, S's network forward pass, S's per-image instance decoding (SOLOv2's
matrix NMS and mask upsampling), drawing and canonicalising the sketch, C's descriptor, E's
w, and the end-to-end job into a fresh SQLite archive (DB writes included).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from formats.sketch import SketchError, canonical_sketch
from generation.data import box_resize, image_to_tensor, load_rgb, list_images
from generation.presets import SHIPPED_BUNDLE
from generation.solov2.model import sketch_from_instances
from indexing.vectors import ArchiveModels


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--count", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--end-to-end", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    models = ArchiveModels.load(SHIPPED_BUNDLE, device)
    paths = list_images(args.dataset / "images")[: args.count]
    steps = dict.fromkeys(("read", "s_forward", "s_decode", "sketch", "c_describe", "e_latent"), 0.0)
    synthesizer = models.synthesizer
    threshold = synthesizer.config.score_threshold
    with torch.no_grad():
        for start in range(0, len(paths), args.batch_size):
            t = time.perf_counter()
            images = torch.stack([image_to_tensor(load_rgb(p, models.resolution)) for p in paths[start : start + args.batch_size]]).to(device)
            _sync(device)
            steps["read"] += time.perf_counter() - t
            t = time.perf_counter()
            categories, kernels, features = synthesizer(box_resize(images, synthesizer.config.resolution))
            _sync(device)
            steps["s_forward"] += time.perf_counter() - t
            t = time.perf_counter()
            instances = [synthesizer._instances_of_image([c[b] for c in categories], [k[b] for k in kernels], features[b],
                                                         images.shape[-2:], threshold) for b in range(len(images))]
            steps["s_decode"] += time.perf_counter() - t
            t = time.perf_counter()
            sketches = np.full((len(images), models.resolution, models.resolution), 255, np.uint8)
            for row, found in enumerate(instances):
                try:
                    sketches[row] = canonical_sketch(sketch_from_instances(found, threshold), models.resolution)
                except SketchError:
                    pass
            steps["sketch"] += time.perf_counter() - t
            t = time.perf_counter()
            models.appearances(images)
            _sync(device)
            steps["c_describe"] += time.perf_counter() - t
            t = time.perf_counter()
            models.latents(sketches)
            _sync(device)
            steps["e_latent"] += time.perf_counter() - t
    count = len(paths)
    report = {
        "command": "benchmarks/archive_speed.py", "images": count, "batch_size": args.batch_size, "threads": args.threads,
        "device": str(device), "ms_per_image": {k: 1000 * v / count for k, v in steps.items()},
        "images_per_s_networks": count / sum(steps.values()),
    }
    if args.end_to_end:
        report["end_to_end"] = end_to_end(args, models)
    print(json.dumps(report, indent=2))


def end_to_end(args: argparse.Namespace, models: ArchiveModels) -> dict[str, float]:
    """The product's job (`embed_archive`) into a fresh SQLite archive, DB writes included."""
    import shutil

    from indexing.archive import Archive
    from indexing.db import make_engine, upgrade
    from indexing.ingest.run import ingest_path
    from indexing.settings import Settings
    from indexing.vectors import embed_archive

    root = Path(tempfile.mkdtemp(prefix="s2m-speed-"))
    try:
        subset = root / "subset"
        (subset / "images").mkdir(parents=True)
        for path in list_images(args.dataset / "images")[: args.count]:
            shutil.copy(path, subset / "images" / path.name)
        settings = Settings(data_dir=root / "data", database_url=f"sqlite:///{root / 'a.sqlite3'}", pseudonym_key=b"speed")
        engine = make_engine(settings.database_url)
        upgrade(engine)
        engine.dispose()
        archive = Archive.open(settings)
        ingest_path(archive, subset, None, None, progress=False)
        start = time.perf_counter()
        done = embed_archive(archive, models, batch_size=args.batch_size).embedded
        seconds = time.perf_counter() - start
        archive.close()
        return {"images": done, "seconds": seconds, "images_per_s": done / seconds}
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
