"""The retrieval evaluation (`s2m eval retrieval`): the product's search, measured on phantom data.

It renders (or takes) a phantom archive, ingests, embeds and indexes it with the product's own code
(`indexing.prepare`), draws free-hand queries in every simulator drawer style at several abstraction
levels and canvas sizes, and reports each row of `retrieval.evaluation` (given a pix2pix bundle,
also pix2pix + C) per style, by abstraction level and by canvas side, with each row's query latency.
The fusion weights are chosen on validation queries of the seen styles only; the unseen styles
(`phantoms.freehand.UNSEEN_STYLES`) and the test halves are reported, never used for choosing.
"""

from __future__ import annotations

from pathlib import Path

from evaluation.sketches import DEFAULT_STYLE, draw_freehand, level_label

CANVASES = (64, 256, 512, 1024)
SWEEP_CANVASES = (64, 1024)


def run_retrieval_eval(model: Path, archive_count: int, queries: int, work: Path, archive_data: Path | None,
                       canvases: tuple[int, ...], size: int, seed: int, device: str, set_weights: bool,
                       pix2pix: Path | None = None, steps: int | None = None, signs: bool = False,
                       record_strengths: bool = False, feedback: bool = False) -> dict:
    """Render the archive and held-out cases (unless kept in `work`), prepare the archive, draw and score: the report.
    `record_strengths` (with `signs`) writes the strengths, route and weight validation chose into the bundle's signs;
    `feedback` adds the relevance-feedback rounds (`evaluation.feedback_rows`)."""
    from formats.errors import InputError
    from generation.bundle import PIX2PIX, Bundle
    from generation.signs import SignDirections
    from indexing import fused_index
    from indexing.archive import Archive
    from indexing.prepare import prepare_archive
    from indexing.settings import Settings
    from phantoms.dataset import generate_dataset
    from phantoms.freehand import SEEN_STYLES, UNSEEN_STYLES
    from retrieval.engine import EngineConfig, SearchEngine
    from retrieval.evaluation import archive_side, evaluate

    bundle = Bundle.open(model)
    if signs and SignDirections.from_bundle(bundle) is None:
        raise InputError(f"bundle {model} has no sign directions: run `s2m train signs` before `--signs`")
    baseline = Bundle.open(pix2pix) if pix2pix is not None else None
    if baseline is not None:
        baseline.check([PIX2PIX])
    work.mkdir(parents=True, exist_ok=True)
    rendered = archive_data is None
    if archive_data is None:
        archive_data = work / "archive"
        if not (archive_data / "annotations.json").exists():
            generate_dataset(archive_data, archive_count, size, seed, workers=1)
    heldout = work / "heldout"
    if not (heldout / "annotations.json").exists():
        generate_dataset(heldout, 2 * queries, size, seed + 1000, workers=1)

    settings = Settings(data_dir=work / f"db-{bundle.version}", database_url=f"sqlite:///{work / f'archive-{bundle.version}.sqlite3'}",
                        pseudonym_key=b"eval-retrieval")
    prepare_archive(settings, archive_data, bundle, device, batch_size=32)

    engine = SearchEngine.open(settings, EngineConfig(bundle=model, device=device, steps=steps))
    try:
        side = archive_side(engine)
        groups = _query_groups(archive_data, heldout, side, queries, canvases, seed, SEEN_STYLES, UNSEEN_STYLES)
        result = evaluate(engine, groups, seed, baseline.load(PIX2PIX, device) if baseline is not None else None,
                          UNSEEN_STYLES)
        if signs:
            result["signs"] = _sign_rows(engine, side, groups, archive_data, heldout, result["weights"], seed,
                                         SEEN_STYLES, UNSEEN_STYLES)
            if record_strengths:
                result["signs"]["recorded"] = _record_strengths(model, result["signs"], archive_data, heldout)
        if feedback:
            from evaluation.feedback_rows import feedback_rows

            result["feedback"] = feedback_rows(engine, side, groups, result["weights"], UNSEEN_STYLES, seed)
        if set_weights:
            archive = Archive.open(settings)
            try:
                fused_index.set_weights(archive, fused_index.ChannelWeights(**result["weights"]))
            finally:
                archive.close()
    finally:
        engine.close()
    result.update({"model": str(model), "bundle_version": bundle.version, "archive": str(archive_data),
                   "pix2pix": str(pix2pix) if pix2pix is not None else None,
                   "pix2pix_version": baseline.version if baseline is not None else None,
                   "archive_seed": seed if rendered else None,
                   "refinement_steps": engine.pipeline.default_steps if steps is None else steps,
                   "heldout_seed": seed + 1000,
                   "heldout": str(heldout), "canvases": list(canvases), "seen_styles": list(SEEN_STYLES),
                   "unseen_styles": list(UNSEEN_STYLES), "seed": seed,
                   "command": "s2m eval retrieval", "random_ndcg_note": "normalised nDCG = (nDCG - random) / (1 - random)"})
    return result


def _query_groups(archive_data: Path, heldout: Path, side, queries: int, canvases: tuple[int, ...], seed: int,
                  seen: tuple[str, ...], unseen: tuple[str, ...]) -> list:
    """Per style: val and test halves of exact-case and similar-case queries; unseen styles test only;
    the default style also at the smallest and largest canvas on the same drawings."""
    import numpy as np

    from phantoms.reader import case_column, case_ids, dataset_categories, read_mask
    from retrieval.evaluation import TEST, VAL, QueryGroup
    from retrieval.metrics import dice_relevance

    archive_categories, heldout_categories = dataset_categories(archive_data), dataset_categories(heldout)
    column_of = side.column_of
    archive_names = [ref.split("-", 1)[1] for ref in side.case_refs]  # PH<seed>-000123 -> 000123
    ref_of = dict(zip(archive_names, side.case_refs))
    rng = np.random.default_rng(seed)
    exact_names = [archive_names[i] for i in rng.choice(len(archive_names), min(queries, len(archive_names)), replace=False)]
    similar_names = case_ids(heldout)[: 2 * queries]
    relevance_all = dice_relevance(_class_masks(heldout, similar_names, heldout_categories),
                                   _class_masks(archive_data, archive_names, archive_categories))
    diagnosis_of = case_column(heldout, "diagnosis")
    diagnoses_all = np.array([diagnosis_of[name] for name in similar_names], dtype=object)

    def draw(dataset: Path, categories: dict, name: str, style: str, index: int, canvas: int, salt: int) -> np.ndarray:
        return draw_freehand(read_mask(dataset, name), categories[name], name, style, index, canvas, seed + salt)

    half = queries // 2
    exact_split = {VAL: exact_names[:half], TEST: exact_names[half:]}
    similar_split = {VAL: slice(0, queries), TEST: slice(queries, 2 * queries)}  # other held-out cases per split
    plan = [(style, split, None) for style in seen for split in (VAL, TEST)]
    plan += [(style, TEST, None) for style in unseen]
    plan += [(DEFAULT_STYLE, TEST, fixed) for fixed in (None, *SWEEP_CANVASES)]
    groups = []
    for style, split, fixed in plan:
        sides = (fixed,) if fixed is not None else canvases
        e_names, s_part = exact_split[split], similar_split[split]
        s_count = len(similar_names[s_part])
        groups.append(QueryGroup(
            style=style if fixed is None else f"{style}@{fixed}px", split=split,
            exact_sketches=[draw(archive_data, archive_categories, n, style, i, sides[i % len(sides)], 1)
                            for i, n in enumerate(e_names)],
            exact_columns=np.array([column_of[ref_of[n]] for n in e_names]),
            similar_sketches=[draw(heldout, heldout_categories, n, style, i, sides[i % len(sides)], 2)
                              for i, n in enumerate(similar_names[s_part])],
            relevance=relevance_all[s_part], diagnoses=diagnoses_all[s_part], canvases=sides,
            exact_levels=np.array([level_label(style, i) for i in range(len(e_names))], dtype=object),
            exact_canvases=np.array([sides[i % len(sides)] for i in range(len(e_names))]),
            similar_levels=np.array([level_label(style, i) for i in range(s_count)], dtype=object),
            similar_canvases=np.array([sides[i % len(sides)] for i in range(s_count)]),
            in_breakdowns=fixed is None,
            exact_cases=np.array(e_names, dtype=object), similar_cases=np.array(similar_names[s_part], dtype=object),
        ))
    return groups


def _sign_rows(engine, side, groups: list, archive_data: Path, heldout: Path, weights: dict, seed: int,
               seen: tuple[str, ...], unseen: tuple[str, ...]) -> dict:
    """The rows of sketch + each query's true signs (`retrieval.sign_evaluation`): strengths and the appearance
    weight chosen on the seen styles' validation halves, reported on the seen styles' test halves and the
    unseen styles' apart."""
    import csv

    import numpy as np

    from formats.signs import labels_from_row
    from indexing.fused_index import ChannelWeights
    from retrieval.evaluation import TEST, VAL
    from retrieval.sign_evaluation import SignQueries, SignQuerySet, evaluate_signs

    names = engine.models.signs.names

    def true_signs(dataset: Path) -> dict[str, dict[str, float]]:  # a case's signs from its metadata: 1 present, -1 absent
        with (dataset / "metadata.csv").open(newline="") as handle:
            return {Path(row["file"]).stem: {sign: 1.0 if present else -1.0 for sign, present in labels_from_row(row).items()
                                             if sign in names} for row in csv.DictReader(handle)}

    of_heldout, of_archive = true_signs(heldout), true_signs(archive_data)

    def query_set(chosen: list) -> SignQuerySet:
        return SignQuerySet(
            SignQueries([s for g in chosen for s in g.similar_sketches], [of_heldout[n] for g in chosen for n in g.similar_cases],
                        diagnoses=np.concatenate([g.diagnoses for g in chosen])),
            SignQueries([s for g in chosen for s in g.exact_sketches], [of_archive[n] for g in chosen for n in g.exact_cases],
                        columns=np.concatenate([g.exact_columns for g in chosen])))

    validation = query_set([g for g in groups if g.style in seen and g.split == VAL])
    tests = {"seen": query_set([g for g in groups if g.style in seen and g.split == TEST]),
             "unseen": query_set([g for g in groups if g.style in unseen and g.split == TEST])}
    # the archive's own signs by column, for the sign-match rate and the labelled reference only (never the ranking)
    archive_signs = [frozenset(sign for sign, state in of_archive[ref.split("-", 1)[1]].items() if state > 0) for ref in side.case_refs]
    return evaluate_signs(engine, side, ChannelWeights(**weights), validation, tests, archive_signs, seed)


def _record_strengths(model: Path, report: dict, archive_data: Path, heldout: Path) -> dict:
    """Write the strengths validation chose into the bundle's signs entry, with the fingerprints of the data
    they were chosen on; the entry written."""
    from generation.bundle import Bundle
    from generation.data import dataset_fingerprint
    from generation.signs import CHOSEN, SignDirections
    from retrieval.sign_evaluation import record_choice

    bundle = Bundle.open(model)
    directions = SignDirections.from_bundle(bundle)
    evidence = {"bundle_version": bundle.version, "archive_fingerprint": dataset_fingerprint(archive_data),
                "heldout_fingerprint": dataset_fingerprint(heldout),
                "directions_fingerprint": directions.record.get("data_fingerprint")}
    chosen = record_choice(directions, report, evidence)
    chosen.save(model)
    return chosen.record[CHOSEN]


def _class_masks(dataset: Path, names: list[str], categories: dict, side: int = 64):
    """bool [N, 4, side*side]: per image, the union of its instances of each category (masks resized nearest)."""
    import cv2
    import numpy as np

    from formats.categories import PHARYNGEAL_WALL, TONGUE, TONSIL, UVULA
    from phantoms.reader import read_mask

    out = []
    for name in names:
        mask = cv2.resize(read_mask(dataset, name), (side, side), interpolation=cv2.INTER_NEAREST)
        mapping = categories[name]
        out.append(np.stack([np.isin(mask, [i for i, c in mapping.items() if c == category]).ravel()
                             for category in (UVULA, PHARYNGEAL_WALL, TONSIL, TONGUE)]))
    return np.stack(out)
