"""Sheets that show what Sketch2MedI makes of free-hand sketches: sketch | x_0 | x_T | reference, one row a case.

The demo writes one of its archive; the generation evaluation's Fig. 3 grid is drawn in
`evaluation.generation_eval` from the rows it scores.
"""

from __future__ import annotations

from pathlib import Path


def freehand_sheet(dataset: Path, model: Path, output: Path, cases: int, seed: int) -> Path:
    """Simulate free-hand sketches of the first `cases` cases, run Sketch2MedI on them, write one sheet.

    The sketches come from the free-hand simulator (never seen in training), as a clinician's
    drawing would; the reference photo is shown beside what the networks made of the sketch.
    """
    import torch

    from formats.sketch import canonical_sketch
    from generation.data import image_to_tensor, load_rgb, sketch_to_tensor
    from generation.pipeline import Sketch2MedI
    from generation.training import save_image_grid
    from phantoms.freehand import freehand_sketch, sketch_seed
    from phantoms.reader import dataset_categories, image_path, read_mask

    pipeline = Sketch2MedI.from_bundle(model)
    categories = dataset_categories(dataset)
    sketches, references = [], []
    for name in sorted(categories)[:cases]:
        drawing = freehand_sketch(read_mask(dataset, name), categories[name], seed=sketch_seed(seed, name))
        sketches.append(sketch_to_tensor(canonical_sketch(drawing, pipeline.resolution)))  # [1, R, R]
        references.append(image_to_tensor(load_rgb(image_path(dataset, name), pipeline.resolution)))  # [3, R, R]
    sketch_batch = torch.stack(sketches)  # [N, 1, R, R]
    generated = pipeline.run(sketch_batch)
    rows = [torch.stack([s.expand(3, -1, -1), a, b, r])
            for s, a, b, r in zip(sketch_batch, generated.x_0, generated.image, references)]
    output.parent.mkdir(parents=True, exist_ok=True)
    save_image_grid(torch.cat(rows), output, nrow=4)
    return output
