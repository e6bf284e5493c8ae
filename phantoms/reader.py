"""The one reader of phantom dataset folders (the layout `phantoms.dataset` writes).

```
DIR/images/<id>.png   RGB photograph          DIR/masks/<id>.png   uint8 instance-id map
DIR/annotations.json  COCO, `instance_id` = pixel value in the mask
DIR/metadata.csv      file, case_id, ..., diagnosis, ...
```
Cases are named by their id (the file stem, `000123`). The sketch tools, the demo, the
evaluations and the benchmarks all read a dataset through these functions.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIX = ".png"


@dataclass(frozen=True)
class DatasetCase:
    """One dataset entry as the sketch tools need it (no metadata, so no identifiers)."""

    image_id: str
    image: np.ndarray  # [H, W, 3] uint8
    instance_mask: np.ndarray  # [H, W] uint8 instance ids
    categories: dict[int, int]  # instance id -> category id


def read_metadata(dataset: Path) -> list[dict[str, str]]:
    """The rows of `dataset/metadata.csv`, in file order."""
    path = Path(dataset) / "metadata.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no metadata.csv in {dataset}: is it a phantom dataset folder?")
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def case_column(dataset: Path, column: str) -> dict[str, str]:
    """Case id -> its value of one metadata.csv column."""
    return {Path(row["file"]).stem: row[column] for row in read_metadata(dataset)}


def case_ids(dataset: Path) -> list[str]:
    """Ids of a dataset folder's images (`images/<id>.png`), sorted."""
    images = Path(dataset) / "images"
    if not images.is_dir():
        raise FileNotFoundError(f"{dataset} is not a phantom dataset folder: no images/ inside")
    ids = sorted(path.stem for path in images.iterdir() if path.suffix == IMAGE_SUFFIX)
    if not ids:
        raise FileNotFoundError(f"no {IMAGE_SUFFIX} images in {images}")
    return ids


def dataset_categories(dataset: Path) -> dict[str, dict[int, int]]:
    """Case id -> {instance id: category id}, from `dataset/annotations.json`."""
    path = Path(dataset) / "annotations.json"
    if not path.is_file():
        raise FileNotFoundError(f"no annotations.json in {dataset}: is it a phantom dataset folder?")
    document = json.loads(path.read_text())
    ids = {image["id"]: Path(image["file_name"]).stem for image in document["images"]}
    result: dict[str, dict[int, int]] = {case: {} for case in ids.values()}
    for annotation in document["annotations"]:
        result[ids[annotation["image_id"]]][int(annotation["instance_id"])] = int(annotation["category_id"])
    return result


def image_path(dataset: Path, image_id: str) -> Path:
    """Where the photograph of case `image_id` is."""
    return Path(dataset) / "images" / f"{image_id}{IMAGE_SUFFIX}"


def read_mask(dataset: Path, image_id: str) -> np.ndarray:
    """The instance-id mask uint8 [H, W] of case `image_id`."""
    path = Path(dataset) / "masks" / f"{image_id}{IMAGE_SUFFIX}"
    if not path.exists():
        raise FileNotFoundError(f"image {image_id} has no instance mask at {path}")
    with Image.open(path) as mask:
        return np.asarray(mask)


def load_case(dataset: Path, image_id: str, categories: dict[str, dict[int, int]] | None = None) -> DatasetCase:
    """Read `images/<id>.png` and `masks/<id>.png` of a dataset folder (and its categories, if given)."""
    instance_mask = read_mask(dataset, image_id)
    if categories is not None and image_id not in categories:
        raise KeyError(f"image {image_id} has no annotations in {Path(dataset) / 'annotations.json'}")
    with Image.open(image_path(dataset, image_id)) as image:
        rgb = np.asarray(image.convert("RGB"))
    return DatasetCase(image_id, rgb, instance_mask, categories[image_id] if categories is not None else {})
