import numpy as np
import pytest
import torch

import evaluate
import oxford_pet
from conftest import SAMPLE
from data import build_loader
from errors import ProjectError


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


def scoring_args(model, *extra):
    return evaluate.get_args_parser().parse_args(["--model", str(model), "--data_path", str(SAMPLE), "--device", "cpu",
                                                  "--num_workers", "0", *extra])


def test_per_image_scores_give_the_split_figures_of_the_validation_metric(trained):
    _, model = trained
    summary, rows, net, checkpoint, dataset = evaluate.evaluate_checkpoint(scoring_args(model), torch.device("cpu"))
    loader = build_loader(dataset, 4, 0, torch.device("cpu"))
    reference = evaluate.evaluate(net, loader, torch.device("cpu"), checkpoint["model_record"]["normalization"],
                                  channels_last=True)
    for key in ("loss", "dice", "iou", "dataset_dice", "dataset_iou", "num_images"):
        assert summary[key] == pytest.approx(reference[key], abs=1e-6), key
    assert [row["name"] for row in rows] == dataset.names
    first = rows[0]
    assert (first["species"], first["breed"]) == ("cat", "Abyssinian")
    assert 0 <= first["boundary_iou"] <= 1 and 0 <= summary["band_accuracy"] <= 1


def test_full_resolution_scores_each_image_at_its_own_size(trained):
    _, model = trained
    summary, rows, *_ = evaluate.evaluate_checkpoint(scoring_args(model, "--full_resolution"), torch.device("cpu"))
    sizes = {(row["height"], row["width"]) for row in rows}
    assert len(sizes) > 1 and all(row["true_area"] > 0 or row["dice"] in (0.0, 1.0) for row in rows)
    heights, widths = zip(*sizes)
    assert max(heights) > 32 and summary["num_images"] == len(rows)
    assert sum(row["true_area"] for row in rows) > 32 * 32 * len(rows)


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


@pytest.mark.parametrize("argv", [["-b", "0"], ["--batch_size", "-1"], ["-b", "1.5"], ["--num_workers", "-1"]])
def test_bad_numbers_exit_with_code_2(argv):
    with pytest.raises(SystemExit) as exit_info:
        evaluate.get_args_parser().parse_args(["--model", "m.pth", *argv])
    assert exit_info.value.code == 2


def test_a_mistyped_data_path_is_an_error_not_a_download(trained, tmp_path, monkeypatch):
    def never_download(*args):
        raise AssertionError("downloaded")

    monkeypatch.setattr(oxford_pet, "download_dataset", never_download)
    _, model = trained
    typo = tmp_path / "oxford-iiit-pett"
    with pytest.raises(ProjectError, match="oxford-iiit-pett"):
        evaluate.evaluate_checkpoint(scoring_args(model, "--data_path", str(typo)), torch.device("cpu"))
    assert not typo.exists()
