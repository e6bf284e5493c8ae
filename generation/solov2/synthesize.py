"""Applying S to a whole image folder: one synthesized sketch PNG per image."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from formats.sketch import BlankSketchError
from generation.data import ImageFolderDataset
from generation.solov2.model import SOLOv2, sketch_from_instances


def synthesize_folder(
    model: SOLOv2,
    dataset: Path,
    out: Path,
    batch_size: int,
    threshold: float | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[int, list[str]]:
    """Write `out/<stem>.png` (Sketch format, model resolution) for every image of `dataset`.

    Images in which S finds no instance scored >= threshold get no sketch (a blank sketch is an
    error, not a sketch); their names are returned. `on_batch(n)` reports progress.
    Returns (sketches written, names skipped).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    images = ImageFolderDataset(dataset, model.config.resolution)
    threshold = model.config.score_threshold if threshold is None else threshold
    device = next(model.parameters()).device
    loader = torch.utils.data.DataLoader(images, batch_size=batch_size, shuffle=False)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written, skipped = 0, []
    paths = iter(images.paths)
    for batch in loader:  # [B, 3, R, R]
        for instances in model.predict(batch.to(device), score_threshold=threshold):
            path = next(paths)
            try:
                sketch = sketch_from_instances(instances, threshold)  # uint8 [R, R]
            except BlankSketchError:
                skipped.append(path.name)
                continue
            Image.fromarray(np.ascontiguousarray(sketch)).save(out / f"{path.stem}.png")
            written += 1
        if on_batch is not None:
            on_batch(batch.shape[0])
    return written, skipped
