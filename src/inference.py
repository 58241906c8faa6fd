"""Test a trained model, append its scores to checkpoints/inference_result.csv, draw predictions.

    python src/inference.py --model saved_models/ResNet34_Unet_bs8_best_model.pth --visualize
    python src/inference.py --model saved_models/ResNet34_Unet_bs8_best_model.pth --images my_photos/ --output_dir out
    python src/inference.py --model saved_models/ResNet34_Unet_bs8_best_model.onnx   # in ONNX Runtime
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

import cli
from data import prepare_images
from device import choose_device
from errors import ProjectError, run_cli
from evaluate import evaluate_checkpoint, format_metrics, predict
from files import append_csv_row
from metrics import dice, foreground_statistics
from oxford_pet import read_image, resize_image
from runtime import load_model, runtime_name

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
GREEN, RED = np.array([0, 255, 0]), np.array([255, 0, 0])


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint, or .onnx file of src/export.py (default: the "
                        "newest *_best_model.pth in --save_dir)")
    cli.add_scoring_flags(parser)
    parser.add_argument("--visualize", action="store_true", help="write checkpoints/vis_result_*.png")
    parser.add_argument("--num_visualize", type=cli.positive_int, default=10)
    parser.add_argument("--images", nargs="+", default=None, help="your own pictures: files, folders or globs")
    parser.add_argument("--output_dir", default="predictions", help="where --images writes masks and overlays")
    cli.add_output_flags(parser)
    cli.add_data_flags(parser)
    cli.add_device_flags(parser)
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
        images = prepare_images(images, device, record["normalization"], channels_last=True)
        return predict(net, images, tta).exp()[:, 1].float().cpu()


def overlay(image, masks_and_colors, alpha=0.45):
    """Blend coloured masks into an H x W x 3 uint8 image."""
    out = image.astype(np.float32)
    for mask, color in masks_and_colors:
        out[mask > 0] = (1 - alpha) * out[mask > 0] + alpha * color
    return out.astype(np.uint8)


def write_visualizations(net, dataset, device, record, out_dir, count, tta):
    """The first `count` samples: the image with ground truth in green and prediction in red."""
    paths = []
    for index in range(min(count, len(dataset))):
        sample = dataset[index]
        prob = predict_probabilities(net, torch.from_numpy(sample["image"][None]), device, record, tta)[0]
        pred, true = prob > 0.5, torch.from_numpy(sample["mask"] > 0)
        score = dice(*foreground_statistics(pred[None], true[None])).item()
        fig = Figure(figsize=(4, 4.4))
        ax = fig.subplots()
        ax.imshow(overlay(sample["image"].transpose(1, 2, 0), [(true.numpy(), GREEN), (pred.numpy(), RED)]))
        ax.set_title(f"{sample['name']}  Dice {score:.3f}\ngreen: ground truth, red: prediction",
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


def result_row(model_path, checkpoint, metrics, split, tta, runtime):
    """One test of a model: what was tested, how, and its scores (the columns of inference_result.csv, in order;
    a new column goes at the end, after those of older files)."""
    record = checkpoint["model_record"]
    return {"timestamp": datetime.now().isoformat(timespec="seconds"), "model": str(model_path),
            "model_type": record["model_type"], "use_cbam": record["use_cbam"], "image_size": record["image_size"],
            "batch_size": checkpoint["args"]["batch_size"], "split": split, "num_images": metrics["num_images"],
            **{key: metrics[key] for key in ("dice", "iou", "dataset_dice", "dataset_iou")}, "tta": tta,
            "runtime": runtime}


def csv_cells(row):
    return {key: f"{value:.6f}" if isinstance(value, float) else value for key, value in row.items()}


def main(args):
    device = choose_device(args.device)
    args.model = Path(args.model) if args.model else newest_best_model(args.save_dir)
    if args.images:
        net, checkpoint = load_model(args.model, device, args.model_type, args.use_cbam)
        predict_files(net, checkpoint["model_record"], expand_image_paths(args.images), args.output_dir, device,
                      args.tta)
        return None
    metrics, net, checkpoint, dataset = evaluate_checkpoint(args, device)
    print(f"{args.model} on {args.split}: {format_metrics(metrics)}")
    csv_path = Path(args.log_dir) / "inference_result.csv"
    row = result_row(args.model, checkpoint, metrics, args.split, args.tta, runtime_name(net))
    append_csv_row(csv_path, csv_cells(row))
    print(f"Appended the result to {csv_path}")
    if args.visualize:
        paths = write_visualizations(net, dataset, device, checkpoint["model_record"], args.log_dir,
                                     args.num_visualize, args.tta)
        print(f"Wrote {len(paths)} pictures to {args.log_dir}/vis_result_*.png")
    return row


if __name__ == "__main__":
    run_cli(main, get_args_parser().parse_args())
