import torch
import torch.nn.functional as F

from msf.losses import dice_loss, seg_loss


def test_dice_is_zero_for_confident_correct_prediction():
    target = torch.randint(0, 19, (2, 16, 16), generator=torch.Generator().manual_seed(0))
    logits = F.one_hot(target, 19).permute(0, 3, 1, 2).float() * 50
    assert dice_loss(logits, target).item() < 1e-3


def test_seg_loss_matches_formula():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 19, 8, 8, generator=g)
    target = torch.randint(0, 19, (2, 8, 8), generator=g)
    p = logits.softmax(1)
    y = F.one_hot(target, 19).permute(0, 3, 1, 2).float()
    dice = 1 - ((2 * (p * y).sum((0, 2, 3)) + 1) / (y.sum((0, 2, 3)) + p.sum((0, 2, 3)) + 1)).mean()
    expected = F.cross_entropy(logits, target) + 0.5 * dice
    torch.testing.assert_close(seg_loss(logits, target), expected)
