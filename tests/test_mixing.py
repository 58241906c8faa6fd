import numpy as np
import pytest
import torch

from mixing import batch_rng, cutmix, cutmix_box, mix_batch, mixup


def numbered_batch(n=4, size=16):
    """Image i is filled with i and mask i with i % 2, so every pixel says which image it came from."""
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, size, size).clone()
    masks = (torch.arange(n) % 2).view(n, 1, 1).expand(n, size, size).clone()
    return images, masks


class CentredDraws:
    """An rng whose lam is given and whose box centre is the image's centre."""

    def __init__(self, lam):
        self.lam = lam

    def random(self):
        return self.lam

    def integers(self, high):
        return high // 2


def test_cutmix_boxes_lie_in_the_image_and_have_the_drawn_area_when_not_clipped():
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, bottom, left, right = cutmix_box(64, 48, rng)
        assert 0 <= top <= bottom <= 64 and 0 <= left <= right <= 48
    # With the centre in the middle nothing is clipped: the box covers (1 - lam) of the image.
    for lam in (0.0, 0.19, 0.5, 0.9, 0.99):
        top, bottom, left, right = cutmix_box(100, 100, CentredDraws(lam))
        assert (bottom - top) * (right - left) == pytest.approx((1 - lam) * 100 * 100, abs=2 * 100)


def test_cutmix_pastes_the_same_box_of_image_and_mask_from_the_paired_image():
    images, masks = numbered_batch()
    order = [1, 2, 3, 0]
    mixed_images, mixed_masks = cutmix(images, masks, (2, 10, 4, 12), order)
    for i, source in enumerate(order):
        inside = np.zeros((16, 16), bool)
        inside[2:10, 4:12] = True
        assert (mixed_images[i, :, inside] == source).all() and (mixed_images[i, :, ~inside] == i).all()
        assert (mixed_masks[i][inside] == source % 2).all() and (mixed_masks[i][~inside] == i % 2).all()
    assert (images == numbered_batch()[0]).all(), "the input batch is left as it was"


def test_mixup_blends_images_and_keeps_both_targets():
    images, masks = numbered_batch()
    mixed = mixup(images, masks, 0.25, [3, 2, 1, 0])
    torch.testing.assert_close(mixed.images[0], torch.full((3, 16, 16), 0.25 * 0 + 0.75 * 3))
    assert mixed.lam == 0.25 and (mixed.masks == masks).all() and (mixed.other_masks == masks[[3, 2, 1, 0]]).all()


def test_probability_zero_changes_nothing_and_one_always_mixes():
    images, masks = numbered_batch()
    plain = mix_batch(images, masks, batch_rng(0, 1, 0))
    assert plain.images is images and plain.other_masks is None and plain.lam == 1.0
    for step in range(10):
        mixed = mix_batch(images, masks, batch_rng(0, 1, step), cutmix_p=0.0, mixup_p=1.0)
        assert mixed.other_masks is not None and 0 < mixed.lam < 1
        cut = mix_batch(images, masks, batch_rng(0, 1, step), cutmix_p=1.0)
        assert cut.other_masks is None
        # every pixel keeps the image it came from in its mask
        assert (cut.masks == cut.images[:, 0].long() % 2).all()


def test_the_draws_follow_from_seed_epoch_and_step_alone():
    images, masks = numbered_batch(8)
    first, again, other = (mix_batch(images, masks, batch_rng(*key), cutmix_p=0.7, mixup_p=0.7)
                           for key in ((3, 2, 5), (3, 2, 5), (3, 2, 6)))
    assert torch.equal(first.images, again.images) and first.lam == again.lam
    assert not torch.equal(first.images, other.images) or first.lam != other.lam
