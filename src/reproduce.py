"""Reproduce the report: its five training runs, their test scores, its figures and tables, in one folder.

    python src/reproduce.py --data_path dataset/oxford-iiit-pet --amp              (the report: 256 px, 50 epochs)
    python src/reproduce.py --improved               (and the report's proposals, from scratch)
    python src/reproduce.py --improved --encoder_weights resnet34-b627a593.pth     (and a pretrained-encoder run)
    python src/reproduce.py --quick                  (the bundled sample at 64 px, 1 epoch: minutes on a CPU)
    python src/reproduce.py --runs Unet:8,ResNet34_Unet:8,DeepLabV3Plus:8,HRNet:8 -e 20 --out reports/short
    python src/reproduce.py --seeds 0 1 2 --launcher local        (runs as jobs: one per GPU, src/launcher.py)
    python src/reproduce.py --seeds 0 1 2 --launcher slurm --partition gpu --time 240   (SLURM jobs)

Every output lives under --out (default reports/<dataset folder>_<image size>px): saved_models/, checkpoints/
(histories and inference_result.csv), the figures and REPORT.md. The same command again skips finished runs,
resumes an interrupted one from its *_last.pth and never tests a model file twice.
"""
import argparse
import json
import math
import shlex
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

import arg_types
import compare
import launcher
import plot_history
import report
import train
from data import NORMALIZATION
from device import choose_device
from errors import ProjectError, run_cli
from evaluate import evaluate
from files import atomic_write, check_folder
from model_names import MODEL_TYPES, canonical_model_type, has_cbam
from oxford_pet import load_dataset
from recipes import IMPROVED_RECIPE, recipe_changes, recipe_label
from summary import model_summary
from sweep import SET_BY_SWEEP, Run, planned, recipe_note, test_result_path, train_and_test

SAMPLE = Path(__file__).resolve().parents[1] / "dataset" / "oxford-iiit-pet-sample"
QUICK_DEFAULTS = {"data_path": str(SAMPLE), "image_size": 64, "epochs": 1, "num_workers": 0}
REPORT_RUNS = "Unet:8,Unet:16,ResNet34_Unet:8,ResNet34_Unet:16,ResNet34_Unet:32"
RECIPE_LABELS = {"report": "", "improved": " improved (from scratch)", "pretrained": " improved, pretrained encoder"}
TIMED_STEPS = 2
IMPROVED_RUN = Run("ResNet34_Unet", 8, recipe="improved")
PRETRAINED_RUN = Run("ResNet34_Unet", 8, recipe="pretrained")
# The architectures the report's Discussion proposes, trained with the report's recipe beside its networks.
PROPOSED_RUNS = [Run("DeepLabV3Plus", 8), Run("HRNet", 8)]
FIGURES = [
    ("fig1_unet_batch_size.png", "U-Net: batch size 8 vs 16", [Run("Unet", 8), Run("Unet", 16)]),
    ("fig2_resnet34_unet_batch_size.png", "ResNet34+U-Net: batch size 8, 16 and 32",
     [Run("ResNet34_Unet", 8), Run("ResNet34_Unet", 16), Run("ResNet34_Unet", 32)]),
    ("fig3_unet_vs_resnet34_unet.png", "U-Net vs ResNet34+U-Net at batch size 8",
     [Run("Unet", 8), Run("ResNet34_Unet", 8)]),
]
IMPROVED_FIGURE = ("fig4_improved.png", "ResNet34+U-Net at batch size 8: the report's recipe, the improved one "
                   "(from scratch) and on a pretrained encoder",
                   [Run("ResNet34_Unet", 8), IMPROVED_RUN, PRETRAINED_RUN])
ARCHITECTURES_FIGURE = ("fig5_architectures.png", "The report's networks and its proposed architectures at batch "
                        "size 8", [Run("Unet", 8), Run("ResNet34_Unet", 8), *PROPOSED_RUNS])


def get_args_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
        parents=[train.recipe_parser()],
        epilog="The training flags apply to every run. Each run's --model_type and --batch_size come from --runs, "
               "its --save_dir and --log_dir from --out; the same command again resumes the sweep, and another "
               "--out starts a new one.")
    parser.add_argument("--runs", default=REPORT_RUNS, help="comma-separated Model:batch_size items (default: the "
                        "report's five runs)")
    parser.add_argument("--improved", action="store_true", help="add the report's proposals: the architectures "
                        f"{' and '.join(map(str, PROPOSED_RUNS))} (unless --runs has them), and a run of "
                        f"{IMPROVED_RUN.model_type} batch {IMPROVED_RUN.batch_size} with the improved recipe, from "
                        f"scratch ({recipe_label(IMPROVED_RECIPE)})")
    parser.add_argument("--encoder_weights", dest="improved_encoder_weights", default=None,
                        help="with --improved, one more run: the improved recipe on this pretrained encoder, "
                        "'imagenet' (downloaded) or a local torchvision resnet34 .pth (not for courses that "
                        "require training from scratch)")
    parser.add_argument("--out", default=None, help="the sweep's folder (default reports/<dataset folder>_<image "
                        "size>px, so the same command finds its runs again)")
    parser.add_argument("--seeds", type=arg_types.seed_int, nargs="+", default=None,
                        help="train every run once per seed, each seed "
                        "in its own seed<N>/ folder; REPORT.md gives mean ± standard deviation over seeds and tests "
                        "ResNet34_Unet against Unet at batch 8 on per-image Dice (default: one run per setting, "
                        "with --seed)")
    parser.add_argument("--quick", action="store_true", help="defaults for a smoke test: the bundled sample, 64 px, "
                        "1 epoch, --num_workers 0 (flags given explicitly still win)")
    parser.add_argument("--restart", action="store_true", help="start the --out folder afresh: an earlier study "
                        "in it is moved aside to <out>.before-<time>/ first (nothing is deleted)")
    launcher.add_launcher_flags(parser)
    return parser


def parse_args(argv=None):
    """The sweep's flags, with --quick's defaults where --quick is given; train.py flags that the sweep sets for
    each run are refused."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = get_args_parser()
    if "--quick" in argv:
        parser.set_defaults(**QUICK_DEFAULTS)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)} (a sweep sets {', '.join(SET_BY_SWEEP)} for "
                     "each run itself; see the end of --help)")
    args.command = shlex.join(["python", "src/reproduce.py", *argv])
    return args


def parse_runs(text):
    runs = []
    for item in text.split(","):
        model_type, _, batch_size = item.strip().partition(":")
        try:
            run = Run(canonical_model_type(model_type), arg_types.positive_int(batch_size))
        except ValueError:
            raise ProjectError(f"--runs item {item!r} is not Model:batch_size; write items such as Unet:8 or "
                               f"ResNet34_Unet:16 (models {', '.join(MODEL_TYPES.values())}, any letter case; "
                               "batch sizes of at least 1), separated by commas.") from None
        if run in runs:
            raise ProjectError(f"--runs lists {item!r} twice; every run of a sweep needs its own model and batch "
                               "size.")
        runs.append(run)
    return runs


def random_batch(batch_size, image_size):
    """A training batch of random images, trimaps and their masks, as the loader gives them."""
    trimaps = torch.randint(1, 4, (batch_size, image_size, image_size), dtype=torch.uint8)
    return {"image": torch.randint(0, 256, (batch_size, 3, image_size, image_size), dtype=torch.uint8),
            "mask": (trimaps != 2).to(torch.uint8), "trimap": trimaps}


def timed(work):
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def seconds_per_epoch(args, device, train_images, valid_images):
    """Time a few steps of train.py's own training epoch and of validation on random uint8 batches, at the run's
    batch and image size; the pretrained run's encoder weights are loaded here, so a bad path fails before training."""
    args = train.fill_runtime_defaults(argparse.Namespace(**vars(args)))
    training = train.build_training(args, device)
    batches = [random_batch(args.batch_size, args.image_size)] * TIMED_STEPS
    train.train_one_epoch(training, batches[:1], device, args, 0)  # warm-up: allocation, autotuning
    train_step = timed(lambda: train.train_one_epoch(training, batches, device, args, 0)) / TIMED_STEPS
    valid_step = timed(lambda: evaluate(training.model, batches, device, NORMALIZATION, amp=args.amp,
                                        channels_last=not args.no_channels_last)) / TIMED_STEPS
    return (math.ceil(train_images / args.batch_size) * train_step
            + math.ceil(valid_images / args.batch_size) * valid_step)


def format_duration(seconds):
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def plural(count, word):
    return f"{count} {word}{'' if count == 1 else 's'}"


def print_plan(plan, base, out, device, seeded, timing):
    """List the trainings, which are skipped or resumed, and with timing, the time left from a short timing of each
    unfinished one (all timed first, so that the timing's progress bars do not split the list). Jobs are not timed:
    they run elsewhere, or several at once."""
    cache = not base.no_cache
    train_images = len(load_dataset(base.data_path, "train", None, base.image_size, cache))
    valid_images = len(load_dataset(base.data_path, "valid", None, base.image_size, cache, download=False))
    epochs_left = [item.args.epochs - (item.state.epoch if item.state else 0) for item in plan]
    estimates = [0.0 if item.is_finished() or not timing else
                 epochs * seconds_per_epoch(item.args, device, train_images, valid_images)
                 for item, epochs in zip(plan, epochs_left)]
    where = f"on {device}" if timing else f"as {base.launcher} jobs"
    print(f"Sweep in {out}: {plural(len(plan), 'run')} {where}, {train_images} train / {valid_images} valid "
          f"images at {base.image_size}x{base.image_size}, up to {plural(base.epochs, 'epoch')} each")
    for index, (item, epochs, estimate) in enumerate(zip(plan, epochs_left, estimates), 1):
        header = f"  run {index}/{len(plan)}: {item.label(seeded)}: "
        if item.is_finished():
            print(header + f"finished ({plural(item.state.epoch, 'epoch')}), skipped")
        else:
            start = f"resumes at epoch {item.state.epoch + 1}" if item.state else "starts"
            print(header + f"{start}, {plural(epochs, 'epoch')} at most" + (f", {format_duration(estimate)}"
                                                                             if timing else ""))
    if all(item.is_finished() for item in plan):
        print("Every run is finished; only the report is written again.")
        return
    if not timing:
        return
    print(f"Estimated time: {format_duration(sum(estimates))}, an upper bound since early stopping may end runs "
          f"sooner ({TIMED_STEPS} timed training and validation steps per run on random data, times steps per epoch "
          "and epochs; data loading and testing are not timed)")


def figure_section(name, title, figure_runs, runs, histories, notes, out):
    """Draw one of the report's figures when at least two of its runs are in the sweep; else say why not. With
    several seeds a run is drawn as its mean curve with a band from the lowest to the highest seed."""
    present = [run for run in figure_runs if run in runs]
    missing = ", ".join(str(run) for run in figure_runs if run not in runs)
    if len(present) < 2:
        return f"### {title}\n\nLeft out: {missing} not in --runs.\n"
    labels = [plot_history.run_label(histories[run][0]) + RECIPE_LABELS[run.recipe] + notes[run] for run in present]
    drawn = [histories[run] if len(histories[run]) > 1 else histories[run][0] for run in present]
    plot_history.plot_histories(drawn, labels, out / name, title)
    note = f" ({missing} not in --runs)" if missing else ""
    return f"### {title}{note}\n\n![{title}]({name})\n"


def training_table(plan, seeded):
    lines = ["| run | epochs run | best epoch | best validation Dice | training time |", "|---|---|---|---|---|"]
    for item in plan:
        history = plot_history.load_history(train.output_paths(item.args)["history"])
        seconds = sum(row["seconds"] for row in history["history"])
        lines.append(f"| {item.label(seeded)} | {history['history'][-1]['epoch']} | {history['best_epoch']} | "
                     f"{history['best_val_dice']:.4f} | {format_duration(seconds)} |")
    return "\n".join(lines)


SEED_COLUMNS = {"dice": "Dice", "iou": "IoU", "dataset_dice": "dataset Dice", "dataset_iou": "dataset IoU",
                "band_accuracy": "border-band accuracy", "boundary_iou": "Boundary IoU"}


def mean_and_deviation(values):
    """'mean ± sample standard deviation' of a setting's seeds; a single value is labelled as one run."""
    if len(values) == 1:
        return f"{values[0]:.4f} (one run)"
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}"


def seeds_table(runs, results, notes):
    """Test figures per setting over its seeds: mean ± standard deviation, and n."""
    header = ["run", "seeds (n)", *SEED_COLUMNS.values()]
    cells = [[f"{run}{notes[run]}", len(results[run]),
              *(mean_and_deviation([float(row[key]) for row in results[run]]) for key in SEED_COLUMNS)]
             for run in runs]
    return report.markdown_table(header, cells)


def paired_comparison(results, seeds, notes, run_a, run_b):
    """run_b against run_a on per-image test Dice over their seeds and the test images (src/compare.py)."""
    if run_a not in results or run_b not in results:
        return f"Left out: it needs {run_a} and {run_b} in the sweep.\n"
    result = compare.compare_files([row["per_image_csv"] for row in results[run_a]],
                                   [row["per_image_csv"] for row in results[run_b]],
                                   seeds_a=seeds[run_a], seeds_b=seeds[run_b])
    name_a, name_b = f"{run_a}{notes[run_a]}", f"{run_b}{notes[run_b]}"
    lines = compare.summary(result, name_a, name_b)
    return f"{name_b} (B) against {name_a} (A):\n\n" + "\n".join(f"- {line}" for line in lines) + "\n"


def comparisons(results, seeds, notes):
    """The report's central comparison, ResNet34_Unet against Unet at batch 8, and with --improved, the improved
    recipe against the report's."""
    sections = [paired_comparison(results, seeds, notes, Run("Unet", 8), Run("ResNet34_Unet", 8))]
    if IMPROVED_RUN in results:
        sections.append(paired_comparison(results, seeds, notes, Run("ResNet34_Unet", 8), IMPROVED_RUN))
    return "\n".join(sections)


def device_name(device):
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"{device.type} ({torch.get_num_threads()} threads)" if device.type == "cpu" else device.type


def model_summaries(plan, image_size):
    """A torchinfo table per model type of the sweep, with CBAM as its runs have it."""
    use_cbam = {item.run.model_type: item.args.use_cbam for item in plan}
    return "\n".join(f"### {model_type}\n\n```\n{model_summary(model_type, cbam, image_size)}\n```\n"
                     for model_type, cbam in use_cbam.items())


def test_result(item, out):
    """A run's test result with its files where they are now: a moved or copied sweep folder reports from its own
    files, not from the folder they were first written in."""
    row = json.loads(test_result_path(item.args).read_text())
    return dict(row, model=str(train.output_paths(item.args)["best"]),
                per_image_csv=str(out / "checkpoints" / Path(row["per_image_csv"]).name))


def unfinished_section(missing):
    """The runs that are not in the report, each with why (and its job's log)."""
    if not missing:
        return ""
    lines = [f"- {label}: {reason}" + (f" (log: `{log}`)" if log else "") for label, (reason, log) in missing.items()]
    return "\n".join(["## Runs not in this report\n", *lines, "\nRun the sweep's command again (without --collect) to "
                      "train them; a run that failed is submitted again.\n"])


def where_it_ran(args, device):
    if args.launcher == "serial":
        return f"- device: {device_name(device)}; torch {torch.__version__}"
    return (f"- runs: {args.launcher} jobs (logs in logs/<run>.out and .err); the sweep process ran on "
            f"{device_name(device)}; torch {torch.__version__}")


def write_report(args, base, plan, out, device, missing):
    """REPORT.md with the figures beside it, written atomically from the trained and tested runs; missing:
    {label: (reason, log)} of those that are not."""
    seeded = bool(args.seeds)
    plan = [item for item in plan if test_result_path(item.args).exists()]
    runs = list(dict.fromkeys(item.run for item in plan))
    histories, results, seeds = {}, {}, {}
    for item in plan:
        histories.setdefault(item.run, []).append(plot_history.load_history(train.output_paths(item.args)["history"]))
        results.setdefault(item.run, []).append(test_result(item, out))
        seeds.setdefault(item.run, []).append(item.seed)
    notes = {item.run: recipe_note(item.run, item.args) for item in plan}
    proposed = {run.model_type for run in PROPOSED_RUNS} & {run.model_type for run in runs}
    figures = FIGURES + [IMPROVED_FIGURE] * args.improved + [ARCHITECTURES_FIGURE] * bool(proposed)
    if seeded:
        tests = [f"Mean ± sample standard deviation over the seeds {', '.join(map(str, args.seeds))} (n per run), "
                 "of per-image means over the test split; dataset Dice and IoU count the pixels of the whole split "
                 "at once.\n", seeds_table(runs, results, notes) + "\n", "### Is the difference real?\n",
                 comparisons(results, seeds, notes)]
    else:
        tests = ["Dice and IoU are per-image means over the test split; dataset Dice and IoU count the pixels of the "
                 "whole split at once. One run per setting.\n",
                 report.results_table([row for run in runs for row in results[run]]) + "\n"]
    text = "\n".join([
        "# Reproduction: U-Net vs ResNet34+U-Net with CBAM on Oxford-IIIT Pet\n",
        f"- command: `{args.command}`",
        f"- data: `{base.data_path}` at {base.image_size}x{base.image_size}, "
        f"up to {plural(base.epochs, 'epoch')} per run",
        where_it_ran(args, device),
        f"- written: {datetime.now().isoformat(timespec='seconds')}\n",
        unfinished_section(missing),
        "## Test results\n",
        *tests,
        "The report's published figures (full dataset, 256x256, 50 epochs, one run each):\n",
        report.published_table() + "\n",
        "## Figures\n",
        "Validation Dice (the best epoch starred) and training loss per epoch.\n",
        *(figure_section(*figure, runs, histories, notes, out) for figure in figures),
        "## Training\n",
        training_table(plan, seeded) + "\n",
        f"## Models (torchinfo, {base.image_size}x{base.image_size} input)\n",
        model_summaries(plan, base.image_size),
    ])
    path = out / "REPORT.md"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path


def sweep_runs(args):
    """The runs of --runs, then, with --improved, the proposed architectures that --runs lacks, the improved run and
    (with --encoder_weights) the pretrained one;
    the sweep's flags that no run can take are refused."""
    runs = parse_runs(args.runs)
    if args.improved:
        runs += [run for run in PROPOSED_RUNS if run not in runs] + [IMPROVED_RUN]
        runs += [PRETRAINED_RUN] * bool(args.improved_encoder_weights)
    recipe_flags = recipe_changes(vars(args))
    if args.improved and recipe_flags:
        raise ProjectError(f"--improved compares the report's recipe with the improved one, so the recipe flags "
                           f"{', '.join(recipe_flags)} given with it would make its 'report' runs something else; "
                           "drop them, or sweep a recipe of your own without --improved (its runs are then labelled "
                           "by their flags).")
    if args.improved_encoder_weights and not args.improved:
        raise ProjectError("--encoder_weights adds the pretrained-encoder run of --improved; add --improved, or "
                           "drop it (the report's runs train from scratch).")
    if not args.use_cbam and not any(has_cbam(run.model_type) for run in runs):
        raise ProjectError(f"--no_cbam switches CBAM off in the sweep's runs that have it, and none of {args.runs} "
                           "does; drop the flag.")
    return runs


def sweep_plan(args, runs, out):
    """Every training of the sweep, all runs of the first seed first."""
    return [planned(args, run, seed, out) for seed in args.seeds or [args.seed] for run in runs]


def move_aside(out):
    """--restart: an existing sweep folder becomes <out>.before-<time>, so the sweep starts afresh and loses nothing;
    refused while jobs of the earlier study still run, since they would go on writing into the new one."""
    live = launcher.live_jobs(out)
    if live:
        raise ProjectError(f"--restart: jobs of the study in {out} are still queued or running ({', '.join(live)}); "
                           "they would go on writing into the folder. Wait for them, or cancel them (scancel for "
                           "SLURM jobs, kill for local ones), then restart.")
    if out.exists() and any(out.iterdir()):
        aside = out.with_name(f"{out.name}.before-{datetime.now():%Y%m%dT%H%M%S}")
        out.rename(aside)
        print(f"--restart: the earlier study in {out} is now in {aside}")


def main(args):
    runs = sweep_runs(args)
    if args.seeds and len(set(args.seeds)) < len(args.seeds):
        raise ProjectError(f"--seeds {' '.join(map(str, args.seeds))} lists a seed twice; each seed is a run of its "
                           "own, so give each once.")
    launcher.check_launcher_flags(args)
    args.epochs = args.epochs or train.RUNTIME_DEFAULTS["epochs"]  # the sweep's plan, for runs it resumes too
    base = train.fill_runtime_defaults(argparse.Namespace(**vars(args)))
    out = Path(args.out or f"reports/{Path(base.data_path).name}_{base.image_size}px")
    check_folder(out, "--out")
    if args.restart:
        move_aside(out)
    device = choose_device(base.device)
    plan = sweep_plan(args, runs, out)
    for item in plan:  # before anything trains, not when the sweep reaches the run
        train.check_recipe(item.args)
    unfinished = [item for item in plan if not item.is_tested()]
    jobs = launcher.Jobs(args, out, unfinished, device)
    if args.collect:
        missing = jobs.collect()
    else:
        missing = train_all(args, base, plan, out, device, jobs)
    path = write_report(args, base, plan, out, device, missing)
    print(f"\nWrote {path}")
    if missing:
        raise ProjectError(f"{plural(len(missing), 'run')} of {len(plan)} did not finish: "
                           f"{'; '.join(f'{label}: {reason}' for label, (reason, _) in missing.items())}. "
                           f"{path} lists them; run the sweep's command again (without --collect) to train them.")
    return path


def train_all(args, base, plan, out, device, jobs):
    """Train and test every run: one after the other here, or as jobs; returns {label: (reason, log)} of the runs
    that failed (the serial launcher stops at the first failure instead)."""
    seeded = bool(args.seeds)
    try:
        print_plan(plan, base, out, device, seeded, timing=args.launcher == "serial")
        if args.launcher != "serial":
            return jobs.run()
        for index, item in enumerate(plan, 1):
            print(f"\nrun {index}/{len(plan)}: {item.label(seeded)}")
            train_and_test(item, out / "checkpoints")
        return {}
    except (KeyboardInterrupt, SystemExit) as stop:
        # train.py saves the last epoch on Ctrl-C and exits 130; elsewhere Ctrl-C arrives as KeyboardInterrupt.
        if isinstance(stop, SystemExit) and stop.code != 130:
            raise
        jobs_note = "" if args.launcher == "serial" else (" Jobs still queued or running go on; the same command "
                                                          "waits for them and submits only the rest.")
        print(f"\nThe sweep stopped.{jobs_note} The same command continues it:\n  {args.command}")
        sys.exit(130)


if __name__ == "__main__":
    run_cli(main, parse_args())
