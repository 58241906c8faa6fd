"""Test a trained model, append its scores to checkpoints/inference_result.csv, draw predictions.

    python src/inference.py --model saved_models/ResNet34_Unet_bs8_best_model.pth --visualize
    python src/inference.py --model saved_models/ResNet34_Unet_bs8_best_model.pth --images my_photos/ --output_dir out
    python src/inference.py --model saved_models/ResNet34_Unet_bs8_best_model.onnx   # in ONNX Runtime
Without --model, the newest *_best_model.pth in --save_dir is used.
"""
import argparse
import glob
import itertools
import warnings
from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import arg_types
import cli
import per_image
from data import prepare_images
from device import choose_device
from errors import ProjectError, run_cli
from evaluate import evaluate_checkpoint, format_metrics, image_scores, predict, upsample_probability
from files import append_csv_row, check_folder, csv_cells, file_identity, make_folder
from model_names import has_cbam
from oxford_pet import mask_from_trimap, read_image, read_sample, resize_image
from recipes import recipe_label
from runtime import load_model, runtime_name
from visualize import prediction_figure

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
RED = np.array([255, 0, 0])


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint, or .onnx file of src/export.py (default: the "
                        "newest *_best_model.pth in --save_dir)")
    cli.add_scoring_flags(parser)
    parser.add_argument("--visualize", action="store_true", help="write checkpoints/vis_result_*.png")
    parser.add_argument("--num_visualize", type=arg_types.positive_int, default=10)
    parser.add_argument("--images", nargs="+", default=None, help="your own pictures: files, folders or globs")
    parser.add_argument("--output_dir", default="predictions", help="where --images writes masks and overlays")
    parser.add_argument("--results_name", default=None, help="the per-image CSV's name begins with this (default: "
                        "the model file's name)")
    cli.add_output_flags(parser)
    cli.add_data_flags(parser)
    cli.add_device_flags(parser)
    return parser


# Flags for a test of a split, and the one flag for --images only; given with the other mode they would do nothing.
SPLIT_ONLY = ("split", "full_resolution", "visualize", "num_visualize", "results_name", "batch_size", "data_path",
              "no_cache", "num_workers", "log_dir")
IMAGES_ONLY = ("output_dir",)


def parse_args(argv=None):
    """inference.py's arguments; a flag that the chosen mode (--images, or a test of a split) would ignore is
    refused."""
    parser = get_args_parser()
    args = parser.parse_args(argv)
    typed = cli.typed_flags(get_args_parser, argv)
    ignored = [typed[dest] for dest in (SPLIT_ONLY if args.images else IMAGES_ONLY) if dest in typed]
    if ignored:
        mode, other = (("--images", "a test of a split") if args.images else
                       ("a test of a split (no --images)", "--images"))
        parser.error(f"{', '.join(ignored)} belong to {other} and would be ignored in {mode}; drop them, or run "
                     "the two separately.")
    return args


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


def overlay(image, mask, color=RED, alpha=0.45):
    """Blend a coloured mask into an H x W x 3 uint8 image."""
    out = image.astype(np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * color
    return out.astype(np.uint8)


def probability_at_own_size(net, record, image, device, tta=False):
    """The H x W pet probability of an H x W x 3 uint8 image, predicted at the model's input size and upsampled."""
    small = torch.from_numpy(resize_image(image, record["image_size"]).transpose(2, 0, 1).copy())[None]
    return upsample_probability(predict_probabilities(net, small, device, record, tta)[0], image.shape[:2])


def predict_at_original_size(net, record, root, name, device, tta=False):
    """(image, prediction, ground truth, trimap) of a dataset sample at its own size, the prediction made at the
    model's input size and upsampled."""
    image, trimap = read_sample(root, name)
    prob = probability_at_own_size(net, record, image, device, tta)
    return image, prob > 0.5, torch.from_numpy(mask_from_trimap(trimap)).bool(), trimap


def write_visualizations(net, dataset, device, record, out_dir, count, tta):
    """The first `count` samples at their own size, their errors drawn by visualize.py; returns the paths."""
    paths = []
    for index, name in enumerate(dataset.names[:count]):
        image, pred, true, trimap = predict_at_original_size(net, record, dataset.root, name, device, tta)
        score = image_scores(pred, true, trimap)["dice"]
        title = f"{name}  Dice {score:.3f} ({image.shape[1]}x{image.shape[0]})"
        fig = prediction_figure([(image, pred.numpy(), true.numpy(), trimap, title)])
        path = Path(out_dir) / f"vis_result_{index:02d}_{name}.png"
        fig.savefig(path, dpi=150)
        paths.append(path)
    return paths


def expand_image_paths(patterns):
    """Files, folders (their image files) and globs, in order, without duplicates (a file named twice, however
    spelled, is read once)."""
    found = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            found += sorted(Path(p) for p in glob.glob(pattern) if Path(p).is_file())
    unique = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    found = list(unique.values())
    if not found:
        raise ProjectError(f"--images {' '.join(patterns)} matched no image file (looked for files, folders of "
                           f"{', '.join(sorted(IMAGE_SUFFIXES))} files, and glob patterns).")
    return found


def path_key(path):
    """A file's absolute path in one letter case: names that a case-insensitive file system confuses compare equal."""
    return str(Path(path).resolve()).casefold()


def output_paths(out_dir, stem, taken):
    """(mask, overlay) paths of a picture named stem: <stem>_mask.png and <stem>_overlay.png, or, where either is
    in taken (path_key's of the files of the run), those of <stem>_2, <stem>_3, ...; the chosen ones join taken."""
    for number in itertools.count(1):
        name = stem if number == 1 else f"{stem}_{number}"
        paths = (out_dir / f"{name}_mask.png", out_dir / f"{name}_overlay.png")
        keys = {path_key(path) for path in paths}
        if not keys & taken:
            taken |= keys
            return paths


def predict_files(net, record, paths, out_dir, device, tta):
    """Write <stem>_mask.png (0/255, original resolution) and <stem>_overlay.png for each readable picture, never
    over another output of the run or over a picture given; returns how many pairs were written."""
    out_dir = Path(out_dir)
    make_folder(out_dir)
    taken = {path_key(path) for path in paths}
    written = 0
    for path in paths:
        try:
            image = read_image(path, upright=True)
        except ProjectError as error:
            warnings.warn(f"skipped {path}: {error}")
            continue
        mask = (probability_at_own_size(net, record, image, device, tta) > 0.5).numpy()
        mask_path, overlay_path = output_paths(out_dir, path.stem, taken)
        if mask_path.name != f"{path.stem}_mask.png":
            print(f"{path}: written as {mask_path.name} and {overlay_path.name} ({path.stem}_mask.png or "
                  f"{path.stem}_overlay.png is another file of this run)")
        Image.fromarray((mask * 255).astype(np.uint8)).save(mask_path)
        Image.fromarray(overlay(image, mask)).save(overlay_path)
        written += 1
    if not written:
        raise ProjectError(f"none of the {len(paths)} files given with --images could be read as an image.")
    print(f"Wrote masks and overlays of {written} images to {out_dir}")
    return written


def result_row(args, checkpoint, metrics, per_image_csv, timestamp, runtime):
    """One test of a model: what was tested, how, and its scores (the columns of inference_result.csv, in order;
    a new column goes at the end, after those of older files)."""
    record = checkpoint["model_record"]
    return {"timestamp": timestamp.isoformat(timespec="seconds"), "model": str(args.model),
            "model_type": record["model_type"],
            "use_cbam": record["use_cbam"] if has_cbam(record["model_type"]) else "",  # empty: the model has none
            "image_size": record["image_size"],
            "batch_size": checkpoint["args"]["batch_size"], "split": args.split, "num_images": metrics["num_images"],
            **{key: metrics[key] for key in ("dice", "iou", "dataset_dice", "dataset_iou")}, "tta": args.tta,
            "runtime": runtime, "resolution": "original" if args.full_resolution else "input",
            **{key: metrics[key] for key in ("band_accuracy", "boundary_iou")}, "per_image_csv": str(per_image_csv),
            "recipe": recipe_label(checkpoint["args"])}


def write_per_image_results(rows, args, checkpoint, timestamp):
    """<log_dir>/<model>_<split>[_tta][_fullres]_<time>_per_image.csv and its source .json; returns the CSV's path."""
    options = "_tta" * args.tta + "_fullres" * args.full_resolution
    name = args.results_name or Path(args.model).stem
    path = per_image.new_path(args.log_dir, f"{name}_{args.split}{options}_{timestamp:%Y%m%dT%H%M%S}")
    identity = file_identity(args.model)
    source = {"model": str(Path(args.model).resolve()), "model_bytes": identity["bytes"],
              "model_sha256": identity["sha256"], "data_path": str(Path(args.data_path).resolve()),
              "split": args.split, "tta": args.tta, "resolution": "original" if args.full_resolution else "input",
              "image_size": checkpoint["model_record"]["image_size"], "images": len(rows),
              "model_record": checkpoint["model_record"], "args": checkpoint["args"]}
    per_image.write(path, rows, source)
    return path


def main(args):
    for flag in ("output_dir", "log_dir"):
        check_folder(getattr(args, flag), f"--{flag}")
    device = choose_device(args.device)
    args.model = Path(args.model) if args.model else newest_best_model(args.save_dir)
    if args.images:
        net, checkpoint = load_model(args.model, device, args.model_type, args.use_cbam)
        predict_files(net, checkpoint["model_record"], expand_image_paths(args.images), args.output_dir, device,
                      args.tta)
        return None
    metrics, rows, net, checkpoint, dataset = evaluate_checkpoint(args, device)
    print(f"{args.model} on {args.split}: {format_metrics(metrics)}")
    timestamp = datetime.now()
    per_image_csv = write_per_image_results(rows, args, checkpoint, timestamp)
    csv_path = Path(args.log_dir) / "inference_result.csv"
    row = result_row(args, checkpoint, metrics, per_image_csv, timestamp, runtime_name(net))
    append_csv_row(csv_path, csv_cells(row))
    print(f"Appended the result to {csv_path}; per-image scores in {per_image_csv}")
    if args.visualize:
        paths = write_visualizations(net, dataset, device, checkpoint["model_record"], args.log_dir,
                                     args.num_visualize, args.tta)
        print(f"Wrote {len(paths)} pictures to {args.log_dir}/vis_result_*.png")
    return row


if __name__ == "__main__":
    run_cli(main, parse_args())
