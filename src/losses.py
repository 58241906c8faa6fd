"""Training losses on N x 2 x H x W logits and N x H x W masks of 0 (background), 1 (pet) and IGNORE_INDEX."""
import torch.nn.functional as F

LOSSES = ("ce", "dice", "ce+dice")
BORDERS = ("pet", "ignore")
IGNORE_INDEX = -100  # F.cross_entropy's default
TRIMAP_BORDER = 3


def ignore_border(masks, trimaps):
    """--border ignore: the trimap's border pixels count in no loss term."""
    return masks.masked_fill(trimaps == TRIMAP_BORDER, IGNORE_INDEX)


def cross_entropy(logits, masks):
    """Mean cross-entropy over the pixels not ignored (0, not NaN, when every pixel is)."""
    total = F.cross_entropy(logits.float(), masks, reduction="sum")
    return total / (masks != IGNORE_INDEX).sum().clamp(min=1)


def soft_dice_loss(logits, masks, other_masks=None, lam=1.0, eps=1.0):
    """1 - soft foreground Dice over the batch, from softmax probabilities, against masks or, with other_masks,
    against the blend lam * masks + (1 - lam) * other_masks; a pixel ignored in either counts in neither."""
    prob = logits.float().softmax(dim=1)[:, 1]
    true = (masks == 1).float()
    keep = masks != IGNORE_INDEX
    if other_masks is not None:
        true = lam * true + (1 - lam) * (other_masks == 1).float()
        keep &= other_masks != IGNORE_INDEX
    prob, true = prob * keep, true * keep
    return 1 - (2 * (prob * true).sum() + eps) / (prob.sum() + true.sum() + eps)


def compute_loss(name, logits, masks, other_masks=None, lam=1.0):
    """The training loss: 'ce' (the report's), 'dice', or 'ce+dice' (the report's proposal); with other_masks
    (mixup), cross-entropy against both masks weighted lam and 1 - lam, and Dice against their blend."""
    terms = name.split("+")
    loss = 0.0
    if "ce" in terms:
        loss = cross_entropy(logits, masks)
        if other_masks is not None:
            loss = lam * loss + (1 - lam) * cross_entropy(logits, other_masks)
    if "dice" in terms:
        loss = loss + soft_dice_loss(logits, masks, other_masks, lam)
    return loss
