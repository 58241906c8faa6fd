"""Score a trained model on a split: python src/evaluate.py --model saved_models/X_best_model.pth [--split test].

Dice and IoU are computed per image on the foreground class (argmax over the two classes) and averaged over
images; an image whose prediction and ground truth are both empty scores 1. Dataset-level ("micro") Dice and
IoU come from intersections and areas summed over the whole split.
"""
import argparse

import torch
import torch.nn.functional as F
from tqdm import tqdm

from models import load_trained_model
from oxford_pet import load_dataset
from utils import (NORMALIZATION, SegmentationMeter, autocast, build_loader, choose_device, is_main_process,
                   positive_int, prepare_batch, run_cli)


def predict(net, images, tta=False):
    """Log-probabilities N x C x H x W; with tta, the average of the image and its horizontal flip."""
    probs = net(images).float().softmax(dim=1)
    if tta:
        probs = (probs + net(images.flip(-1)).float().softmax(dim=1).flip(-1)) / 2
    return probs.clamp_min(1e-8).log()


@torch.inference_mode()
def evaluate(net, dataloader, device, normalization=NORMALIZATION, amp=False, channels_last=False,
             tta=False):
    """Mean cross-entropy per image, per-image Dice/IoU and dataset-level Dice/IoU over the whole loader.

    Under torchrun each process passes its own shard; the sums are reduced over all processes.
    """
    was_training = net.training
    net.eval()
    meter = SegmentationMeter()
    for batch in tqdm(dataloader, desc="evaluating", unit="batch", leave=False, disable=not is_main_process()):
        images, masks = prepare_batch(batch, device, normalization, channels_last)
        with autocast(device, amp):
            log_probs = predict(net, images, tta)
        per_image_loss = F.nll_loss(log_probs, masks, reduction="none").mean(dim=(1, 2))
        meter.update(log_probs, masks, per_image_loss.sum().item())
    net.train(was_training)
    return meter.compute(device)


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a checkpoint written by src/train.py")
    parser.add_argument("--data_path", default="dataset/oxford-iiit-pet")
    parser.add_argument("--split", choices=["train", "valid", "test"], default="test")
    parser.add_argument("--batch_size", "-b", type=positive_int, default=4)
    parser.add_argument("--num_workers", type=int, default=None, help="default: 4 on CUDA, 0 on the CPU")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    parser.add_argument("--tta", action="store_true", help="average with the horizontally flipped prediction")
    parser.add_argument("--no_cache", action="store_true")
    return parser


def evaluate_checkpoint(model_path, data_path, split, batch_size, num_workers, device, tta=False, use_cache=True,
                        model_type=None, use_cbam=None):
    """Rebuild a checkpoint's model and score it on a split; returns (metrics, net, checkpoint, dataset)."""
    net, checkpoint = load_trained_model(model_path, device, model_type, use_cbam)
    record = checkpoint["model_record"]
    dataset = load_dataset(data_path, split, None, record["image_size"], use_cache)
    loader = build_loader(dataset, batch_size, num_workers, device)
    metrics = evaluate(net, loader, device, record["normalization"], channels_last=True, tta=tta)
    return metrics, net, checkpoint, dataset


def format_metrics(metrics):
    return (f"loss {metrics['loss']:.4f}, Dice {metrics['dice']:.4f}, IoU {metrics['iou']:.4f} "
            f"(dataset-level Dice {metrics['dataset_dice']:.4f}, IoU {metrics['dataset_iou']:.4f}) "
            f"over {metrics['num_images']} images")


def main(args):
    device = choose_device(args.device)
    metrics, *_ = evaluate_checkpoint(args.model, args.data_path, args.split, args.batch_size, args.num_workers,
                                        device, args.tta, not args.no_cache)
    print(f"{args.split}: {format_metrics(metrics)}")
    return metrics


if __name__ == "__main__":
    run_cli(main, get_args_parser().parse_args())
