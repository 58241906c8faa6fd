"""One training of a sweep: its setting, seed and train.py arguments, whether an earlier run in the sweep's folder
is the same study, and how it is trained and tested. src/reproduce.py plans and reports sweeps; src/launcher.py
runs their trainings as jobs, each of which calls train_and_test here."""
import argparse
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import inference
import train
from checkpoint import load_checkpoint, training_args
from errors import ProjectError
from files import make_folder, save_json
from model_names import has_cbam
from recipes import IMPROVED_RECIPE, recipe_label

try:
    import fcntl
except ImportError:  # Windows: no lock, so two processes could train one run at once
    fcntl = None

# train.py flags a sweep chooses for each run itself; a command that gives one is refused.
SET_BY_SWEEP = ("model_type", "batch_size", "save_dir", "log_dir", "resume", "overwrite")
# train.py flags that say where and how fast a run trains, not what it is: a sweep folder's runs may differ in them.
WHERE_AND_HOW = ("device", "num_workers", "no_cache", "compile")


@dataclass(frozen=True)
class Run:
    """One setting of a sweep; with --seeds it is trained once per seed. recipe: "report", "improved" (from
    scratch, recipes.IMPROVED_RECIPE) or "pretrained" (the improved recipe on a pretrained encoder)."""
    model_type: str
    batch_size: int
    recipe: str = "report"

    def __str__(self):
        return f"{self.model_type}_bs{self.batch_size}{'' if self.recipe == 'report' else ' ' + self.recipe}"


@dataclass
class Planned:
    """One training of a sweep: its setting and seed, train.py's arguments, and its state (None: not started)."""
    run: Run
    seed: int
    args: argparse.Namespace
    state: object

    def title(self):
        return f"{self.run}{recipe_note(self.run, self.args)}"

    def label(self, seeded):
        return f"{self.title()} seed {self.seed}" if seeded else self.title()

    def key(self):
        """The training's name among a sweep's files: its per-image CSV, job record and logs begin with it."""
        recipe = "" if self.run.recipe == "report" else f"_{self.run.recipe}"
        return f"{train.run_name(self.args)}{recipe}_seed{self.seed}"

    def is_finished(self):
        return self.state is not None and self.state.is_done(self.args)

    def is_tested(self):
        return self.is_finished() and test_result_path(self.args).exists()


def recipe_note(run, args):
    """' (loss=ce+dice, ...)' for a run of the report's recipe that the sweep's recipe flags changed, else ''."""
    flags = recipe_label(vars(args))
    return f" ({flags})" if run.recipe == "report" and flags != "report" else ""


def run_args(args, run, out, seed):
    """The train.py arguments of one run: the sweep's training flags, today's defaults for train.py's others; a
    run of another recipe than the report's keeps its files in subfolders named after it."""
    subfolder = "" if run.recipe == "report" else run.recipe
    train_args = vars(train.get_args_parser().parse_args([]))
    train_args.update({key: value for key, value in vars(args).items() if key in train_args})
    train_args.update(model_type=run.model_type, batch_size=run.batch_size, seed=seed, resume=None, overwrite=False,
                      save_dir=str(out / "saved_models" / subfolder), log_dir=str(out / "checkpoints" / subfolder))
    if not has_cbam(run.model_type):
        train_args["use_cbam"] = True  # the sweep's --no_cbam is for its runs of models with CBAM
    if run.recipe != "report":
        train_args.update(IMPROVED_RECIPE)
    if run.recipe == "pretrained":
        train_args.update(encoder_weights=args.improved_encoder_weights)
    return argparse.Namespace(**train_args)


def planned(args, run, seed, out):
    """The training of run with seed in the sweep folder out, as its files there say it stands now; with --seeds,
    each seed has its own seed<N>/ folder."""
    folder = out / f"seed{seed}" if args.seeds else out
    return Planned(run, seed, *resume_state(run_args(args, run, folder, seed), out))


def study_settings(args):
    """What a run is, as the sweep compares it with an earlier run in its folder: every train.py setting but where
    and how fast it runs and what the sweep sets per run; the dataset folder as an absolute path."""
    settings = {key: value for key, value in vars(args).items() if key not in WHERE_AND_HOW + SET_BY_SWEEP}
    return dict(settings, data_path=os.path.abspath(settings["data_path"]))


def resume_state(args, out):
    """(args as train.py would resume them, TrainingState) of a run with a *_last.pth; (args, None) without one.

    A sweep folder holds one study: a run trained with other settings (data, size, epochs, recipe, seed, --amp, ...)
    than the command asks for is an error, not a silent mix. Settings newer than the checkpoint are not compared.
    """
    last = train.output_paths(args)["last"]
    if not last.exists():
        return args, None
    checkpoint = load_checkpoint(last, "the sweep's checkpoint")
    recorded = training_args(checkpoint)
    recorded.update(train.relocated_paths(recorded, last))  # a moved or copied sweep folder finds its own data path
    filled = train.fill_runtime_defaults(argparse.Namespace(**vars(args)))
    asked = study_settings(filled)
    there = study_settings(argparse.Namespace(**{**vars(filled), **recorded}))
    changed = [f"{key} {there[key]!r} there, {asked[key]!r} now" for key in sorted(asked)
               if key in recorded and there[key] != asked[key]]
    if changed:
        raise ProjectError(f"the sweep folder {out} holds another study: {last} was trained with other settings than "
                           f"this command asks for ({'; '.join(changed)}). A sweep folder holds one study: give the "
                           "flags it was started with, another --out, or --restart to move the earlier study aside "
                           "and start afresh.")
    resumed = train.restore_args(argparse.Namespace(**dict(vars(args), resume=str(last))), checkpoint)
    return resumed, train.TrainingState(checkpoint)


def test_result_path(args):
    """Where a run's test result is kept, beside its history."""
    return Path(args.log_dir) / f"{train.run_name(args)}_test.json"


@contextmanager
def training_lock(item):
    """Hold the run's lock file while it trains and tests: a second process (another sweep command, a job submitted
    again) is refused instead of training the same files at the same time."""
    if fcntl is None:
        yield
        return
    folder = Path(item.args.log_dir)
    make_folder(folder)
    with open(folder / f".{item.key()}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ProjectError(f"{item.label(True)} is being trained by another process right now (its lock "
                               f"{lock.name} is held); wait for it, or stop that process first.") from None
        yield


def train_and_test(item, csv_dir):
    """Train a run unless it is finished (resuming from its *_last.pth), then test its best model once, appending
    to csv_dir/inference_result.csv and keeping the result beside the run's history."""
    with training_lock(item):
        args, state = item.args, item.state
        result_path = test_result_path(args)
        if item.is_finished():
            print(f"finished at epoch {state.epoch} (best epoch {state.best_epoch}); not trained again")
        else:
            result_path.unlink(missing_ok=True)  # training on may replace the best model
            train.main(args)
        best = train.output_paths(args)["best"]
        if result_path.exists():
            print(f"{best} is already tested: {result_path}")
            return json.loads(result_path.read_text())
        args = train.fill_runtime_defaults(argparse.Namespace(**vars(args)))
        row = inference.main(inference.get_args_parser().parse_args(
            ["--model", str(best), "--data_path", args.data_path, "--split", "test", "--batch_size",
             str(args.batch_size), "--device", args.device, "--log_dir", str(csv_dir), "--results_name", item.key(),
             *(["--no_cache"] if args.no_cache else []),
             *(["--num_workers", str(args.num_workers)] if args.num_workers is not None else [])]))
        save_json(row, result_path)
        return row
