import numpy as np
import pytest
import torch

import evaluate
from conftest import SAMPLE


class ConstantNet(torch.nn.Module):
    """Predicts the foreground wherever the first input channel is above zero."""

    def forward(self, x):
        foreground = (x[:, :1] > 0).float() * 10
        return torch.cat([-foreground, foreground], dim=1)


def make_loader(images, masks, batch_size):
    samples = [{"image": torch.from_numpy(i), "mask": torch.from_numpy(m)} for i, m in zip(images, masks)]
    return torch.utils.data.DataLoader(samples, batch_size=batch_size)


def synthetic_split(count=5, size=8):
    rng = np.random.default_rng(0)
    masks = (rng.random((count, size, size)) > 0.5).astype(np.uint8)
    predicted = masks.copy()
    predicted[:, 0, :] = 1 - predicted[:, 0, :]
    images = np.repeat(predicted[:, None] * 255, 3, axis=1).astype(np.uint8)
    return images, masks, predicted


@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_scores_every_image_whatever_the_batch_size(batch_size):
    images, masks, predicted = synthetic_split()
    result = evaluate.evaluate(ConstantNet(), make_loader(images, masks, batch_size), torch.device("cpu"))
    dice = [2 * (p & m).sum() / (p.sum() + m.sum()) for p, m in zip(predicted, masks)]
    assert result["num_images"] == 5
    assert result["dice"] == pytest.approx(np.mean(dice))
    assert result["dataset_dice"] == pytest.approx(2 * (predicted & masks).sum() / (predicted.sum() + masks.sum()))


def test_empty_prediction_of_an_empty_mask_scores_one():
    images = np.zeros((2, 3, 8, 8), np.uint8)
    masks = np.zeros((2, 8, 8), np.uint8)
    result = evaluate.evaluate(ConstantNet(), make_loader(images, masks, 2), torch.device("cpu"))
    assert result["dice"] == 1.0 and result["iou"] == 1.0


def test_tta_averages_the_flipped_prediction():
    net = torch.nn.Conv2d(3, 2, 3, padding=1)
    images = torch.randn(1, 3, 8, 8)
    plain = evaluate.predict(net, images).exp()
    flipped = evaluate.predict(net, images.flip(-1)).exp().flip(-1)
    torch.testing.assert_close(evaluate.predict(net, images, tta=True).exp(), (plain + flipped) / 2)


def test_evaluation_restores_training_mode():
    net = ConstantNet().train()
    images, masks, _ = synthetic_split(2)
    evaluate.evaluate(net, make_loader(images, masks, 2), torch.device("cpu"))
    assert net.training


def test_an_onnx_export_scores_like_its_checkpoint(trained, exported):
    _, model = trained
    scores = []
    for path in (model, exported[0]):
        args = evaluate.get_args_parser().parse_args([
            "--model", str(path), "--data_path", str(SAMPLE), "--num_workers", "0", "--device", "cpu", "--tta"])
        scores.append(evaluate.main(args))
    assert scores[0]["num_images"] == scores[1]["num_images"] > 0
    for key in ("loss", "dice", "iou", "dataset_dice", "dataset_iou"):
        assert scores[1][key] == pytest.approx(scores[0][key], abs=1e-4)
