"""Instance masks (DESIGN.md): a uint8 instance-id map (0 = background) and its COCO annotations.

Each COCO annotation carries an RLE `segmentation`, its `category_id` and an extra `instance_id`
equal to the pixel value in the map. Phantoms, the archive export and S read and write these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from formats.categories import CATEGORY_NAMES

ANNOTATIONS_FILE = "annotations.json"
SUPERCATEGORY = "pharynx"
ANNOTATION_IDS_PER_IMAGE = 10  # annotation id = image id * 10 + instance id: stable across workers


@dataclass(frozen=True)
class Instance:
    """One labelled object: its pixel value in the instance mask and its COCO category."""

    instance_id: int
    category_id: int


def instance_ids(instance_mask: np.ndarray) -> np.ndarray:
    """The instance ids present in an instance-id map [H, W], background 0 excluded, ascending."""
    ids = np.unique(instance_mask)
    return ids[ids != 0]


def encode_rle(binary: np.ndarray) -> dict[str, Any]:
    """A binary mask [H, W] as COCO RLE with string counts (JSON-ready): {"size": [H, W], "counts": str}."""
    rle = mask_utils.encode(np.asfortranarray(binary.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE (string or bytes counts) -> bool mask [H, W]."""
    counts = rle["counts"].encode("ascii") if isinstance(rle["counts"], str) else rle["counts"]
    return mask_utils.decode({"size": list(rle["size"]), "counts": counts}).astype(bool)


def image_entry(image_id: int, file_name: str, size: int) -> dict[str, Any]:
    """The `images` record of one square image."""
    return {"id": image_id, "file_name": file_name, "width": size, "height": size}


def instance_annotations(instance_mask: np.ndarray, instances: tuple[Instance, ...], image_id: int) -> list[dict[str, Any]]:
    """One COCO annotation per instance of `instance_mask` (uint8 [H, W]), segmentation as RLE."""
    annotations = []
    for instance in instances:
        segmentation = encode_rle(instance_mask == instance.instance_id)
        coco_rle = {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}
        annotations.append(
            {
                "id": image_id * ANNOTATION_IDS_PER_IMAGE + instance.instance_id,
                "image_id": image_id,
                "category_id": instance.category_id,
                "instance_id": instance.instance_id,
                "segmentation": segmentation,
                "area": int(mask_utils.area(coco_rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(coco_rle)],
                "iscrowd": 0,
            }
        )
    return annotations


def coco_document(images: list[dict[str, Any]], annotations: list[dict[str, Any]], description: str) -> dict[str, Any]:
    """A complete COCO file with the four categories of the paper."""
    return {
        "info": {"description": description},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cid, "name": name, "supercategory": SUPERCATEGORY} for cid, name in CATEGORY_NAMES.items()],
    }
