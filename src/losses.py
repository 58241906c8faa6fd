"""Training losses on N x 2 x H x W logits and N x H x W 0/1 masks."""
import torch.nn.functional as F

LOSSES = ("ce", "dice", "ce+dice")


def soft_dice_loss(logits, masks, eps=1.0):
    """1 - soft foreground Dice over the batch, from softmax probabilities."""
    prob = logits.float().softmax(dim=1)[:, 1]
    true = (masks == 1).float()
    intersection = (prob * true).sum()
    return 1 - (2 * intersection + eps) / (prob.sum() + true.sum() + eps)


def compute_loss(name, logits, masks):
    """The training loss: 'ce' (the report's), 'dice', or 'ce+dice' (the report's proposal)."""
    if name == "ce":
        return F.cross_entropy(logits.float(), masks)
    if name == "dice":
        return soft_dice_loss(logits, masks)
    return F.cross_entropy(logits.float(), masks) + soft_dice_loss(logits, masks)
