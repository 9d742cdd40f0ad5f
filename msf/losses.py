"""Training loss: cross-entropy + 0.5 · soft Dice over all classes."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 − mean over classes of (2Σ y·p + ε) / (Σ y + Σ p + ε), sums over batch and pixels."""
    n_cls = logits.shape[1]
    p = logits.float().softmax(dim=1)
    y = F.one_hot(target, n_cls).permute(0, 3, 1, 2).to(p.dtype)
    inter = (p * y).sum(dim=(0, 2, 3))
    denom = y.sum(dim=(0, 2, 3)) + p.sum(dim=(0, 2, 3))
    return 1.0 - ((2 * inter + eps) / (denom + eps)).mean()


def seg_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 0.5) -> torch.Tensor:
    """L = L_CE + dice_weight · L_Dice."""
    return F.cross_entropy(logits.float(), target) + dice_weight * dice_loss(logits, target)
