import os

import numpy as np
import pytest
import torch

from utils import (ProjectError, RandomRotate90, SeededSampler, SegmentationMeter, SegmentationTransform,
                   append_csv_row, atomic_write, compute_loss, dice_score, iou_score, load_checkpoint,
                   normalize_images, run_cli, save_checkpoint, save_json)


def logits_for(pred):
    """Two-class logits whose argmax is the given 0/1 mask (N x H x W)."""
    pred = torch.as_tensor(pred)
    return torch.stack([1 - pred, pred], dim=1).float()


def test_dice_and_iou_per_image_with_the_empty_rule():
    pred = torch.tensor([[[1, 1], [0, 0]], [[0, 0], [0, 0]], [[1, 0], [0, 0]]])
    true = torch.tensor([[[1, 0], [0, 0]], [[0, 0], [0, 0]], [[0, 0], [0, 1]]])
    torch.testing.assert_close(dice_score(logits_for(pred), true), torch.tensor([2 / 3, 1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(iou_score(logits_for(pred), true), torch.tensor([1 / 2, 1.0, 0.0], dtype=torch.float64))


def test_meter_sums_exactly_over_uneven_batches():
    pred = torch.tensor([[[1, 1], [0, 0]], [[0, 0], [0, 0]], [[1, 1], [1, 1]]])
    true = torch.tensor([[[1, 0], [0, 0]], [[0, 0], [0, 0]], [[1, 1], [0, 0]]])
    meter = SegmentationMeter()
    meter.update(logits_for(pred[:2]), true[:2], loss_sum=1.0)
    meter.update(logits_for(pred[2:]), true[2:], loss_sum=2.0)
    result = meter.compute()
    assert result["num_images"] == 3
    assert result["loss"] == pytest.approx(1.0)
    assert result["dice"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    assert result["dataset_dice"] == pytest.approx(2 * 3 / (6 + 3))
    assert result["dataset_iou"] == pytest.approx(3 / 6)


def test_losses_are_small_for_confident_right_answers():
    masks = torch.tensor([[[1, 0], [0, 1]]])
    right, wrong = logits_for(masks) * 20, logits_for(1 - masks) * 20
    for name in ("ce", "dice", "ce+dice"):
        assert compute_loss(name, right, masks) < 0.1 < compute_loss(name, wrong, masks)


def test_normalize_images_uses_mean_and_std():
    images = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = normalize_images(images, [0.5, 0.5, 0.5], [0.25, 0.5, 1.0])
    assert out.dtype == torch.float32
    assert out[0, :, 0, 0].tolist() == [2.0, 1.0, 0.5]


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "history.json"
    save_json({"epoch": 1}, path)

    def crash(tmp):
        with open(tmp, "w") as f:
            f.write("{half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert path.read_text().startswith("{") and '"epoch": 1' in path.read_text()
    assert os.listdir(tmp_path) == ["history.json"]


def test_csv_rows_are_appended_with_one_header(tmp_path):
    path = tmp_path / "results.csv"
    append_csv_row(path, {"a": 1, "b": 2})
    append_csv_row(path, {"a": 3, "b": 4})
    assert path.read_text().splitlines() == ["a,b", "1,2", "3,4"]


def test_checkpoint_round_trip_and_damaged_files(tmp_path):
    path = tmp_path / "model.pth"
    save_checkpoint({"model": {"w": torch.ones(2)}, "args": {"lr": 1e-4}}, path)
    assert load_checkpoint(path)["args"] == {"lr": 1e-4}
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[:100])
    for bad in (truncated, tmp_path / "missing.pth"):
        with pytest.raises(ProjectError, match=bad.name):
            load_checkpoint(bad)


def test_checkpoint_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"args": ProjectError("an arbitrary object")}, path)
    with pytest.raises(ProjectError, match="pickled objects"):
        load_checkpoint(path)


def test_run_cli_turns_project_errors_into_exit_2(capsys):
    def main(args):
        raise ProjectError("the thing is wrong")

    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, None)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "error: the thing is wrong\n"


def test_augmentation_moves_image_mask_and_trimap_together():
    # The image's pixels encode the mask, so any misalignment after the geometric transforms shows up.
    rng = np.random.default_rng(0)
    mask = np.kron(rng.random((8, 8)) > 0.5, np.ones((8, 8))).astype(np.uint8)
    image = np.repeat(mask[..., None] * 255, 3, axis=2).astype(np.uint8)
    transform = SegmentationTransform(seed=0)
    changed = 0
    for _ in range(20):
        out_image, out_mask, out_trimap = transform(image, mask, mask * 3)
        assert out_image.shape == (64, 64, 3) and out_mask.shape == (64, 64)
        np.testing.assert_array_equal(out_trimap, out_mask * 3)
        bright = out_image.mean(axis=2) > 127
        assert (bright == (out_mask == 1)).mean() > 0.97
        changed += not np.array_equal(out_mask, mask)
    assert changed > 5


def test_rotate90_gives_numpys_rotation_for_every_factor():
    rng = np.random.default_rng(0)
    image, mask = rng.integers(0, 255, (5, 7, 3), dtype=np.uint8), rng.integers(0, 2, (5, 7), dtype=np.uint8)
    for factor in range(4):
        for array in (image, mask):
            np.testing.assert_array_equal(RandomRotate90(p=1).apply(array, factor), np.rot90(array, factor))


def test_augmentation_is_reproducible_from_its_seed():
    image = np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    first = SegmentationTransform(seed=3)
    second = SegmentationTransform(seed=4)
    second.set_random_seed(3)
    for _ in range(5):
        np.testing.assert_array_equal(first(image, mask, mask)[0], second(image, mask, mask)[0])


def test_occlusion_blanks_image_patches_but_not_the_mask():
    image = np.full((64, 64, 3), 200, np.uint8)
    mask = np.ones((64, 64), np.uint8)
    transform = SegmentationTransform(occlusion=True, seed=0)
    occluded = 0
    for _ in range(20):
        out_image, out_mask, _ = transform(image, mask, mask)
        hole = (out_image == 0).all(axis=2)
        occluded += (hole & (out_mask == 1)).sum() > 50
    assert occluded > 3


def test_seeded_sampler_follows_seed_and_epoch_alone():
    def epoch(seed, number, rank=0, world_size=1):
        sampler = SeededSampler(range(10), seed, rank, world_size)
        sampler.set_epoch(number)
        return list(sampler)

    first = epoch(0, 1)
    assert first == epoch(0, 1)
    assert sorted(index for index, _ in first) == list(range(10))
    assert len({seed for _, seed in first}) == 10
    assert first != epoch(0, 2) and first != epoch(1, 1)
    shards = epoch(0, 1, 0, 2) + epoch(0, 1, 1, 2)
    assert sorted(shards) == sorted(first)
