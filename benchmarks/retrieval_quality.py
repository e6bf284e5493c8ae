"""Retrieval quality of each channel, contour chamfer and the fused index on a phantom archive.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/retrieval_quality.py \
        --archive data/bench/archive2000 --heldout data/bench/heldout300 --work data/bench/quality

The archive is ingested and embedded through the product's own code (`embed_archive`,
`build_index`), then 300 free-hand sketches (the phantom simulator's default style) are drawn
of archive images (exact case: is the drawn image in the top 10?) and 300 of held-out phantoms
(similar case: nDCG@10, graded by the mean per-class DICE of the true masks). Fusion weights are
chosen on the first half of each query set and reported on the other half, through the engine's
FAISS path (fused index, exact re-rank). Also measures sketch canonicalisation (close to the
identity on 64-px contour sketches; latent recall on 256-px drawings area-resized to 64 px).
Writes a JSON report.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from formats.sketch import canonical_sketch
from generation.presets import SHIPPED_BUNDLE
from indexing.archive import Archive
from indexing.fused_index import BuildConfig, ChannelWeights, build_index, load_archive_vectors
from indexing.ingest.run import ingest_path
from indexing.settings import Settings
from indexing.shape import ShapeConfig, archive_vectors, query_vectors
from indexing.vectors import CHANNELS, ArchiveModels, embed_archive, latent_vectors
from retrieval.engine import EngineConfig, Query, SearchEngine

K = 10
CATEGORIES = (1, 2, 3, 4)
WEIGHT_GRID = (0.0, 0.1, 0.25, 0.5, 1.0)
CHAMFER_UNTRUNCATED = 1e6


def class_masks(dataset: Path, ids: list[str]) -> np.ndarray:
    """bool [N, 4, H*W]: per image, the union of its instances of each category."""
    from phantoms.preview import dataset_categories

    categories = dataset_categories(dataset)
    out = []
    for image_id in ids:
        mask = np.asarray(Image.open(dataset / "masks" / f"{image_id}.png"))
        mapping = categories[image_id]
        out.append(np.stack([np.isin(mask, [i for i, c in mapping.items() if c == cat]).ravel() for cat in CATEGORIES]))
    return np.stack(out)


def mean_class_dice(queries: np.ndarray, archive: np.ndarray) -> np.ndarray:
    """[Q, 4, P] x [N, 4, P] -> [Q, N] mean over categories present in either of the DICE."""
    total = np.zeros((len(queries), len(archive)))
    present = np.zeros_like(total)
    for c in range(len(CATEGORIES)):
        q, a = queries[:, c].astype(np.float32), archive[:, c].astype(np.float32)
        inter = q @ a.T
        sizes = q.sum(1)[:, None] + a.sum(1)[None, :]
        has = sizes > 0
        total += np.where(has, 2 * inter / np.maximum(sizes, 1), 0)
        present += has
    return total / np.maximum(present, 1)


def recall_at(scores: np.ndarray, truth: np.ndarray, k: int = K) -> float:
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == truth[:, None]).any(axis=1).mean())


def ndcg_at(ranked: np.ndarray, relevance: np.ndarray, k: int = K) -> float:
    """ranked [Q, >=k] archive columns, relevance [Q, N] -> mean nDCG@k."""
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    gains = np.take_along_axis(relevance, ranked[:, :k], axis=1)
    ideal = -np.sort(-relevance, axis=1)[:, :k]
    return float(((gains * discounts).sum(1) / (ideal * discounts).sum(1)).mean())


def top_columns(scores: np.ndarray, k: int = K) -> np.ndarray:
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def freehand(dataset: Path, ids: list[str], seed: int) -> list[np.ndarray]:
    from phantoms.preview import SketchStyle, dataset_categories, draw_sketch, load_case

    categories = dataset_categories(dataset)
    return [draw_sketch(load_case(dataset, i, categories), SketchStyle.freehand, seed) for i in ids]


def contour_at(dataset: Path, image_id: str, side: int) -> np.ndarray:
    from formats.contours import contour_sketch

    mask = np.asarray(Image.open(dataset / "masks" / f"{image_id}.png"))
    return contour_sketch(cv2.resize(mask, (side, side), interpolation=cv2.INTER_NEAREST))


def area_resized(sketch: np.ndarray, side: int) -> np.ndarray:
    return np.asarray(Image.fromarray(sketch).resize((side, side), Image.Resampling.BOX))


def prepare_archive(args: argparse.Namespace) -> tuple[Settings, str, dict]:
    work = args.work
    settings = Settings(data_dir=work / "data", database_url=f"sqlite:///{work / 'archive.sqlite3'}", pseudonym_key=b"bench")
    archive = Archive.create(settings)
    ingest_path(archive, args.archive, None, None, progress=False)
    models = ArchiveModels.load(args.model, torch.device("cpu"))
    start = time.perf_counter()
    report = embed_archive(archive, models, batch_size=args.batch_size)
    elapsed = time.perf_counter() - start
    archive.close()
    return settings, models.version, {"embedded": report.embedded, "seconds": elapsed, "blank": report.blank_sketches,
                                      "images_per_s": report.embedded / elapsed if report.embedded else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--archive", type=Path, required=True)
    parser.add_argument("--heldout", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=SHIPPED_BUNDLE)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--report", type=Path, default=None)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    report: dict = {"command": "benchmarks/retrieval_quality.py", "queries": args.queries}

    settings, version, report["embedding"] = prepare_archive(args)
    print("embedded", report["embedding"], flush=True)
    archive = Archive.open(settings)
    config = BuildConfig()
    row = build_index(archive, version, config)
    with archive.sessions() as session:
        vectors = load_archive_vectors(session, version, config.shape)
        case_of = dict(session.execute(__import__("sqlalchemy").text("select id, case_ref from images")).all())
    archive.close()
    archive_cases = [case_of[int(i)] for i in vectors.ids]
    archive_names = [c.split("-")[1] for c in archive_cases]  # PH2-000123 -> image id 000123
    column_of = {name: col for col, name in enumerate(archive_names)}

    engine = SearchEngine.open(settings, EngineConfig(bundle=args.model, device="cpu"))
    build = engine.build
    rng = np.random.default_rng(args.seed)
    exact_names = [archive_names[i] for i in rng.choice(len(archive_names), args.queries, replace=False)]
    from phantoms.preview import case_ids

    heldout_names = case_ids(args.heldout)[: args.queries]
    exact_sketches = freehand(args.archive, exact_names, seed=args.seed + 100)
    similar_sketches = freehand(args.heldout, heldout_names, seed=args.seed + 200)

    def query_side(sketches: list[np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        canonical = engine.canonicalise(sketches)
        parts = {name: [] for name in CHANNELS}
        for start in range(0, len(canonical), 32):
            w, images = engine.generate(canonical[start : start + 32])
            for name, value in engine.embed(w, images, canonical[start : start + 32], build).items():
                parts[name].append(value)
        return canonical, {name: np.concatenate(value) for name, value in parts.items()}

    t = time.perf_counter()
    exact_canon, exact_q = query_side(exact_sketches)
    similar_canon, similar_q = query_side(similar_sketches)
    report["query_side_ms_per_query"] = (time.perf_counter() - t) * 1000 / (2 * args.queries)
    truth = np.array([column_of[name] for name in exact_names])
    relevance = mean_class_dice(class_masks(args.heldout, heldout_names), class_masks(args.archive, archive_names))
    random_ndcg = float(np.mean([ndcg_at(rng.permuted(np.tile(np.arange(relevance.shape[1]), (len(relevance), 1)), axis=1), relevance) for _ in range(5)]))

    def channel_scores(q: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: q[name] @ vectors.channels[name].T for name in CHANNELS}

    untruncated = ShapeConfig(side=config.shape.side, truncation=CHAMFER_UNTRUNCATED)
    chamfer_archive = archive_vectors(vectors.sketches, untruncated)
    exact_s, similar_s = channel_scores(exact_q), channel_scores(similar_q)
    exact_s["chamfer"] = query_vectors(exact_canon, untruncated) @ chamfer_archive.T
    similar_s["chamfer"] = query_vectors(similar_canon, untruncated) @ chamfer_archive.T

    half = args.queries // 2
    val, test = slice(0, half), slice(half, args.queries)

    def metrics(exact: np.ndarray, similar: np.ndarray, part: slice) -> dict[str, float]:
        return {"exact_recall@10": recall_at(exact[part], truth[part]),
                "similar_ndcg@10": ndcg_at(top_columns(similar[part]), relevance[part])}

    rows = {name: {"val": metrics(exact_s[name], similar_s[name], val), "test": metrics(exact_s[name], similar_s[name], test)}
            for name in (*CHANNELS, "chamfer")}

    def fused(scores: dict[str, np.ndarray], weights: tuple[float, float, float]) -> np.ndarray:
        return sum(w * build.scales[name] * scores[name] for w, name in zip(weights, CHANNELS))

    best, best_value = None, -1.0
    for weights in itertools.product(WEIGHT_GRID, repeat=3):
        if not any(weights):
            continue
        value = metrics(fused(exact_s, weights), fused(similar_s, weights), val)
        objective = value["exact_recall@10"] + value["similar_ndcg@10"]
        if objective > best_value:
            best, best_value = weights, objective
    rows["fused_exact_scores"] = {"weights": best, "val": metrics(fused(exact_s, best), fused(similar_s, best), val),
                                  "test": metrics(fused(exact_s, best), fused(similar_s, best), test)}
    rows["fused_equal_weights"] = {"test": metrics(fused(exact_s, (1, 1, 1)), fused(similar_s, (1, 1, 1)), test)}

    # the product path: the fused FAISS index (PCA-compressed, Flat) + exact re-rank, with the chosen weights
    def engine_top(canon: np.ndarray, part: slice) -> np.ndarray:
        results = engine.search_many([Query(sketch, K, weights=ChannelWeights(*best)) for sketch in canon[part]])
        return np.array([[column_of[h.case.case_ref.split("-")[1]] for h in r.hits] for r in results])
    t = time.perf_counter()
    exact_top = engine_top(exact_canon, test)
    similar_top = engine_top(similar_canon, test)
    rows["fused_index"] = {"weights": best, "test": {
        "exact_recall@10": float((exact_top == truth[test][:, None]).any(1).mean()),
        "similar_ndcg@10": ndcg_at(similar_top, relevance[test]),
    }, "ms_per_query": (time.perf_counter() - t) * 1000 / (2 * (args.queries - half))}
    report["rows"] = rows
    report["random_ndcg@10"] = random_ndcg
    report["scales"] = build.scales
    report["build_config"] = {"factory": config.factory, "dims": {n: config.dims(n) for n in CHANNELS}, "truncation": config.shape.truncation}

    # canonicalisation: identity on 64-px contour sketches; 256-px drawings area-resized to 64 px
    ids = exact_names
    contour64 = [contour_at(args.archive, i, 64) for i in ids]
    canon64 = [canonical_sketch(s, 64) for s in contour64]
    drawn256 = [contour_at(args.archive, i, 256) for i in ids]
    def ink_change(a: np.ndarray, b: np.ndarray) -> float:
        return float(((a < 128) != (b < 128)).sum() / max((a < 128).sum(), 1))
    from scipy.ndimage import distance_transform_edt
    def chamfer(a: np.ndarray, b: np.ndarray) -> float:
        ia, ib = a < 128, b < 128
        return float(distance_transform_edt(~ib)[ia].mean() + distance_transform_edt(~ia)[ib].mean())
    def latent_recall(sketches: np.ndarray) -> float:
        batch = torch.from_numpy(np.stack(sketches)).float().div(127.5).sub(1).unsqueeze(1)
        with torch.no_grad():
            w = engine.pipeline.encoder(batch)
        return recall_at(latent_vectors(w, engine.pipeline.encoder.w_avg) @ vectors.channels["latent"].T, truth)
    def w_cos(a: list[np.ndarray], b: list[np.ndarray]) -> float:
        enc = engine.pipeline.encoder
        with torch.no_grad():
            wa = enc(torch.from_numpy(np.stack(a)).float().div(127.5).sub(1).unsqueeze(1))
            wb = enc(torch.from_numpy(np.stack(b)).float().div(127.5).sub(1).unsqueeze(1))
        return float(torch.nn.functional.cosine_similarity(wa - enc.w_avg, wb - enc.w_avg).mean())
    resized = [area_resized(s, 64) for s in drawn256]
    report["canonicalisation"] = {
        "contour64_ink_pixels_changed": float(np.mean([ink_change(a, b) for a, b in zip(contour64, canon64)])),
        "contour64_chamfer_px": float(np.mean([chamfer(a, b) for a, b in zip(contour64, canon64)])),
        "contour64_w_cosine_(w-mean)": w_cos(contour64, canon64),
        "latent_recall@10": {
            "contour64_raw": latent_recall(contour64),
            "contour64_canonical": latent_recall(canon64),
            "drawn256_area_resized_raw": latent_recall(resized),
            "drawn256_area_resized_canonical": latent_recall([canonical_sketch(s, 64) for s in resized]),
            "drawn256_canonical": latent_recall([canonical_sketch(s, 64) for s in drawn256]),
        },
    }
    engine.close()
    print(json.dumps(report, indent=2), flush=True)
    out = args.report or args.work / "report.json"
    out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
