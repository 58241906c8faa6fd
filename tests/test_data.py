import torch

from data import SeededSampler, normalize_images, prepare_batch, prepare_images


def test_normalize_images_uses_mean_and_std():
    images = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = normalize_images(images, [0.5, 0.5, 0.5], [0.25, 0.5, 1.0])
    assert out.dtype == torch.float32
    assert out[0, :, 0, 0].tolist() == [2.0, 1.0, 0.5]


def test_a_batch_is_normalised_images_and_int64_masks_in_the_asked_layout():
    normalization = {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]}
    batch = {"image": torch.full((2, 3, 4, 4), 255, dtype=torch.uint8), "mask": torch.ones(2, 4, 4, dtype=torch.uint8)}
    images, masks = prepare_batch(batch, torch.device("cpu"), normalization, channels_last=True)
    assert images.is_contiguous(memory_format=torch.channels_last) and (images == 1).all()
    assert masks.dtype == torch.int64
    torch.testing.assert_close(prepare_images(batch["image"], torch.device("cpu"), normalization), images)


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


def test_a_last_training_batch_of_one_image_is_left_out():
    def batches(size, batch_size, world_size=1):
        sampler = SeededSampler(range(size), 0, 0, world_size, batch_size)
        return len(sampler), len(list(sampler))

    assert batches(17, 8) == (16, 16)
    assert batches(18, 8) == (18, 18)
    assert batches(17, 1) == (17, 17)
    assert batches(34, 8, world_size=2) == (16, 16)  # 17 per process
