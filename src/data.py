"""From a dataset to the device: loaders, the seeded training order, and batches normalised on the device."""
import os
import random

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Inputs are normalised on the device with ImageNet statistics for every model; checkpoints record this.
NORMALIZATION = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


def normalize_images(images, mean, std):
    """uint8 N x 3 x H x W (any device) -> float32, scaled to [0, 1] and normalised with mean/std."""
    mean = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def prepare_images(images, device, normalization, channels_last=False):
    """Move uint8 N x 3 x H x W images to the device (non-blocking from pinned memory) and normalise them there."""
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return normalize_images(images, normalization["mean"], normalization["std"])


def prepare_batch(batch, device, normalization, channels_last=False):
    """A loader's batch on the device: normalised images, and masks as int64."""
    images = prepare_images(batch["image"], device, normalization, channels_last)
    return images, batch["mask"].to(device, non_blocking=True).long()


def default_num_workers(device):
    """4 loader workers feed a GPU; on the CPU the cached, resized samples cost far less than a training step,
    and workers would only take cores from it."""
    return min(4, os.cpu_count() or 1) if device.type == "cuda" else 0


def seed_worker(worker_id):
    """DataLoader worker_init_fn: derive numpy, random and albumentations seeds from the worker's torch seed."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    transform = getattr(torch.utils.data.get_worker_info().dataset, "transform", None)
    if transform is not None:
        transform.set_random_seed(seed)


def build_loader(dataset, batch_size, num_workers, device, sampler=None):
    """A DataLoader in order (or in the sampler's order) that never drops a sample; pinned memory on CUDA; seeded
    workers (num_workers None: the device's default) that persist between epochs."""
    num_workers = default_num_workers(device) if num_workers is None else num_workers
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
        pin_memory=device.type == "cuda", worker_init_fn=seed_worker, drop_last=False,
        persistent_workers=num_workers > 0)


class SeededSampler(torch.utils.data.DistributedSampler):
    """The training order, shuffled (and sharded under torchrun) by DistributedSampler, with each index paired with
    the seed of its augmentation. Both follow from (seed, epoch) alone, so an epoch is the same whatever the number
    of workers, with workers that persist between epochs, and after a resume. With batch_size > 1, an epoch whose
    last batch would hold a single image leaves that image out: BatchNorm cannot train on one value per channel,
    which a small image's deepest 1x1 feature maps give."""

    def __init__(self, dataset, seed, rank=0, world_size=1, batch_size=1):
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        self.batch_size = batch_size
        self.drop_single = batch_size > 1 and self.num_samples % batch_size == 1

    def __len__(self):
        return self.num_samples - self.drop_single

    def __iter__(self):
        for index in list(super().__iter__())[:len(self)]:
            yield index, int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])
