"""Shared helpers: errors, device, seeding, atomic files, checkpoints, metrics, losses, augmentation, distributed."""
import contextlib
import csv
import json
import os
import random
import sys
import tempfile
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Inputs are normalised on the device with ImageNet statistics for every model; checkpoints record this.
NORMALIZATION = {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}


class ProjectError(Exception):
    """An error the user can fix; scripts print its message as one paragraph and exit non-zero."""


def run_cli(main, args):
    """Run a script's main(args); turn ProjectError into a one-paragraph message and exit status 2."""
    try:
        return main(args)
    except ProjectError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def positive_int(text):
    """argparse type for batch sizes and epoch counts."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


positive_int.__name__ = "integer of at least 1"


# ---------------------------------------------------------------- device, seeds, distributed

def choose_device(name="auto"):
    """'auto' picks CUDA, then MPS, then the CPU; an explicit device that is not there is an error."""
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": has_mps}
    if name == "auto":
        name = next(kind for kind in ("cuda", "mps", "cpu") if available[kind])
    if not available.get(name, False):
        raise ProjectError(f"--device {name} was asked for, but this machine has no {name} device; use --device auto.")
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device(name)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_worker(worker_id):
    """DataLoader worker_init_fn: derive numpy, random and albumentations seeds from the worker's torch seed."""
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    transform = getattr(torch.utils.data.get_worker_info().dataset, "transform", None)
    if transform is not None:
        transform.set_random_seed(seed)


def init_distributed(device_name="auto"):
    """Under torchrun, join the process group (NCCL on CUDA, gloo on the CPU); return (device, rank, world_size)."""
    device = choose_device(device_name)
    if "RANK" not in os.environ or dist.is_initialized():
        rank = dist.get_rank() if dist.is_initialized() else 0
        return device, rank, dist.get_world_size() if dist.is_initialized() else 1
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device, dist.get_rank(), dist.get_world_size()


def is_main_process():
    return not dist.is_initialized() or dist.get_rank() == 0


def autocast(device, enabled):
    """Mixed precision: bf16 where the device supports it, else fp16 (which needs a GradScaler to train)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=autocast_dtype(device))


def autocast_dtype(device):
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def all_reduce_sum(values, device):
    """Sum a list of floats over all processes (a no-op in a single process)."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor.tolist()


# ---------------------------------------------------------------- files that survive a kill

def atomic_write(path, write):
    """Call write(tmp_path), then rename over path, so a crash leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_json(data, path):
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


def append_csv_row(path, row):
    """Append a dict as a CSV row, with the header only when the file is new; earlier rows are never touched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    is_new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if is_new:
            writer.writeheader()
        writer.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(state, path):
    """Atomically torch.save a dict of tensors and plain Python values."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path, what="--model"):
    """Load a .pth with weights_only=True (no arbitrary unpickling); clear errors for missing or damaged files."""
    path = Path(path)
    if not path.is_file():
        raise ProjectError(f"{what} {path}: no such file.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    # A damaged or foreign file makes torch.load fail with almost any exception type (KeyError, UnpicklingError, ...).
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ProjectError(
            f"{what} {path} could not be read as a PyTorch checkpoint; it may be truncated, "
            f"from another program, or hold pickled objects that are not plain values ({reason})."
        ) from None


# ---------------------------------------------------------------- inputs

def normalize_images(images, mean, std):
    """uint8 N x 3 x H x W (any device) -> float32, scaled to [0, 1] and normalised with mean/std."""
    mean = torch.tensor(mean, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(std, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def prepare_batch(batch, device, normalization, channels_last=False):
    """Move a uint8 batch to the device (non-blocking from pinned memory), normalise there; masks become int64."""
    images = batch["image"].to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    images = normalize_images(images, normalization["mean"], normalization["std"])
    return images, batch["mask"].to(device, non_blocking=True).long()


def default_num_workers(device):
    """4 loader workers feed a GPU; on the CPU the cached, resized samples cost far less than a training step,
    and workers would only take cores from it."""
    return min(4, os.cpu_count() or 1) if device.type == "cuda" else 0


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
    of workers, with workers that persist between epochs, and after a resume."""

    def __init__(self, dataset, seed, rank=0, world_size=1):
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)

    def __iter__(self):
        for index in super().__iter__():
            yield index, int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])


# ---------------------------------------------------------------- metrics and losses

def foreground_statistics(logits, masks):
    """Per image: (intersection, predicted area, true area) of the foreground class after argmax."""
    pred = logits.argmax(dim=1) == 1
    true = masks == 1
    dims = tuple(range(1, pred.dim()))
    intersection = (pred & true).sum(dim=dims).double()
    return intersection, pred.sum(dim=dims).double(), true.sum(dim=dims).double()


def dice_score(logits, masks):
    """Per-image foreground Dice 2|P∩T| / (|P| + |T|); 1 when prediction and truth are both empty."""
    intersection, pred_area, true_area = foreground_statistics(logits, masks)
    total = pred_area + true_area
    return torch.where(total > 0, 2 * intersection / total.clamp(min=1), torch.ones_like(total))


def iou_score(logits, masks):
    """Per-image foreground IoU |P∩T| / |P∪T|; 1 when prediction and truth are both empty."""
    intersection, pred_area, true_area = foreground_statistics(logits, masks)
    union = pred_area + true_area - intersection
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))


class SegmentationMeter:
    """Exact sums over a split: loss per image, per-image Dice/IoU, and dataset-level intersections and areas."""

    def __init__(self):
        self.totals = np.zeros(7)  # loss, images, dice, iou, intersection, predicted area, true area

    def update(self, logits, masks, loss_sum):
        intersection, pred_area, true_area = foreground_statistics(logits, masks)
        batch = [loss_sum, len(masks), dice_score(logits, masks).sum().item(), iou_score(logits, masks).sum().item(),
                 intersection.sum().item(), pred_area.sum().item(), true_area.sum().item()]
        self.totals += np.array(batch)

    def compute(self, device="cpu"):
        loss, images, dice, iou, intersection, pred_area, true_area = all_reduce_sum(self.totals.tolist(), device)
        images = max(images, 1)
        return {
            "loss": loss / images,
            "dice": dice / images,
            "iou": iou / images,
            "dataset_dice": 2 * intersection / max(pred_area + true_area, 1),
            "dataset_iou": intersection / max(pred_area + true_area - intersection, 1),
            "num_images": int(images),
        }


def soft_dice_loss(logits, masks, eps=1.0):
    """1 - soft foreground Dice over the batch, from softmax probabilities."""
    prob = logits.float().softmax(dim=1)[:, 1]
    true = (masks == 1).float()
    intersection = (prob * true).sum()
    return 1 - (2 * intersection + eps) / (prob.sum() + true.sum() + eps)


LOSSES = ("ce", "dice", "ce+dice")


def compute_loss(name, logits, masks):
    """The training loss: 'ce' (the report's), 'dice', or 'ce+dice' (the report's proposal)."""
    if name == "ce":
        return F.cross_entropy(logits.float(), masks)
    if name == "dice":
        return soft_dice_loss(logits, masks)
    return F.cross_entropy(logits.float(), masks) + soft_dice_loss(logits, masks)


# ---------------------------------------------------------------- augmentation

class RandomRotate90(A.RandomRotate90):
    """albumentations' RandomRotate90 with the same random draws and outputs, rotating with cv2.rotate: the copy
    that makes np.rot90's strided view contiguous is about 15x slower (the cached loader's costliest step)."""

    CODES = {1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180, 3: cv2.ROTATE_90_CLOCKWISE}

    def apply(self, img, factor, **params):
        return img if factor == 0 else cv2.rotate(img, self.CODES[factor])


class SegmentationTransform:
    """The report's training augmentation, with the same geometry on image, mask and trimap.

    Optional random occlusion (CoarseDropout on the image only) is the report's proposed improvement.
    """

    def __init__(self, occlusion=False, seed=None):
        steps = [
            A.HorizontalFlip(p=0.5),
            RandomRotate90(p=0.5),
            A.GridDistortion(p=0.5),
            A.RandomBrightnessContrast(p=0.2),
        ]
        if occlusion:
            steps.append(A.CoarseDropout(num_holes_range=(1, 6), hole_height_range=(0.1, 0.25),
                                         hole_width_range=(0.1, 0.25), fill=0, p=0.5))
        self.compose = A.Compose(steps, additional_targets={"trimap": "mask"}, seed=seed)

    def set_random_seed(self, seed):
        self.compose.set_random_seed(seed)

    def __call__(self, image, mask, trimap):
        out = self.compose(image=image, mask=mask, trimap=trimap)
        return out["image"], out["mask"], out["trimap"]
