"""SOLOv2 losses: L = L_cate + lambda * L_mask (focal loss on cells, Dice loss on masks)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from generation.solov2.config import SynthesizerConfig
from generation.solov2.targets import LevelTargets


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Summed focal loss (Lin et al. 2017) of logits and {0, 1} targets of the same shape."""
    probability = logits.sigmoid()
    cross_entropy = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_true = probability * targets + (1 - probability) * (1 - targets)
    alpha_true = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_true * (1 - p_true) ** gamma * cross_entropy).sum()


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, epsilon: float) -> torch.Tensor:
    """1 - D per mask, D = 2 sum(pq) / (sum p^2 + sum q^2): logits, targets [N, h, w] -> [N]."""
    probability = logits.sigmoid().flatten(1)
    targets = targets.flatten(1)
    overlap = (probability * targets).sum(1)
    denominator = (probability**2).sum(1) + epsilon + (targets**2).sum(1) + epsilon
    return 1 - 2 * overlap / denominator


def solov2_loss(
    categories: list[torch.Tensor],
    kernels: list[torch.Tensor],
    mask_features: torch.Tensor,
    targets: list[list[LevelTargets]],
    config: SynthesizerConfig,
) -> dict[str, torch.Tensor]:
    """The training loss of a batch.

    categories[l] [B, classes, S, S], kernels[l] [B, E, S, S], mask_features [B, E, h, w];
    targets[b][l] from `assign_targets`. The focal loss runs over every cell of every level and
    is normalised by (#positive cells + 1); the Dice loss averages over positive cells.
    """
    category_logits, category_targets, dice_terms = [], [], []
    for level, (category, kernel) in enumerate(zip(categories, kernels)):
        for image in range(category.shape[0]):
            target = targets[image][level]
            logits = category[image].flatten(1).t()  # [S*S, classes]
            one_hot = F.one_hot(target.labels.flatten(), config.num_classes + 1)[:, 1:].to(logits.dtype)
            category_logits.append(logits)
            category_targets.append(one_hot)
            positive = target.positive
            if positive.any():
                cell_kernels = kernel[image].flatten(1).t()[positive]  # [P, E]
                mask_logits = torch.einsum("pe,ehw->phw", cell_kernels, mask_features[image])
                dice_terms.append(dice_loss(mask_logits, target.masks, config.dice_epsilon))
    logits = torch.cat(category_logits)
    one_hot = torch.cat(category_targets)
    positives = int(one_hot.sum().item())
    category_loss = sigmoid_focal_loss(logits, one_hot, config.focal_alpha, config.focal_gamma) / (positives + 1)
    if dice_terms:
        mask_loss = torch.cat(dice_terms).mean()
    else:
        # No instance in the batch: a zero that still touches every kernel, so DDP sees all parameters used.
        mask_loss = sum(k.sum() for k in kernels) * 0.0 + mask_features.sum() * 0.0
    return {
        "loss": category_loss + config.dice_weight * mask_loss,
        "loss_category": category_loss.detach(),
        "loss_mask": mask_loss.detach(),
    }
