"""Test a trained model, append its scores to checkpoints/inference_result.csv, draw predictions.

    python src/inference.py --model saved_models/ResNet34_Unet_bs8_best_model.pth --visualize
    python src/inference.py --model saved_models/ResNet34_Unet_bs8_best_model.pth --images my_photos/ --output_dir out
Without --model, the newest *_best_model.pth in --save_dir is used.
"""
import argparse
import glob
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from PIL import Image

from evaluate import evaluate_checkpoint, format_metrics, predict
from models import load_trained_model, model_type_arg
from oxford_pet import read_image, resize_image
from utils import ProjectError, append_csv_row, choose_device, positive_int, prepare_batch, run_cli

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
GREEN, RED = np.array([0, 255, 0]), np.array([255, 0, 0])


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_path", default="dataset/oxford-iiit-pet")
    parser.add_argument("--model", default=None, help="checkpoint (default: the newest *_best_model.pth in --save_dir)")
    parser.add_argument("--model_type", type=model_type_arg, default=None, help="must agree with the checkpoint")
    parser.add_argument("--no_cbam", action="store_true", help="must agree with the checkpoint")
    parser.add_argument("--batch_size", "-b", type=positive_int, default=4)
    parser.add_argument("--visualize", action="store_true", help="write checkpoints/vis_result_*.png")
    parser.add_argument("--num_visualize", type=positive_int, default=10)
    parser.add_argument("--split", choices=["train", "valid", "test"], default="test")
    parser.add_argument("--tta", action="store_true", help="average with the horizontally flipped prediction")
    parser.add_argument("--images", nargs="+", default=None, help="your own pictures: files, folders or globs")
    parser.add_argument("--output_dir", default="predictions", help="where --images writes masks and overlays")
    parser.add_argument("--save_dir", default="saved_models")
    parser.add_argument("--log_dir", default="checkpoints")
    parser.add_argument("--num_workers", type=int, default=None, help="default: 4 on CUDA, 0 on the CPU")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    parser.add_argument("--no_cache", action="store_true")
    return parser


def newest_best_model(save_dir):
    candidates = sorted(Path(save_dir).glob("*_best_model.pth"), key=lambda path: path.stat().st_mtime)
    if not candidates:
        raise ProjectError(f"no --model given and no *_best_model.pth in {save_dir}; train one with src/train.py "
                           "or pass --model PATH.")
    return candidates[-1]


def predict_probabilities(net, images, device, record, tta=False):
    """Foreground probability maps N x H x W for a uint8 N x 3 x H x W batch."""
    with torch.inference_mode():
        images, _ = prepare_batch({"image": images, "mask": torch.zeros(0)}, device, record["normalization"],
                                  channels_last=True)
        return predict(net, images, tta).exp()[:, 1].float().cpu()


def overlay(image, masks_and_colors, alpha=0.45):
    """Blend coloured masks into an H x W x 3 uint8 image."""
    out = image.astype(np.float32)
    for mask, color in masks_and_colors:
        out[mask > 0] = (1 - alpha) * out[mask > 0] + alpha * color
    return out.astype(np.uint8)


def sample_dice(pred, true):
    total = pred.sum() + true.sum()
    return 1.0 if total == 0 else 2.0 * np.logical_and(pred, true).sum() / total


def write_visualizations(net, dataset, device, record, out_dir, count, tta):
    """The first `count` samples: the image with ground truth in green and prediction in red."""
    paths = []
    for index in range(min(count, len(dataset))):
        sample = dataset[index]
        prob = predict_probabilities(net, torch.from_numpy(sample["image"][None]), device, record, tta)[0]
        pred, true = prob.numpy() > 0.5, sample["mask"] > 0
        fig = Figure(figsize=(4, 4.4))
        ax = fig.subplots()
        ax.imshow(overlay(sample["image"].transpose(1, 2, 0), [(true, GREEN), (pred, RED)]))
        ax.set_title(f"{sample['name']}  Dice {sample_dice(pred, true):.3f}\ngreen: ground truth, red: prediction",
                     fontsize=9)
        ax.axis("off")
        path = Path(out_dir) / f"vis_result_{index:02d}_{sample['name']}.png"
        fig.savefig(path, dpi=150, bbox_inches="tight")
        paths.append(path)
    return paths


def expand_image_paths(patterns):
    """Files, folders (their image files) and globs, in order, without duplicates."""
    found = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            found += sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
    found = list(dict.fromkeys(found))
    if not found:
        raise ProjectError(f"--images {' '.join(patterns)} matched no image file (looked for files, folders of "
                           f"{', '.join(sorted(IMAGE_SUFFIXES))} files, and glob patterns).")
    return found


def predict_files(net, record, paths, out_dir, device, tta):
    """Write <stem>_mask.png (0/255, original resolution) and <stem>_overlay.png for each readable picture."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stems = set()
    for path in paths:
        try:
            image = read_image(path, upright=True)
        except ProjectError as error:
            warnings.warn(f"skipped {path}: {error}")
            continue
        small = torch.from_numpy(resize_image(image, record["image_size"]).transpose(2, 0, 1).copy())[None]
        prob = predict_probabilities(net, small, device, record, tta)
        prob = F.interpolate(prob[None], size=image.shape[:2], mode="bilinear", align_corners=False)[0, 0]
        mask = prob.numpy() > 0.5
        stem = path.stem if path.stem not in stems else f"{path.stem}_{len(stems)}"
        stems.add(stem)
        Image.fromarray((mask * 255).astype(np.uint8)).save(out_dir / f"{stem}_mask.png")
        Image.fromarray(overlay(image, [(mask, RED)])).save(out_dir / f"{stem}_overlay.png")
    if not stems:
        raise ProjectError(f"none of the {len(paths)} files given with --images could be read as an image.")
    print(f"Wrote masks and overlays of {len(stems)} images to {out_dir}")


def result_row(model_path, checkpoint, metrics, split, tta):
    record = checkpoint["model_record"]
    return {"timestamp": datetime.now().isoformat(timespec="seconds"), "model": str(model_path),
            "model_type": record["model_type"], "use_cbam": record["use_cbam"], "image_size": record["image_size"],
            "batch_size": checkpoint["args"]["batch_size"], "split": split, "num_images": metrics["num_images"],
            "dice": f"{metrics['dice']:.6f}", "iou": f"{metrics['iou']:.6f}",
            "dataset_dice": f"{metrics['dataset_dice']:.6f}", "dataset_iou": f"{metrics['dataset_iou']:.6f}",
            "tta": tta}


def main(args):
    device = choose_device(args.device)
    model_path = Path(args.model) if args.model else newest_best_model(args.save_dir)
    use_cbam = False if args.no_cbam else None
    if args.images:
        net, checkpoint = load_trained_model(model_path, device, args.model_type, use_cbam)
        predict_files(net, checkpoint["model_record"], expand_image_paths(args.images), args.output_dir, device,
                      args.tta)
        return None
    metrics, net, checkpoint, dataset = evaluate_checkpoint(
        model_path, args.data_path, args.split, args.batch_size, args.num_workers, device, args.tta,
        not args.no_cache, args.model_type, use_cbam)
    print(f"{model_path} on {args.split}: {format_metrics(metrics)}")
    csv_path = Path(args.log_dir) / "inference_result.csv"
    append_csv_row(csv_path, result_row(model_path, checkpoint, metrics, args.split, args.tta))
    print(f"Appended the result to {csv_path}")
    if args.visualize:
        paths = write_visualizations(net, dataset, device, checkpoint["model_record"], args.log_dir,
                                     args.num_visualize, args.tta)
        print(f"Wrote {len(paths)} pictures to {args.log_dir}/vis_result_*.png")
    return metrics


if __name__ == "__main__":
    run_cli(main, get_args_parser().parse_args())
