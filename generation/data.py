"""Reading dataset folders and sketches into tensors (DESIGN.md, shared formats).

Images become float tensors in [-1, 1] ([3, H, W]); sketches become [1, H, W] in [-1, 1] with
white background = 1 and strokes = -1. Resizing always uses area filtering.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from formats.images import IMAGE_SUFFIXES, resize_area


@functools.lru_cache(maxsize=32)
def _box_weights(in_size: int, out_size: int) -> torch.Tensor:
    """[out, in] resampling matrix of PIL's BOX filter: each output pixel averages the input
    pixels whose centres fall in its footprint (nearest pixel when enlarging).

    Cached: a C trained at another side than G's output resizes on every L_cos step. Read-only."""
    scale = in_size / out_size
    stretch = max(scale, 1.0)
    centres = (torch.arange(out_size, dtype=torch.float64) + 0.5) * scale
    pixels = torch.arange(in_size, dtype=torch.float64)[None, :]
    offsets = (pixels + 0.5 - centres[:, None]) / stretch
    # Pillow's window (first/last pixel rounded from the footprint) and its half-open box (-0.5, 0.5]
    first = (centres - 0.5 * stretch + 0.5).floor()[:, None]
    last = (centres + 0.5 * stretch + 0.5).floor()[:, None]
    weights = ((offsets > -0.5) & (offsets <= 0.5) & (pixels >= first) & (pixels < last)).double()
    return weights / weights.sum(dim=1, keepdim=True)


def box_resize(images: torch.Tensor, side: int) -> torch.Tensor:
    """Images [N, C, H, W] -> [N, C, side, side] with the same BOX filter as `load_rgb`.

    Networks resize what they are given at serve time with this, so a generated or uploaded
    image reaches them exactly as the training loader's files did. Differentiable (two matmuls).
    """
    if images.shape[-2:] == (side, side):
        return images
    rows = _box_weights(images.shape[-2], side).to(images.device, images.dtype)  # [side, H]
    columns = _box_weights(images.shape[-1], side).to(images.device, images.dtype)  # [side, W]
    return torch.einsum("oh,nchw,pw->ncop", rows, images, columns)


def load_rgb(path: Path, resolution: int) -> np.ndarray:
    """An RGB image file as uint8 [H, W, 3] at `resolution` (area filter)."""
    with Image.open(path) as image:
        return np.asarray(resize_area(image.convert("RGB"), resolution))


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float [3, H, W] in [-1, 1]."""
    return torch.tensor(image, dtype=torch.uint8).permute(2, 0, 1).float().div(127.5).sub(1.0)


def tensor_to_image(tensor: torch.Tensor) -> np.ndarray:
    """float [3, H, W] in [-1, 1] -> uint8 [H, W, 3]."""
    array = tensor.detach().float().cpu().clamp(-1, 1).add(1).mul(127.5).round().byte()
    return array.permute(1, 2, 0).numpy()


def sketches_to_tensor(sketches: np.ndarray) -> torch.Tensor:
    """uint8 sketches [B, H, W] -> float [B, 1, H, W] in [-1, 1] (background 1, strokes -1): what E and H read.

    The one sketch-to-tensor conversion: the pipeline, the query engine and the archive job use it."""
    pixels = np.array(sketches, dtype=np.uint8)  # a copy: the input may be a read-only or strided view
    return torch.from_numpy(pixels).float().div(127.5).sub(1.0).unsqueeze(1)


def sketch_to_tensor(sketch: np.ndarray) -> torch.Tensor:
    """uint8 [H, W] sketch -> float [1, H, W] in [-1, 1] (a batch of one of `sketches_to_tensor`)."""
    return sketches_to_tensor(sketch[None])[0]


def list_images(folder: Path) -> list[Path]:
    """Image files of a folder, sorted by name so that order is stable across machines."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no image folder at {folder}")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def image_dir(dataset: Path) -> Path:
    """`DIR/images` for a phantom dataset folder, else `DIR` itself (a plain image folder)."""
    dataset = Path(dataset)
    return dataset / "images" if (dataset / "images").is_dir() else dataset


def native_side(dataset: Path) -> int:
    """The side of a dataset's images as stored (its first image; phantom datasets are uniform).

    Probes read images at this side: the raw-pixel baseline then sees all there is, and C resizes
    them to its own side with `box_resize`, as when it embeds the archive for retrieval.
    """
    paths = list_images(image_dir(dataset))
    if not paths:
        raise FileNotFoundError(f"no images found in {dataset}")
    with Image.open(paths[0]) as first:
        return max(first.size)


def dataset_fingerprint(dataset: Path) -> str:
    """A short hash of the file names and sizes of a dataset's images, recorded in bundles."""
    digest = hashlib.sha256()
    for path in list_images(image_dir(dataset)):
        digest.update(f"{path.name}:{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


class ImageFolderDataset(torch.utils.data.Dataset):
    """Images of a dataset folder as [3, R, R] tensors in [-1, 1], optionally x-flipped."""

    def __init__(self, dataset: Path, resolution: int, mirror: bool = False, limit: int | None = None) -> None:
        self.paths = list_images(image_dir(dataset))[:limit]
        if not self.paths:
            raise FileNotFoundError(f"no images found in {dataset}")
        self.resolution = resolution
        self.mirror = mirror

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = image_to_tensor(load_rgb(self.paths[index], self.resolution))  # [3, R, R]
        if self.mirror and torch.rand(()) < 0.5:
            image = image.flip(-1)
        return image


class SketchImagePairs(torch.utils.data.Dataset):
    """(sketch [1, R, R], image [3, R, R]) pairs; the sketch of `images/x.png` is `sketch_dir/x.png`.

    `sketch_transform` (uint8 [R, R] -> uint8 [R, R]) is applied to each sketch after resizing,
    e.g. the free-hand augmentation of `generation.sketch_augment`.
    """

    def __init__(self, dataset: Path, sketch_dir: Path, resolution: int, limit: int | None = None,
                 sketch_transform: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.image_paths = list_images(image_dir(dataset))[:limit]
        self.sketch_dir = Path(sketch_dir)
        missing = [p.name for p in self.image_paths if not (self.sketch_dir / f"{p.stem}.png").exists()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} images have no sketch in {sketch_dir} (first: {missing[0]})")
        self.resolution = resolution
        self.sketch_transform = sketch_transform

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        path = self.image_paths[index]
        with Image.open(self.sketch_dir / f"{path.stem}.png") as sketch:
            sketch_arr = np.asarray(resize_area(sketch.convert("L"), self.resolution))
        if self.sketch_transform is not None:
            sketch_arr = self.sketch_transform(sketch_arr)
        return sketch_to_tensor(sketch_arr), image_to_tensor(load_rgb(path, self.resolution))
