"""Batch mixing for training, on the device and the normalised batch: CutMix (Yun et al., ICCV 2019) pastes a box
of another image of the batch, and its mask; mixup (Zhang et al., ICLR 2018) blends two images and trains on the
same blend of their targets. Each batch draws from (seed, epoch, step, rank) alone, so a resumed run repeats an
uninterrupted one and the number of loader workers changes nothing."""
import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class MixedBatch:
    """Images and their targets: masks, or with mixup lam * masks + (1 - lam) * other_masks."""
    images: torch.Tensor
    masks: torch.Tensor
    other_masks: torch.Tensor = None
    lam: float = 1.0


def batch_rng(seed, epoch, step, rank=0):
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, step, rank]))


def cutmix_box(height, width, rng):
    """(top, bottom, left, right) of a box with area (1 - lam) of the image, lam ~ U(0, 1), centred at a uniform
    pixel and clipped to the image (Yun et al.'s sampling)."""
    cut = math.sqrt(1.0 - rng.random())
    box_h, box_w = int(height * cut), int(width * cut)
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    return (max(cy - box_h // 2, 0), min(cy + box_h // 2, height),
            max(cx - box_w // 2, 0), min(cx + box_w // 2, width))


def cutmix(images, masks, box, order):
    """Copies of images and masks whose box holds that of the batch's images in order."""
    top, bottom, left, right = box
    images, masks = images.clone(), masks.clone()
    order = torch.as_tensor(order, device=images.device)
    images[:, :, top:bottom, left:right] = images[order, :, top:bottom, left:right]
    masks[:, top:bottom, left:right] = masks[order, top:bottom, left:right]
    return images, masks


def mixup(images, masks, lam, order):
    order = torch.as_tensor(order, device=images.device)
    return MixedBatch(lam * images + (1 - lam) * images[order], masks, masks[order], lam)


def mix_batch(images, masks, rng, cutmix_p=0.0, mixup_p=0.0, mixup_alpha=0.4):
    """CutMix with probability cutmix_p, then mixup with probability mixup_p, each pairing every image with one of
    a random permutation of the batch; a MixedBatch."""
    if rng.random() < cutmix_p:
        images, masks = cutmix(images, masks, cutmix_box(*images.shape[-2:], rng), rng.permutation(len(images)))
    if rng.random() < mixup_p:
        return mixup(images, masks, float(rng.beta(mixup_alpha, mixup_alpha)), rng.permutation(len(images)))
    return MixedBatch(images, masks)
