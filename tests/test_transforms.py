import numpy as np

from transforms import RandomRotate90, SegmentationTransform


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
