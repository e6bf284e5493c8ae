"""SOLOv2 target assignment: which grid cells of which level predict which instance."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from generation.solov2.config import SynthesizerConfig


@dataclass(frozen=True)
class LevelTargets:
    """Targets of one image at one head level."""

    labels: torch.Tensor  # [S, S] long: 0 background, k = index k-1 of config.category_ids
    instance_of_cell: torch.Tensor  # [S * S] long: index of the instance a positive cell predicts, -1 elsewhere
    masks: torch.Tensor  # [P, h, w] float: mask target of each positive cell, in cell order

    @property
    def positive(self) -> torch.Tensor:
        """[S * S] bool: cells that carry an instance."""
        return self.instance_of_cell >= 0


def _cell(coord: float, resolution: int, grid: int) -> int:
    """Grid index of an input-pixel coordinate (floor(coord / R * S)), clipped into the grid."""
    return min(grid - 1, max(0, int(coord / resolution * grid)))


def assign_targets(labels: torch.Tensor, masks: torch.Tensor, config: SynthesizerConfig) -> list[LevelTargets]:
    """labels [N] (1..classes), masks [N, R, R] bool -> one LevelTargets per head level.

    An instance goes to every level whose scale range holds sqrt(box area) / R. Its centre is
    the mask's centre of mass; the cells covering the centre region (sigma * box) clipped to
    `centre_max_cells` around the centre cell predict it. Larger instances are assigned first,
    so where regions collide the smaller instance keeps the cell.
    """
    resolution = config.resolution
    if masks.shape[-2:] != (resolution, resolution):
        raise ValueError(f"masks must be {resolution}x{resolution}, got {tuple(masks.shape[-2:])}")
    device = masks.device
    masks = masks.bool()
    areas = masks.flatten(1).sum(1)
    present = areas > 0
    labels, masks, areas = labels[present], masks[present], areas[present]
    order = torch.argsort(areas, descending=True)
    labels, masks = labels[order], masks[order]
    feature_size = resolution // config.mask_stride
    mask_targets = (
        F.avg_pool2d(masks.float().unsqueeze(1), config.mask_stride).squeeze(1) >= config.mask_threshold
    ).float() if len(masks) else masks.new_zeros((0, feature_size, feature_size), dtype=torch.float)

    boxes, centres = [], []
    for mask in masks:
        ys, xs = torch.nonzero(mask, as_tuple=True)
        boxes.append((float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)))
        centres.append((float(xs.float().mean() + 0.5), float(ys.float().mean() + 0.5)))

    reach = config.centre_max_cells
    targets = []
    for grid, (low, high) in zip(config.grid_sizes, config.scale_ranges):
        cell_labels = torch.zeros((grid, grid), dtype=torch.long, device=device)
        instance_of_cell = torch.full((grid, grid), -1, dtype=torch.long, device=device)
        for index, ((width, height), (cx, cy)) in enumerate(zip(boxes, centres)):
            scale = (width * height) ** 0.5 / resolution
            if not low <= scale <= high:
                continue
            half_w, half_h = 0.5 * config.centre_sigma * width, 0.5 * config.centre_sigma * height
            centre_col, centre_row = _cell(cx, resolution, grid), _cell(cy, resolution, grid)
            top = max(_cell(cy - half_h, resolution, grid), centre_row - reach)
            bottom = min(_cell(cy + half_h, resolution, grid), centre_row + reach)
            left = max(_cell(cx - half_w, resolution, grid), centre_col - reach)
            right = min(_cell(cx + half_w, resolution, grid), centre_col + reach)
            cell_labels[top : bottom + 1, left : right + 1] = labels[index]
            instance_of_cell[top : bottom + 1, left : right + 1] = index
        instance_of_cell = instance_of_cell.flatten()
        targets.append(LevelTargets(cell_labels, instance_of_cell, mask_targets[instance_of_cell[instance_of_cell >= 0]]))
    return targets
