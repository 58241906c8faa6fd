"""Foreground Dice and IoU, per image and over a split, from one argmax per batch.

Per image, on the foreground (pet) class after argmax over the two classes: Dice = 2|P∩T| / (|P| + |T|) and
IoU = |P∩T| / |P∪T|; an image whose prediction and ground truth are both empty scores 1 on both. Dataset-level
("micro") Dice and IoU come from the intersections and areas summed over the whole split. Boundary quality:
accuracy inside the trimap's border band, and Boundary IoU (Cheng et al., CVPR 2021) with the paper's band of 2 %
of the image diagonal.
"""
import math

import cv2
import numpy as np
import torch

from device import all_reduce_sum


def exact_dtype(device):
    """float64 for exact sums, except on MPS, which has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def predicted_foreground(logits):
    return logits.argmax(dim=1) == 1


def foreground_statistics(pred, true):
    """Per image: (intersection, predicted area, true area) of boolean N x H x W masks, as int64 counts."""
    dims = tuple(range(1, pred.dim()))
    return (pred & true).sum(dim=dims), pred.sum(dim=dims), true.sum(dim=dims)


def ratio_or_one(numerator, denominator):
    """numerator / denominator, and 1 where the denominator is 0 (prediction and truth both empty)."""
    dtype = exact_dtype(numerator.device)
    numerator, denominator = numerator.to(dtype), denominator.to(dtype)
    return torch.where(denominator > 0, numerator / denominator.clamp(min=1), torch.ones_like(denominator))


def dice(intersection, pred_area, true_area):
    return ratio_or_one(2 * intersection, pred_area + true_area)


def iou(intersection, pred_area, true_area):
    return ratio_or_one(intersection, pred_area + true_area - intersection)


def dataset_scores(intersection, pred_area, true_area):
    """(Dice, IoU) at the dataset level ("micro"), from the counts summed over a split."""
    counts = torch.tensor([intersection, pred_area, true_area], dtype=torch.float64)
    return dice(*counts).item(), iou(*counts).item()


def dice_score(logits, masks):
    """Per-image foreground Dice of N x 2 x H x W logits against N x H x W 0/1 masks."""
    return dice(*foreground_statistics(predicted_foreground(logits), masks == 1))


def iou_score(logits, masks):
    """Per-image foreground IoU of N x 2 x H x W logits against N x H x W 0/1 masks."""
    return iou(*foreground_statistics(predicted_foreground(logits), masks == 1))


class SegmentationMeter:
    """Exact sums over a split, kept on the device and read once: the loss per image, per-image Dice and IoU, and
    the dataset-level intersection and areas. Under torchrun each process sums its own shard; compute() adds the
    shards together."""

    def __init__(self, device):
        self.scores = torch.zeros(3, dtype=exact_dtype(device), device=device)  # loss, Dice, IoU
        self.pixels = torch.zeros(3, dtype=torch.int64, device=device)  # intersection, predicted, true area
        self.images = 0

    def update(self, logits, masks, per_image_loss):
        statistics = foreground_statistics(predicted_foreground(logits), masks == 1)
        self.scores += torch.stack([per_image_loss.sum().to(self.scores.dtype), dice(*statistics).sum(),
                                    iou(*statistics).sum()])
        self.pixels += torch.stack([count.sum() for count in statistics])
        self.images += len(masks)

    def compute(self):
        loss, dice_sum, iou_sum = all_reduce_sum(self.scores.clone()).tolist()
        counts = torch.cat([self.pixels, self.pixels.new_tensor([self.images])])
        *pixels, images = all_reduce_sum(counts).tolist()
        per_image = max(images, 1)
        dataset_dice, dataset_iou = dataset_scores(*pixels)
        return {"loss": loss / per_image, "dice": dice_sum / per_image, "iou": iou_sum / per_image,
                "dataset_dice": dataset_dice, "dataset_iou": dataset_iou, "num_images": images}


# ---------------------------------------------------------------- boundary quality, per image (numpy)

def border_band_accuracy(pred, trimap):
    """Share of the trimap's border band (value 3) predicted as pet, the class the report's mapping gives it;
    NaN for an image without a band. pred: boolean H x W, trimap: H x W of 1, 2, 3."""
    band = trimap == 3
    return float(pred[band].mean()) if band.any() else math.nan


def boundary_width(height, width, ratio=0.02):
    """Boundary IoU's band width: ratio of the image diagonal, at least one pixel (Cheng et al., CVPR 2021)."""
    return max(1, round(ratio * math.hypot(height, width)))


def inner_boundary(mask, width):
    """The pixels of a boolean mask within `width` pixels of its contour: the mask minus its erosion, with the
    image's edge counting as background (the paper's mask_to_boundary)."""
    padded = np.pad(mask.astype(np.uint8), 1)
    eroded = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=width)[1:-1, 1:-1]
    return mask & ~eroded.astype(bool)


def boundary_iou(pred, true, ratio=0.02):
    """Boundary IoU of two boolean H x W masks: IoU of their inner boundaries; 1 when both are empty."""
    width = boundary_width(*true.shape, ratio)
    pred_band, true_band = inner_boundary(pred, width), inner_boundary(true, width)
    union = (pred_band | true_band).sum()
    return 1.0 if union == 0 else float((pred_band & true_band).sum() / union)
