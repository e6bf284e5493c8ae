"""COCO instance annotations (RLE) of phantom instance masks, with the extra `instance_id`."""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from phantoms.categories import CATEGORY_NAMES
from phantoms.render import Instance

SUPERCATEGORY = "pharynx"
ANNOTATION_IDS_PER_IMAGE = 10  # annotation id = image id * 10 + instance id: stable across workers


def image_entry(image_id: int, file_name: str, size: int) -> dict[str, Any]:
    """The `images` record of one square image."""
    return {"id": image_id, "file_name": file_name, "width": size, "height": size}


def instance_annotations(instance_mask: np.ndarray, instances: tuple[Instance, ...], image_id: int) -> list[dict[str, Any]]:
    """One COCO annotation per instance of `instance_mask` (uint8 [H, W]), segmentation as RLE."""
    annotations = []
    for instance in instances:
        binary = np.asfortranarray((instance_mask == instance.instance_id).astype(np.uint8))
        rle = mask_utils.encode(binary)
        annotations.append(
            {
                "id": image_id * ANNOTATION_IDS_PER_IMAGE + instance.instance_id,
                "image_id": image_id,
                "category_id": instance.category_id,
                "instance_id": instance.instance_id,
                "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
                "area": int(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
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
