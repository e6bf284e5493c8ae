"""The SOLOv2 network S and its inference (instances, synthesized sketches)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from formats.contours import contour_sketch_from_masks
from formats.sketch import BlankSketchError
from generation.data import box_resize
from generation.solov2.backbone import ResNetFPN
from generation.solov2.config import SynthesizerConfig
from generation.solov2.head import MaskFeatureBranch, SOLOv2Head
from generation.solov2.instances import Instance
from generation.solov2.nms import MatrixNMS


def points_nms(heat: torch.Tensor) -> torch.Tensor:
    """Keep a cell's score only where it is the max of its 2x2 neighbourhood: [C, S, S] -> [C, S, S]."""
    pooled = F.max_pool2d(heat.unsqueeze(0), kernel_size=2, stride=1, padding=1)[0, :, :-1, :-1]
    return heat * (pooled == heat)


def sketch_from_instances(instances: list[Instance], threshold: float) -> np.ndarray:
    """Contours of the masks scored >= threshold, drawn by the project's one contour function.

    Returns the Sketch format: uint8 [H, W], white background, black strokes; raises
    BlankSketchError when no mask qualifies (a blank sketch is an error, not a sketch).
    """
    kept = [instance.mask for instance in instances if instance.score >= threshold and instance.mask.any()]
    if not kept:
        raise BlankSketchError(f"no instance scored >= {threshold}: nothing to draw a sketch from")
    return contour_sketch_from_masks(np.stack(kept))  # masks [N, H, W]


class SOLOv2(nn.Module):
    """SOLOv2 (Wang et al. 2020): ResNet-FPN, grid category + dynamic kernel head, unified mask feature."""

    def __init__(self, config: SynthesizerConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = ResNetFPN(config)
        self.head = SOLOv2Head(config)
        self.mask_branch = MaskFeatureBranch(config)
        self.matrix_nms = MatrixNMS.from_config(config)

    def forward(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """images [B, 3, R, R] in [-1, 1] -> (categories [B, classes, S, S] per level,
        kernels [B, E, S, S] per level, mask features [B, E, R/mask_stride, R/mask_stride])."""
        pyramid = self.backbone(images)
        categories, kernels = self.head([pyramid[level] for level in self.config.head_levels])
        return categories, kernels, self.mask_branch(pyramid)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, score_threshold: float | None = None) -> list[list[Instance]]:
        """images [B, 3, H, W] in [-1, 1] (any size) -> per image, instances scored >= threshold.

        The threshold defaults to the paper's delta (config.score_threshold); masks come back at
        the input size [H, W].
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"predict expects images [B, 3, H, W], got {tuple(images.shape)}")
        threshold = self.config.score_threshold if score_threshold is None else score_threshold
        was_training = self.training
        self.eval()
        size = images.shape[-2:]
        resolution = self.config.resolution
        resized = box_resize(images, resolution)  # as the training loader resized the files
        categories, kernels, mask_features = self(resized)
        results = [
            self._instances_of_image([c[b] for c in categories], [k[b] for k in kernels], mask_features[b], size, threshold)
            for b in range(images.shape[0])
        ]
        self.train(was_training)
        return results

    def _instances_of_image(
        self,
        categories: list[torch.Tensor],
        kernels: list[torch.Tensor],
        mask_features: torch.Tensor,
        size: torch.Size,
        threshold: float,
    ) -> list[Instance]:
        """One image's head outputs (categories [classes, S, S], kernels [E, S, S] per level,
        mask features [E, h, w]) -> its instances, following SOLOv2's test procedure."""
        config = self.config
        scores = torch.cat([points_nms(c.sigmoid()).flatten(1).t() for c in categories])  # [cells, classes]
        cell_kernels = torch.cat([k.flatten(1).t() for k in kernels])  # [cells, E]
        min_area = torch.cat([
            torch.full((grid * grid,), float(config.level_stride(level)), device=scores.device)
            for grid, level in zip(config.grid_sizes, config.head_levels)
        ])
        cells, classes = torch.nonzero(scores > config.cell_score_threshold, as_tuple=True)
        if len(cells) == 0:
            return []
        soft = torch.einsum("ne,ehw->nhw", cell_kernels[cells], mask_features).sigmoid()  # [N, h, w]
        binary = soft > config.mask_threshold
        areas = binary.flatten(1).sum(1).float()
        keep = areas > min_area[cells]
        if not keep.any():
            return []
        soft, binary, areas, classes = soft[keep], binary[keep], areas[keep], classes[keep]
        maskness = (soft * binary).flatten(1).sum(1) / areas
        rescored = scores[cells[keep], classes] * maskness
        order = torch.argsort(rescored, descending=True)[: config.nms_pre]
        soft, binary, classes, rescored = soft[order], binary[order], classes[order], rescored[order]
        decayed = self.matrix_nms(binary, classes, rescored)
        survivors = torch.nonzero(decayed >= max(config.update_threshold, threshold), as_tuple=True)[0]
        survivors = survivors[torch.argsort(decayed[survivors], descending=True)][: config.max_instances]
        if len(survivors) == 0:
            return []
        full = F.interpolate(soft[survivors].unsqueeze(0), size=tuple(size), mode="bilinear", align_corners=False)[0]
        masks = (full > config.mask_threshold).cpu().numpy()  # [K, H, W]
        return [
            Instance(category=config.category_ids[int(c)], score=float(s), mask=m)
            for c, s, m in zip(classes[survivors].tolist(), decayed[survivors].tolist(), masks)
            if m.any()
        ]

    def synthesize_sketch(self, image: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """A throat photo uint8 [H, W, 3] -> its synthesized sketch uint8 [H, W] (contours of
        the masks scored >= threshold, the paper's delta by default)."""
        from generation.data import image_to_tensor

        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"synthesize_sketch expects a uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
        threshold = self.config.score_threshold if threshold is None else threshold
        device = next(self.parameters()).device
        instances = self.predict(image_to_tensor(image).unsqueeze(0).to(device), score_threshold=threshold)[0]
        return sketch_from_instances(instances, threshold)
