"""The data loaders: the report's pipeline against the resize cache with augmentation at training size."""
import tempfile
import time

import torch

from timing import calibrate, interleaved_rates
from oxford_pet import OxfordPetDataset, SimpleOxfordPetDataset, resize_image, resize_trimap  # noqa: E402
from transforms import SegmentationTransform  # noqa: E402


class AugmentThenResize:
    """The report's pipeline: augment the original-size sample, then resize it to the training size, CHW image."""

    def __init__(self, image_size):
        self.augment = SegmentationTransform(seed=0)
        self.image_size = image_size

    def __call__(self, image, mask, trimap):
        image, mask, trimap = self.augment(image, mask, trimap)
        size = self.image_size
        return resize_image(image, size).transpose(2, 0, 1), resize_trimap(mask, size), resize_trimap(trimap, size)


def loader_pass(dataset, batch_size, num_workers):
    """A callable that reads one whole epoch of dataset through a DataLoader with num_workers workers."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                         num_workers=num_workers, persistent_workers=num_workers > 0)

    def read_epoch():
        for _ in loader:
            pass

    return read_epoch


def loader_rates(datasets, args, num_workers):
    cpu = torch.device("cpu")
    tasks = {}
    for name, dataset in datasets.items():
        step = loader_pass(dataset, args.batch_size, num_workers)
        tasks[name] = (step, calibrate(step, cpu, args.warmup, args.min_seconds), len(dataset))
    return interleaved_rates(tasks, cpu, args.repeats)


def measure_loaders(args, num_workers):
    """Images/s of the train split: the report's way against the resize cache with augmentation at training size."""
    report = OxfordPetDataset(args.data_path, "train", AugmentThenResize(args.image_size))
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as cache_dir:
        start = time.perf_counter()
        cached = SimpleOxfordPetDataset(args.data_path, "train", SegmentationTransform(seed=0), args.image_size,
                                        cache_dir=cache_dir)
        build_seconds = time.perf_counter() - start
        # Loading in this process gets a DataLoader worker's setting: one torch thread (for collating).
        torch.set_num_threads(1 if num_workers == 0 else threads)
        try:
            rates = loader_rates({"report": report, "cached": cached}, args, num_workers)
        finally:
            torch.set_num_threads(threads)
    return {"data_path": str(args.data_path), "images": len(report), "num_workers": num_workers,
            "report_images_per_second": rates["report"], "cached_images_per_second": rates["cached"],
            "cached_vs_report": rates["cached"] / rates["report"], "cache_build_seconds": build_seconds}


def loader_table(loader, image_size):
    lines = [f"Data loader, train split of {loader['data_path']} ({loader['images']} images), "
             f"{loader['num_workers']} workers:", "",
             "| loader | img/s | vs report's |", "|---|---|---|",
             f"| report's: decode, augment at original size, resize | {loader['report_images_per_second']:.0f} "
             "| 1.00x |",
             f"| resize cache, augment at {image_size}x{image_size} | {loader['cached_images_per_second']:.0f} "
             f"| {loader['cached_vs_report']:.2f}x |"]
    if "cached_vs_resnet34_unet_train" in loader:
        train_rate, headroom = loader["resnet34_unet_train_images_per_second"], loader["cached_vs_resnet34_unet_train"]
        lines.append(f"| ResNet34_Unet's training step, for comparison | {train_rate:.1f} "
                     f"| the cached loader delivers {headroom:.1f}x its images/s |")
    return lines
