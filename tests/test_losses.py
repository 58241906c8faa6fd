import torch
import torch.nn.functional as F

from losses import IGNORE_INDEX, LOSSES, compute_loss, ignore_border, soft_dice_loss


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


def test_ignored_pixels_count_in_no_loss_term():
    torch.manual_seed(0)
    logits, masks = torch.randn(2, 2, 6, 6, requires_grad=True), torch.randint(0, 2, (2, 6, 6))
    trimaps = torch.full((2, 6, 6), 2)
    trimaps[:, 2:4] = 3
    ignored = ignore_border(masks, trimaps)
    assert (ignored[:, 2:4] == IGNORE_INDEX).all() and (ignored[:, :2] == masks[:, :2]).all()
    for name in LOSSES:
        logits.grad = None
        compute_loss(name, logits, ignored).backward()
        assert (logits.grad[:, :, 2:4] == 0).all() and (logits.grad[:, :, :2] != 0).any()
    kept = torch.ones(6, dtype=torch.bool)
    kept[2:4] = False
    torch.testing.assert_close(compute_loss("ce", logits, ignored),
                               F.cross_entropy(logits[:, :, kept], masks[:, kept]))


def test_mixup_loss_is_the_blend_of_both_targets():
    torch.manual_seed(1)
    logits, a, b = torch.randn(2, 2, 4, 4), torch.randint(0, 2, (2, 4, 4)), torch.randint(0, 2, (2, 4, 4))
    torch.testing.assert_close(compute_loss("ce", logits, a, b, 0.3),
                               0.3 * compute_loss("ce", logits, a) + 0.7 * compute_loss("ce", logits, b))
    prob = logits.softmax(1)[:, 1]
    blend = 0.3 * a + 0.7 * b
    expected = 1 - (2 * (prob * blend).sum() + 1) / (prob.sum() + blend.sum() + 1)
    torch.testing.assert_close(compute_loss("dice", logits, a, b, 0.3), expected)
    torch.testing.assert_close(compute_loss("ce+dice", logits, a, a, 0.3), compute_loss("ce+dice", logits, a))
