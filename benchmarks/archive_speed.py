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
import shutil
import tempfile
from pathlib import Path

import torch

from api.bench.archive import embed_fresh_archive, stage_times
from generation.data import list_images
from generation.presets import SHIPPED_BUNDLE
from indexing.settings import Settings
from indexing.vectors import ArchiveModels


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
    ms = stage_times(models, paths, args.batch_size, device)
    report = {
        "command": "benchmarks/archive_speed.py", "images": len(paths), "batch_size": args.batch_size, "threads": args.threads,
        "device": str(device), "ms_per_image": ms, "images_per_s_networks": 1000 / sum(ms.values()),
    }
    if args.end_to_end:
        report["end_to_end"] = end_to_end(paths, args.batch_size, models)
    print(json.dumps(report, indent=2))


def end_to_end(paths: list[Path], batch_size: int, models: ArchiveModels) -> dict[str, float]:
    """The product's job (`embed_archive`) on a copy of the images into a fresh SQLite archive, DB writes included."""
    root = Path(tempfile.mkdtemp(prefix="s2m-speed-"))
    try:
        subset = root / "subset"
        (subset / "images").mkdir(parents=True)
        for path in paths:
            shutil.copy(path, subset / "images" / path.name)
        settings = Settings(data_dir=root / "data", database_url=f"sqlite:///{root / 'a.sqlite3'}", pseudonym_key=b"speed")
        result = embed_fresh_archive(settings, subset, models, batch_size)
        return {key: result[key] for key in ("images", "seconds", "images_per_s")}
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
