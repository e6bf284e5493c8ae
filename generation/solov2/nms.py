"""Matrix NMS (SOLOv2, Sec. 4): soft, parallel suppression of duplicate masks."""

from __future__ import annotations

import torch

from generation.solov2.config import SynthesizerConfig


class MatrixNMS:
    """Decay each mask's score by its IoU with higher-scored masks of the same class.

    For masks sorted by descending score, the decay of mask j is min_i f(IoU_ij) / f(c_i), where
    c_i is mask i's own largest IoU with a higher-scored mask (a suppressed mask suppresses
    less). f is exp(-sigma * IoU^2) (gaussian) or 1 - IoU (linear).
    """

    def __init__(self, kernel: str, sigma: float) -> None:
        if kernel not in ("gaussian", "linear"):
            raise ValueError(f"Matrix NMS kernel must be 'gaussian' or 'linear', got {kernel!r}")
        self.kernel = kernel
        self.sigma = sigma

    @classmethod
    def from_config(cls, config: SynthesizerConfig) -> "MatrixNMS":
        return cls(config.nms_kernel, config.nms_sigma)

    def _falloff(self, iou: torch.Tensor) -> torch.Tensor:
        if self.kernel == "gaussian":
            return torch.exp(-self.sigma * iou**2)
        return 1 - iou

    def __call__(self, masks: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """masks [N, h, w] bool, labels [N], scores [N] sorted descending -> decayed scores [N]."""
        count = scores.shape[0]
        if count == 0:
            return scores
        flat = masks.flatten(1).float()  # [N, h*w]
        areas = flat.sum(1)
        intersection = flat @ flat.t()
        union = areas[:, None] + areas[None, :] - intersection
        iou = (intersection / union.clamp(min=1)).triu(diagonal=1)  # iou[i, j]: i scored above j
        same_class = (labels[:, None] == labels[None, :]).float().triu(diagonal=1)
        decay_iou = iou * same_class
        compensate = decay_iou.max(dim=0).values  # [N]: each mask's largest IoU with a higher-scored one
        floor = torch.finfo(flat.dtype).eps  # the linear kernel reaches 0 for identical masks
        ratio = self._falloff(decay_iou) / self._falloff(compensate).clamp(min=floor)[:, None]
        return scores * ratio.min(dim=0).values
