"""Plot validation Dice and training loss per epoch of one or more training runs into one figure.

    python src/plot_history.py checkpoints/Unet_bs8_history.json checkpoints/ResNet34_Unet_bs8_history.json
    python src/plot_history.py A_history.json B_history.json --labels "U-Net" "ResNet34+U-Net" --out curves.png
Each run's best epoch (the one its best model was saved at) is starred on its Dice curve. Epochs are plotted
at their own numbers; where a history skips epochs, its line is broken there.
"""
import argparse
import json
import math
from numbers import Real
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from errors import ProjectError, run_cli
from files import make_folder
from model_names import has_cbam

SHAPE = ('{"args": {"model_type", "batch_size", ...}, "history": [{"epoch", "train_loss", "val_dice", ...}, ...], '
         '"best_epoch", "best_val_dice"}')


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("histories", nargs="+", help="*_history.json files written by src/train.py")
    parser.add_argument("--labels", nargs="+", default=None,
                        help="one legend label per history (default: model type and batch size)")
    parser.add_argument("--out", default="checkpoints/curves.png", help="the figure (.png, .pdf, .svg, ...)")
    parser.add_argument("--title", default=None)
    return parser


def load_history(path):
    """Read a *_history.json; a missing, non-JSON or malformed file, or one without epochs, is a ProjectError."""
    path = Path(path)
    if not path.is_file():
        raise ProjectError(f"history {path}: no such file.")
    try:
        history = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ProjectError(f"history {path} is not a JSON file ({error}); give the *_history.json files that "
                           "src/train.py writes to its --log_dir.") from None
    problem = shape_problem(history)
    if problem:
        raise ProjectError(f"history {path} is not a training history of src/train.py: {problem}. "
                           f"The expected shape is {SHAPE}.")
    return history


def is_number(value):
    return isinstance(value, Real) and not isinstance(value, bool)


def shape_problem(history):
    """What is wrong with a loaded history, or None when it can be plotted."""
    if not isinstance(history, dict) or not isinstance(history.get("args"), dict):
        return "it has no 'args' object"
    if not {"model_type", "batch_size"} <= history["args"].keys():
        return "its 'args' lack model_type or batch_size"
    rows = history.get("history")
    if not isinstance(rows, list):
        return "it has no 'history' list"
    if not rows:
        return "its 'history' list is empty (no epoch was completed)"
    for row in rows:
        if not isinstance(row, dict) or not all(is_number(row.get(key)) for key in ("epoch", "train_loss", "val_dice")):
            return f"the epoch entry {json.dumps(row)[:80]} lacks a numeric epoch, train_loss or val_dice"
    if not is_number(history.get("best_epoch")):
        return "it has no numeric 'best_epoch'"
    return None


def run_label(history):
    """'<model_type> bs<batch_size>', with ' no CBAM' for a model with CBAM trained without it."""
    args = history["args"]
    suffix = " no CBAM" if has_cbam(args["model_type"]) and not args.get("use_cbam", True) else ""
    return f"{args['model_type']} bs{args['batch_size']}{suffix}"


def with_gaps(rows, key):
    """Epochs and values of one column, with a NaN point wherever epochs are skipped so the line breaks there."""
    epochs, values = [], []
    for row in rows:
        if epochs and row["epoch"] > epochs[-1] + 1:
            epochs.append(epochs[-1] + 1)
            values.append(math.nan)
        epochs.append(row["epoch"])
        values.append(row[key])
    return epochs, values


def plot_run(ax_dice, ax_loss, history, label):
    rows = history["history"]
    best = [row for row in rows if row["epoch"] == history["best_epoch"]]
    best_text = f" (best {best[0]['val_dice']:.4f}, epoch {best[0]['epoch']})" if best else ""
    (line,) = ax_dice.plot(*with_gaps(rows, "val_dice"), marker=".", label=label + best_text)
    if best:
        ax_dice.plot(best[0]["epoch"], best[0]["val_dice"], marker="*", markersize=14, color=line.get_color(),
                     markeredgecolor="black", linestyle="none")
    ax_loss.plot(*with_gaps(rows, "train_loss"), marker=".", color=line.get_color(), label=label)


def seed_band(histories, key):
    """(epochs, mean, min, max) of one column over several runs of a setting, per epoch, over the runs that
    reached that epoch (early stopping ends some runs sooner)."""
    by_epoch = {}
    for history in histories:
        for row in history["history"]:
            by_epoch.setdefault(row["epoch"], []).append(row[key])
    epochs = sorted(by_epoch)
    values = [by_epoch[epoch] for epoch in epochs]
    return epochs, [sum(v) / len(v) for v in values], [min(v) for v in values], [max(v) for v in values]


def plot_seeds(ax_dice, ax_loss, histories, label):
    """The mean curve of several runs of one setting (seeds), with a band from their minimum to their maximum."""
    label = f"{label} (mean of {len(histories)} seeds, band: min to max)"
    epochs, mean, low, high = seed_band(histories, "val_dice")
    (line,) = ax_dice.plot(epochs, mean, marker=".", label=label)
    ax_dice.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    epochs, mean, low, high = seed_band(histories, "train_loss")
    ax_loss.plot(epochs, mean, marker=".", color=line.get_color(), label=label)
    ax_loss.fill_between(epochs, low, high, color=line.get_color(), alpha=0.2, linewidth=0)


def plot_histories(histories, labels, out_path, title=None):
    """Draw validation Dice (left) and training loss (right) per epoch of loaded histories; return the path.

    An entry of histories may be a list of the histories of several seeds of one setting, drawn by plot_seeds.
    """
    out_path = Path(out_path)
    if len(labels) != len(histories):
        raise ProjectError(f"the number of labels ({len(labels)}) differs from the number of histories "
                           f"({len(histories)}); give one label per history file, in the same order, or none for "
                           "the default labels.")
    if out_path.suffix[1:].lower() not in FigureCanvasAgg.get_supported_filetypes():
        raise ProjectError(f"--out {out_path}: matplotlib cannot write '{out_path.suffix}' files; use .png, .pdf "
                           "or .svg.")
    if out_path.is_dir():
        raise ProjectError(f"--out {out_path} is an existing folder; give the path of the figure to write.")
    fig = Figure(figsize=(13, 5), layout="constrained")
    FigureCanvasAgg(fig)
    ax_dice, ax_loss = fig.subplots(1, 2)
    for history, label in zip(histories, labels):
        if isinstance(history, list):
            plot_seeds(ax_dice, ax_loss, history, label)
        else:
            plot_run(ax_dice, ax_loss, history, label)
    for ax, name in ((ax_dice, "validation Dice"), (ax_loss, "training loss")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=9)
    ax_dice.set_title("Validation Dice per epoch (\u2605 best epoch)")
    ax_loss.set_title("Training loss per epoch")
    fig.suptitle(title or "Training runs")
    make_folder(out_path.parent)
    fig.savefig(out_path, dpi=150)
    return out_path


def main(args):
    histories = [load_history(path) for path in args.histories]
    labels = args.labels or [run_label(history) for history in histories]
    out_path = plot_histories(histories, labels, args.out, args.title)
    print(out_path)
    return out_path


if __name__ == "__main__":
    run_cli(main, get_args_parser().parse_args())
