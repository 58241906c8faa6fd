import torch

from losses import LOSSES, compute_loss, soft_dice_loss


def logits_for(pred, scale=20.0):
    pred = torch.as_tensor(pred)
    return torch.stack([1 - pred, pred], dim=1).float() * scale


def test_losses_are_small_for_confident_right_answers():
    masks = torch.tensor([[[1, 0], [0, 1]]])
    right, wrong = logits_for(masks), logits_for(1 - masks)
    for name in LOSSES:
        assert compute_loss(name, right, masks) < 0.1 < compute_loss(name, wrong, masks)


def test_ce_plus_dice_is_the_sum_of_both():
    torch.manual_seed(0)
    logits, masks = torch.randn(2, 2, 4, 4), torch.randint(0, 2, (2, 4, 4))
    torch.testing.assert_close(compute_loss("ce+dice", logits, masks),
                               compute_loss("ce", logits, masks) + soft_dice_loss(logits, masks))
