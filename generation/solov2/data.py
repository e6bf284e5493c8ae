"""COCO-annotated dataset folders as (image, instance labels, instance masks) for training S."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from generation.data import image_to_tensor
from generation.solov2.instances import Instance

ANNOTATIONS = "annotations.json"


@dataclass(frozen=True)
class Augmentation:
    """Random flip, scale (zoom about a random point) and colour jitter applied to a sample.

    Left and right tonsils are one category, so a horizontal flip needs no label swap; a
    dataset whose categories were sided would have to swap them here.
    """

    flip_probability: float
    scale_range: tuple[float, float]
    colour_jitter: float

    def __call__(self, image: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image [3, R, R] in [-1, 1], masks [N, R, R] bool -> augmented copies of both.

        Draws from torch's global RNG, which the training loop seeds, checkpoints and DataLoader
        workers split.
        """
        if torch.rand(()) < self.flip_probability:
            image, masks = image.flip(-1), masks.flip(-1)
        low, high = self.scale_range
        scale = float(low + (high - low) * torch.rand(()))
        image, masks = _rescale(image, masks, scale)
        image = _colour_jitter(image, self.colour_jitter)
        return image, masks


def _rescale(image: torch.Tensor, masks: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize by `scale`, then crop (zoom in) or pad with black (zoom out) back to R x R at a random offset."""
    resolution = image.shape[-1]
    side = max(1, round(resolution * scale))
    if side == resolution:
        return image, masks
    image = F.interpolate(image[None], size=(side, side), mode="bilinear", align_corners=False, antialias=True)[0]
    masks = F.interpolate(masks[None].float(), size=(side, side), mode="nearest")[0] > 0
    slack = abs(side - resolution)
    y, x = (int(v) for v in torch.randint(0, slack + 1, (2,)))
    if side > resolution:
        return image[:, y : y + resolution, x : x + resolution], masks[:, y : y + resolution, x : x + resolution]
    canvas = torch.full((3, resolution, resolution), -1.0)
    canvas[:, y : y + side, x : x + side] = image
    mask_canvas = torch.zeros((masks.shape[0], resolution, resolution), dtype=torch.bool)
    mask_canvas[:, y : y + side, x : x + side] = masks
    return canvas, mask_canvas


def _colour_jitter(image: torch.Tensor, strength: float) -> torch.Tensor:
    """Random brightness, contrast and saturation factors in [1 - strength, 1 + strength]."""
    brightness, contrast, saturation = (1 + strength * (2 * torch.rand(3) - 1)).tolist()
    rgb = (image + 1) / 2 * brightness  # [3, R, R] in [0, 1+]
    grey = rgb.mean(0, keepdim=True)
    rgb = (rgb - grey.mean()) * contrast + grey.mean()
    rgb = (rgb - rgb.mean(0, keepdim=True)) * saturation + rgb.mean(0, keepdim=True)
    return rgb.clamp(0, 1) * 2 - 1


class CocoInstanceDataset(torch.utils.data.Dataset):
    """Images of a COCO-annotated folder (`DIR/annotations.json`, images under `DIR/images/`).

    Each item is (image [3, R, R] in [-1, 1], labels [N] long in 1..classes, masks [N, R, R] bool),
    labels being positions in `category_ids` plus one. Masks are decoded with pycocotools
    (RLE or polygons) and resized with nearest neighbours.
    """

    def __init__(
        self,
        dataset: Path,
        resolution: int,
        category_ids: tuple[int, ...],
        image_ids: list[int] | None = None,
        augmentation: Augmentation | None = None,
    ) -> None:
        from pycocotools.coco import COCO

        self.root = Path(dataset)
        path = self.root / ANNOTATIONS
        if not path.exists():
            raise FileNotFoundError(f"no COCO annotations at {path}")
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress chatter
            self.coco = COCO(str(path))
        self.image_ids = sorted(self.coco.getImgIds()) if image_ids is None else list(image_ids)
        if not self.image_ids:
            raise ValueError(f"{path} lists no images")
        self.resolution = resolution
        self.label_of_category = {category: index + 1 for index, category in enumerate(category_ids)}
        self.augmentation = augmentation

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, image_id: int) -> Path:
        name = self.coco.imgs[image_id]["file_name"]
        direct = self.root / name
        return direct if direct.exists() else self.root / "images" / name

    def reference(self, index: int) -> tuple[np.ndarray, list[Instance]]:
        """The image (uint8 [R, R, 3]) and its annotated instances at model resolution (no augmentation)."""
        image, labels, masks = self._load(index)
        category_ids = {label: category for category, label in self.label_of_category.items()}
        instances = [Instance(category_ids[int(l)], 1.0, m.numpy()) for l, m in zip(labels, masks)]
        return image, instances

    def _load(self, index: int) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
        image_id = self.image_ids[index]
        with Image.open(self.image_path(image_id)) as pil:
            rgb = pil.convert("RGB")
            if rgb.size != (self.resolution, self.resolution):
                rgb = rgb.resize((self.resolution, self.resolution), Image.Resampling.BOX)
            image = np.array(rgb)  # writable copy: torch.from_numpy warns on read-only arrays
        annotations = self.coco.loadAnns(self.coco.getAnnIds(imgIds=[image_id], iscrowd=None))
        annotations = [a for a in annotations if a["category_id"] in self.label_of_category]
        labels = torch.tensor([self.label_of_category[a["category_id"]] for a in annotations], dtype=torch.long)
        if annotations:
            decoded = torch.from_numpy(np.stack([self.coco.annToMask(a) for a in annotations])).bool()  # [N, h, w]
            masks = F.interpolate(decoded[None].float(), size=(self.resolution, self.resolution), mode="nearest")[0] > 0
        else:
            masks = torch.zeros((0, self.resolution, self.resolution), dtype=torch.bool)
        return image, labels, masks

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image, labels, masks = self._load(index)
        tensor = image_to_tensor(image)  # [3, R, R]
        if self.augmentation is not None:
            tensor, masks = self.augmentation(tensor, masks)
        present = masks.flatten(1).any(1)
        return tensor, labels[present], masks[present]


def split_image_ids(dataset: Path, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded train/val split of a COCO folder's image ids (the paper: 1,600 / 400 of 2,000)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    path = Path(dataset) / ANNOTATIONS
    if not path.exists():
        raise FileNotFoundError(f"no COCO annotations at {path}")
    ids = sorted(image["id"] for image in json.loads(path.read_text())["images"])
    if len(ids) < 2:
        raise ValueError(f"{path} needs at least two images to split, has {len(ids)}")
    order = np.random.default_rng(seed).permutation(len(ids))
    val_count = min(len(ids) - 1, max(1, round(len(ids) * val_fraction)))
    val = sorted(ids[i] for i in order[:val_count])
    train = sorted(ids[i] for i in order[val_count:])
    return train, val


def collate_instances(batch: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Stack images [B, 3, R, R]; keep each image's (labels [N], masks [N, R, R]) as a list."""
    images = torch.stack([item[0] for item in batch])
    return images, [(item[1], item[2]) for item in batch]
