"""Score a trained model on a split: python src/evaluate.py --model saved_models/X_best_model.pth [--split test].

--model takes a checkpoint of src/train.py (run in PyTorch) or an .onnx file of src/export.py (run in ONNX Runtime).
--data_path must hold the dataset: a test never downloads it (a mistyped folder is an error, not a new download).

Dice and IoU are computed per image on the foreground class (argmax over the two classes) and averaged over
images; an image whose prediction and ground truth are both empty scores 1. Dataset-level ("micro") Dice and
IoU come from intersections and areas summed over the whole split. A test also scores each image's boundary
(accuracy inside the trimap's border band, Boundary IoU), at the model's input size or, with
--full_resolution, at the image's own size against its original trimap (see metrics.py).
"""
import argparse
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

import cli
from data import NORMALIZATION, build_loader, prepare_batch
from device import autocast, choose_device, is_main_process
from errors import run_cli
from metrics import (SegmentationMeter, border_band_accuracy, boundary_iou, dataset_scores, dice,
                     foreground_statistics, iou)
from oxford_pet import load_dataset, mask_from_trimap, read_trimap, sample_paths, split_labels
from runtime import load_model


def predict(net, images, tta=False):
    """Log-probabilities N x C x H x W; with tta, the average of the image and its horizontal flip."""
    probs = net(images).float().softmax(dim=1)
    if tta:
        probs = (probs + net(images.flip(-1)).float().softmax(dim=1).flip(-1)) / 2
    return probs.clamp_min(1e-8).log()


@torch.inference_mode()
def evaluate(net, dataloader, device, normalization=NORMALIZATION, amp=False, channels_last=False, tta=False):
    """Mean cross-entropy per image, per-image Dice/IoU and dataset-level Dice/IoU over the whole loader.

    Under torchrun each process passes its own shard; the sums are reduced over all processes.
    """
    was_training = net.training
    net.eval()
    meter = SegmentationMeter(device)
    for batch in tqdm(dataloader, desc="evaluating", unit="batch", leave=False, disable=not is_main_process()):
        images, masks = prepare_batch(batch, device, normalization, channels_last)
        with autocast(device, amp):
            log_probs = predict(net, images, tta)
        meter.update(log_probs, masks, F.nll_loss(log_probs, masks, reduction="none").mean(dim=(1, 2)))
    net.train(was_training)
    return meter.compute()


def upsample_probability(prob, size):
    """An H x W probability map resized bilinearly to size (height, width)."""
    return F.interpolate(prob[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


def stored_size(root, name):
    """(height, width) of a sample's image file, read from its header."""
    with Image.open(sample_paths(root, name)[0]) as image:
        return image.height, image.width


def original_masks(log_probs, root, name):
    """(prediction, ground truth, trimap) of one image at its own size: the pet probability upsampled, the
    original trimap."""
    trimap = read_trimap(sample_paths(root, name)[1], stored_size(root, name))
    pred = upsample_probability(log_probs[1].exp(), trimap.shape) > 0.5
    return pred, torch.from_numpy(mask_from_trimap(trimap)).bool(), trimap


def image_scores(pred, true, trimap):
    """Per-image counts and scores of boolean H x W prediction and ground truth, with the image's trimap."""
    statistics = foreground_statistics(pred[None], true[None])
    intersection, pred_area, true_area = (count.item() for count in statistics)
    return {"dice": dice(*statistics).item(), "iou": iou(*statistics).item(),
            "band_accuracy": border_band_accuracy(pred.numpy(), trimap),
            "boundary_iou": boundary_iou(pred.numpy(), true.numpy()),
            "intersection": intersection, "predicted_area": pred_area, "true_area": true_area}


@torch.inference_mode()
def score_images(net, dataset, device, normalization, batch_size, num_workers=None, tta=False,
                 full_resolution=False):
    """(per-image rows, split summary) of a model on a SimpleOxfordPetDataset: each image's name, species, breed,
    stored size and scores; the summary has evaluate()'s figures (computed from the rows) and the mean band
    accuracy (over images that have a band) and Boundary IoU."""
    labels = split_labels(dataset.root, dataset.mode)
    rows, loss_sum = [], 0.0
    for batch in tqdm(build_loader(dataset, batch_size, num_workers, device), desc="scoring", unit="batch",
                      leave=False):
        images, masks = prepare_batch(batch, device, normalization, channels_last=True)
        log_probs = predict(net, images, tta)
        loss_sum += F.nll_loss(log_probs, masks, reduction="none").mean(dim=(1, 2)).sum().item()
        for index, (name, scores) in enumerate(zip(batch["name"], log_probs.float().cpu())):
            if full_resolution:
                pred, true, trimap = original_masks(scores, dataset.root, name)
            else:
                pred, true, trimap = scores.argmax(0) == 1, batch["mask"][index].bool(), batch["trimap"][index].numpy()
            height, width = stored_size(dataset.root, name)
            species, breed = labels[name]
            rows.append({"name": name, "species": species, "breed": breed, "width": width, "height": height,
                         **image_scores(pred, true, trimap)})
    return rows, summarize(rows, loss_sum)


def summarize(rows, loss_sum):
    """A split's figures from its per-image rows: means over images, and Dice and IoU at the dataset level."""
    count = len(rows)
    bands = [row["band_accuracy"] for row in rows if not math.isnan(row["band_accuracy"])]
    dataset_dice, dataset_iou = dataset_scores(*(sum(row[key] for row in rows)
                                                 for key in ("intersection", "predicted_area", "true_area")))
    return {"loss": loss_sum / count, "dice": float(np.mean([row["dice"] for row in rows])),
            "iou": float(np.mean([row["iou"] for row in rows])), "dataset_dice": dataset_dice,
            "dataset_iou": dataset_iou, "band_accuracy": float(np.mean(bands)) if bands else math.nan,
            "boundary_iou": float(np.mean([row["boundary_iou"] for row in rows])), "num_images": count}


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True,
                        help="a checkpoint written by src/train.py, or an .onnx file written by src/export.py")
    cli.add_scoring_flags(parser)
    cli.add_data_flags(parser)
    cli.add_device_flags(parser)
    return parser


def evaluate_checkpoint(args, device):
    """Load the checkpoint or ONNX file args.model (its model_type/use_cbam, when given, must agree) and score each
    image of args.split; returns (summary, per-image rows, net, checkpoint, dataset)."""
    net, checkpoint = load_model(args.model, device, args.model_type, args.use_cbam)
    record = checkpoint["model_record"]
    dataset = load_dataset(args.data_path, args.split, None, record["image_size"], not args.no_cache, download=False)
    rows, summary = score_images(net, dataset, device, record["normalization"], args.batch_size, args.num_workers,
                                 args.tta, args.full_resolution)
    return summary, rows, net, checkpoint, dataset


def format_metrics(metrics):
    return (f"loss {metrics['loss']:.4f}, Dice {metrics['dice']:.4f}, IoU {metrics['iou']:.4f} "
            f"(dataset-level Dice {metrics['dataset_dice']:.4f}, IoU {metrics['dataset_iou']:.4f}; "
            f"border-band accuracy {metrics['band_accuracy']:.4f}, Boundary IoU {metrics['boundary_iou']:.4f}) "
            f"over {metrics['num_images']} images")


def main(args):
    metrics, *_ = evaluate_checkpoint(args, choose_device(args.device))
    resolution = "original resolution" if args.full_resolution else "the model's input size"
    print(f"{args.split} at {resolution}: {format_metrics(metrics)}")
    return metrics


if __name__ == "__main__":
    run_cli(main, get_args_parser().parse_args())
