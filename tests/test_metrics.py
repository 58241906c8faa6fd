import numpy as np
import pytest
import torch

from metrics import (SegmentationMeter, border_band_accuracy, boundary_iou, boundary_width, dice, dice_score,
                     foreground_statistics, inner_boundary, iou_score)


def logits_for(pred):
    """Two-class logits whose argmax is the given 0/1 mask (N x H x W)."""
    pred = torch.as_tensor(pred)
    return torch.stack([1 - pred, pred], dim=1).float()


def test_dice_and_iou_per_image_with_the_empty_rule():
    pred = torch.tensor([[[1, 1], [0, 0]], [[0, 0], [0, 0]], [[1, 0], [0, 0]]])
    true = torch.tensor([[[1, 0], [0, 0]], [[0, 0], [0, 0]], [[0, 0], [0, 1]]])
    torch.testing.assert_close(dice_score(logits_for(pred), true), torch.tensor([2 / 3, 1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(iou_score(logits_for(pred), true), torch.tensor([1 / 2, 1.0, 0.0], dtype=torch.float64))


def test_dice_of_boolean_masks_is_the_same_definition():
    pred = torch.tensor([[[True, True], [False, False]]])
    true = torch.tensor([[[True, False], [False, False]]])
    assert dice(*foreground_statistics(pred, true)).tolist() == [2 / 3]


def test_meter_sums_exactly_over_uneven_batches():
    pred = torch.tensor([[[1, 1], [0, 0]], [[0, 0], [0, 0]], [[1, 1], [1, 1]]])
    true = torch.tensor([[[1, 0], [0, 0]], [[0, 0], [0, 0]], [[1, 1], [0, 0]]])
    meter = SegmentationMeter(torch.device("cpu"))
    meter.update(logits_for(pred[:2]), true[:2], per_image_loss=torch.tensor([0.5, 0.5]))
    meter.update(logits_for(pred[2:]), true[2:], per_image_loss=torch.tensor([2.0]))
    result = meter.compute()
    assert result["num_images"] == 3
    assert result["loss"] == pytest.approx(1.0)
    assert result["dice"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert result["iou"] == pytest.approx((1 / 2 + 1 + 1 / 2) / 3)
    assert result["dataset_dice"] == pytest.approx(2 * 3 / (6 + 3))
    assert result["dataset_iou"] == pytest.approx(3 / 6)


def test_meter_takes_one_argmax_per_batch_and_reads_the_device_once_per_split(monkeypatch):
    argmaxes, reads = [], []
    real_argmax, real_item, real_tolist = torch.Tensor.argmax, torch.Tensor.item, torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "argmax", lambda self, *a, **k: argmaxes.append(1) or real_argmax(self, *a, **k))
    monkeypatch.setattr(torch.Tensor, "item", lambda self: reads.append("item") or real_item(self))
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: reads.append("tolist") or real_tolist(self))
    meter = SegmentationMeter(torch.device("cpu"))
    masks = torch.randint(0, 2, (2, 4, 4))
    for _ in range(3):
        meter.update(logits_for(masks), masks, torch.ones(2))
    assert len(argmaxes) == 3 and reads == []
    meter.compute()
    assert reads.count("tolist") == 2  # the float sums and the integer counts, each read from the device once


def square(size, top, left, side):
    mask = np.zeros((size, size), bool)
    mask[top:top + side, left:left + side] = True
    return mask


def test_boundary_iou_of_known_shapes():
    ring = square(50, 10, 10, 20)
    assert boundary_width(50, 50) == 1 and boundary_width(300, 400) == 10
    assert boundary_iou(ring, ring) == 1.0
    assert boundary_iou(ring, square(50, 35, 35, 10)) == 0.0
    assert boundary_iou(np.zeros((8, 8), bool), np.zeros((8, 8), bool)) == 1.0
    # A 20-pixel square shifted right by one: the one-pixel rings (76 pixels each) share 19 pixels of the top row
    # and 19 of the bottom row; the shifted left and right columns lie inside the other square.
    shifted = square(50, 10, 11, 20)
    assert boundary_iou(ring, shifted) == pytest.approx(38 / (76 + 76 - 38))


def test_the_band_is_measured_inside_the_mask_with_the_image_edge_as_background():
    full = np.ones((6, 6), bool)
    band = inner_boundary(full, 1)
    assert band.sum() == 20 and not band[1:5, 1:5].any()


def test_border_band_accuracy_counts_the_band_as_pet():
    trimap = np.array([[1, 3, 3, 2]])
    assert border_band_accuracy(np.array([[True, True, False, False]]), trimap) == 0.5
    assert np.isnan(border_band_accuracy(np.ones((1, 4), bool), np.array([[1, 1, 2, 2]])))
