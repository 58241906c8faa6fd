"""Write the evaluations in checkpoints/inference_result.csv as a markdown table, beside the report's figures.

    python src/report.py
    python src/report.py --csv checkpoints/inference_result.csv --out checkpoints/results.md --split test
Every row of the CSV is kept, best Dice first: a model file listed twice was evaluated twice.
"""
import argparse
import csv
from pathlib import Path

from errors import ProjectError, run_cli
from files import atomic_write
from model_names import has_cbam

REQUIRED_COLUMNS = ("model", "model_type", "use_cbam", "image_size", "batch_size", "split", "num_images",
                    "dice", "iou", "dataset_dice", "dataset_iou")
NUMBER_COLUMNS = {"image_size": int, "batch_size": int, "num_images": int, "dice": float, "iou": float,
                  "dataset_dice": float, "dataset_iou": float}
PUBLISHED = [("U-Net (`Unet`)", "0.9226–0.9242", "31.0 M", "54.65 G"),
             ("ResNet34+U-Net with CBAM (`ResNet34_Unet`)", "0.9245–0.9275", "21.9 M", "6.92 G")]


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", default="checkpoints/inference_result.csv", help="written by src/inference.py")
    parser.add_argument("--out", default="checkpoints/results.md")
    parser.add_argument("--split", default="test", help="the split whose evaluations to list: train, valid, test "
                        "(the default), or all")
    return parser


def read_results(csv_path):
    """The rows of an inference_result.csv, numbers parsed; use_cbam and tta become booleans (tta None if absent),
    and runtime is pytorch where the file has none."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise ProjectError(f"--csv {csv_path}: no such file; src/inference.py writes it when it tests a model.")
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [column for column in REQUIRED_COLUMNS if column not in (reader.fieldnames or [])]
        if missing:
            raise ProjectError(f"--csv {csv_path} is empty or lacks the columns {', '.join(missing)}; it should "
                               f"be the inference_result.csv written by src/inference.py.")
        rows = [parse_row(row, csv_path, reader.line_num) for row in reader]
    if not rows:
        raise ProjectError(f"--csv {csv_path} has a header but no results; run src/inference.py first.")
    return rows


def parse_row(row, csv_path, line):
    try:
        parsed = dict(row, **{column: kind(row[column]) for column, kind in NUMBER_COLUMNS.items()})
    except (TypeError, ValueError):
        raise ProjectError(f"--csv {csv_path}, line {line}: a number column holds something else "
                           f"({', '.join(f'{c}={row[c]!r}' for c in NUMBER_COLUMNS)}).") from None
    parsed["use_cbam"] = row["use_cbam"] == "True"
    parsed["tta"] = None if row.get("tta") in (None, "") else row["tta"] == "True"
    parsed["runtime"] = row.get("runtime") or "pytorch"  # rows from before ONNX Runtime inference ran in PyTorch
    parsed["recipe"] = row.get("recipe") or "?"  # rows from before the recipe was recorded
    parsed["resolution"] = row.get("resolution") or "input"  # rows from before --full_resolution scored at input size
    return parsed


def select_split(rows, split, csv_path):
    if split == "all":
        return rows
    selected = [row for row in rows if row["split"] == split]
    if not selected:
        found = ", ".join(sorted({row["split"] for row in rows}))
        raise ProjectError(f"--csv {csv_path} has no evaluation on the {split} split (it has: {found}); "
                           "pick one of those with --split, or --split all.")
    return selected


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def cbam_cell(row):
    """n/a for a model without CBAM, whatever its record's use_cbam says."""
    if not has_cbam(row["model_type"]):
        return "n/a"
    return "yes" if row["use_cbam"] else "no"


def results_table(rows):
    """Markdown table of evaluations, best per-image Dice first; equal scores keep their CSV order."""
    header = ["model file", "model type", "CBAM", "batch size", "image size", "split", "resolution", "images", "Dice",
              "IoU", "dataset Dice", "dataset IoU", "TTA", "runtime", "recipe"]
    cells = [[f"`{row['model']}`", row["model_type"], cbam_cell(row), row["batch_size"],
              f"{row['image_size']}x{row['image_size']}", row["split"], row["resolution"], row["num_images"],
              *(f"{row[key]:.4f}" for key in ("dice", "iou", "dataset_dice", "dataset_iou")),
              {True: "yes", False: "no", None: "?"}[row["tta"]], row["runtime"], row["recipe"]]
             for row in sorted(rows, key=lambda row: -row["dice"])]
    return markdown_table(header, cells)


def published_table():
    """The report's published test figures: 256x256, 50 epochs, full dataset."""
    header = ["source", "model", "image size", "epochs", "data", "test Dice", "params", "mult-adds"]
    return markdown_table(header, [("report (published)", name, "256x256", 50, "full dataset", dice, params, ops)
                                   for name, dice, params, ops in PUBLISHED])


def report_markdown(rows, csv_path, split):
    return (f"# Results ({'all splits' if split == 'all' else f'{split} split'})\n\n"
            f"Evaluations from `{csv_path}`, best Dice first. Dice and IoU are per-image means; dataset Dice and "
            "IoU count the pixels of the whole split at once. A model file listed more than once was evaluated "
            "more than once (resolution: scored at the model's input size, or upsampled to each image's own size; TTA: "
            "averaged with the flipped image; recipe: the training flags that differ from the report's, a pretrained "
            "encoder named as such; ?: not recorded).\n\n"
            f"{results_table(rows)}\n\n## The report (published)\n\n{published_table()}\n")


def main(args):
    rows = select_split(read_results(args.csv), args.split, args.csv)
    text = report_markdown(rows, args.csv, args.split)
    atomic_write(args.out, lambda tmp: Path(tmp).write_text(text))
    print(text)
    print(f"Wrote {args.out}")
    return text


if __name__ == "__main__":
    run_cli(main, get_args_parser().parse_args())
