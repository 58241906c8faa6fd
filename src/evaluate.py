"""Score a trained model on a split: python src/evaluate.py --model saved_models/X_best_model.pth [--split test].

--model takes a checkpoint of src/train.py (run in PyTorch) or an .onnx file of src/export.py (run in ONNX Runtime).

Dice and IoU are computed per image on the foreground class (argmax over the two classes) and averaged over
images; an image whose prediction and ground truth are both empty scores 1. Dataset-level ("micro") Dice and
IoU come from intersections and areas summed over the whole split.
"""
import argparse

import torch
import torch.nn.functional as F
from tqdm import tqdm

import cli
from data import NORMALIZATION, build_loader, prepare_batch
from device import autocast, choose_device, is_main_process
from errors import run_cli
from metrics import SegmentationMeter
from oxford_pet import load_dataset
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


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True,
                        help="a checkpoint written by src/train.py, or an .onnx file written by src/export.py")
    cli.add_scoring_flags(parser)
    cli.add_data_flags(parser)
    cli.add_device_flags(parser)
    return parser


def evaluate_checkpoint(args, device):
    """Load the checkpoint or ONNX file args.model (its model_type/use_cbam, when given, must agree) and score it on
    args.split; returns (metrics, net, checkpoint, dataset)."""
    net, checkpoint = load_model(args.model, device, args.model_type, args.use_cbam)
    record = checkpoint["model_record"]
    dataset = load_dataset(args.data_path, args.split, None, record["image_size"], not args.no_cache)
    loader = build_loader(dataset, args.batch_size, args.num_workers, device)
    metrics = evaluate(net, loader, device, record["normalization"], channels_last=True, tta=args.tta)
    return metrics, net, checkpoint, dataset


def format_metrics(metrics):
    return (f"loss {metrics['loss']:.4f}, Dice {metrics['dice']:.4f}, IoU {metrics['iou']:.4f} "
            f"(dataset-level Dice {metrics['dataset_dice']:.4f}, IoU {metrics['dataset_iou']:.4f}) "
            f"over {metrics['num_images']} images")


def main(args):
    metrics, *_ = evaluate_checkpoint(args, choose_device(args.device))
    print(f"{args.split}: {format_metrics(metrics)}")
    return metrics


if __name__ == "__main__":
    run_cli(main, get_args_parser().parse_args())
