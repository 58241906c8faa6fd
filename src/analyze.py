"""Where a model fails: per-breed and per-species results, and the images it gets most wrong.

    python src/analyze.py checkpoints/ResNet34_Unet_bs8_best_model_test_<time>_per_image.csv [--out DIR] [-k 12]

Reads a per-image CSV of src/inference.py (and the .json beside it, which names the model file and dataset
folder) and writes to --out (default: <csv name>_analysis/ beside it): breeds.md, a table per breed and per
species (images, mean Dice, mean Boundary IoU, the worst image); dice_per_breed.png, mean Dice per breed,
sorted; and worst_images.png, the k lowest-Dice images with their errors drawn as src/inference.py --visualize
draws them (the model is run again on those images, at the resolution the CSV was scored at).
"""
import argparse
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

import arg_types
import per_image
from device import DEVICES, choose_device
from errors import ProjectError, run_cli
from files import atomic_write, check_folder, make_folder
from inference import predict_at_original_size
from report import markdown_table
from runtime import load_model
from visualize import prediction_figure

SOURCE_KEYS = ("model", "data_path", "split", "resolution", "tta")  # what the analysis reads of the CSV's source


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("per_image_csv", help="a *_per_image.csv written by src/inference.py")
    parser.add_argument("--out", default=None, help="output folder (default: <csv name>_analysis beside the CSV)")
    parser.add_argument("-k", "--worst", type=arg_types.positive_int, default=12, help="images in the gallery")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    return parser


def check_source(source, csv_path):
    """ProjectError unless the CSV's source says which model and dataset folder the analysis is to read."""
    missing = [key for key in SOURCE_KEYS if key not in source]
    if missing:
        raise ProjectError(f"{csv_path.with_suffix('.json')} lacks {', '.join(missing)}, so nothing says which model "
                           "and images the per-image CSV is of; analyze a CSV that src/inference.py wrote, with its "
                           ".json.")


def group_table(rows, key):
    """Markdown table of rows grouped by key ('breed' or 'species'), lowest mean Dice first."""
    groups = {}
    for row in rows:
        groups.setdefault(row[key], []).append(row)
    lines = []
    for name, members in groups.items():
        worst = min(members, key=lambda row: row["dice"])
        lines.append((np.mean([row["dice"] for row in members]), name, len(members),
                      np.mean([row["boundary_iou"] for row in members]), f"{worst['name']} ({worst['dice']:.3f})"))
    cells = [(name, count, f"{dice:.4f}", f"{biou:.4f}", worst) for dice, name, count, biou, worst in sorted(lines)]
    return markdown_table([key, "images", "mean Dice", "mean Boundary IoU", "worst image (Dice)"], cells)


def breed_chart(rows, path):
    """Bar chart of mean Dice per breed, sorted, cats and dogs in two colours."""
    breeds = {}
    for row in rows:
        breeds.setdefault((row["breed"], row["species"]), []).append(row["dice"])
    ranked = sorted((np.mean(scores), breed, species) for (breed, species), scores in breeds.items())
    fig = Figure(figsize=(7, 0.22 * len(ranked) + 1.2), layout="constrained")
    ax = fig.subplots()
    colors = ["#CC79A7" if species == "cat" else "#0072B2" for _, _, species in ranked]
    ax.barh([breed for _, breed, _ in ranked], [dice for dice, _, _ in ranked], color=colors)
    ax.set_xlabel("mean per-image Dice (pink: cats, blue: dogs)")
    ax.set_xlim(0, 1)
    ax.tick_params(axis="y", labelsize=7)
    ax.grid(axis="x", alpha=0.3)
    fig.savefig(path, dpi=150)


def worst_gallery(rows, source, csv_path, count, device, path):
    """The `count` lowest-Dice images, predicted again by the model the CSV names (checked to be the file that was
    tested), drawn at their own size."""
    per_image.check_model_file(source, csv_path)
    net, checkpoint = load_model(Path(source["model"]), device)
    panels = []
    for row in sorted(rows, key=lambda row: row["dice"])[:count]:
        image, pred, true, trimap = predict_at_original_size(net, checkpoint["model_record"], source["data_path"],
                                                             row["name"], device, source["tta"])
        title = f"{row['name']} ({row['breed']})  Dice {row['dice']:.3f}"
        panels.append((image, pred.numpy(), true.numpy(), trimap, title))
    fig = prediction_figure(panels, columns=min(4, len(panels)))
    fig.suptitle(f"The {len(panels)} lowest-Dice images (Dice scored at the {source['resolution']} resolution, "
                 "drawn at each image's own size)", fontsize=9)
    fig.savefig(path, dpi=120)


def main(args):
    csv_path = Path(args.per_image_csv)
    out = Path(args.out) if args.out else csv_path.with_name(csv_path.stem + "_analysis")
    check_folder(out, "--out")
    rows, source = per_image.read(csv_path)
    check_source(source, csv_path)
    make_folder(out)
    text = (f"# Where the model fails\n\nModel `{source['model']}`, {source['split']} split of "
            f"`{source['data_path']}`, {len(rows)} images, scored at the {source['resolution']} resolution.\n\n"
            f"## Per species\n\n{group_table(rows, 'species')}\n\n## Per breed (lowest mean Dice first)\n\n"
            f"{group_table(rows, 'breed')}\n")
    atomic_write(out / "breeds.md", lambda tmp: Path(tmp).write_text(text))
    breed_chart(rows, out / "dice_per_breed.png")
    with torch.inference_mode():
        worst_gallery(rows, source, csv_path, args.worst, choose_device(args.device), out / "worst_images.png")
    print(text)
    print(f"Wrote {out / 'breeds.md'}, {out / 'dice_per_breed.png'} and {out / 'worst_images.png'}")
    return out


if __name__ == "__main__":
    run_cli(main, get_args_parser().parse_args())
