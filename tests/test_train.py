import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import train
from checkpoint import load_checkpoint
from conftest import ROOT, SAMPLE, interrupted_in_epoch, train_args
from data import NORMALIZATION, normalize_images
from errors import ProjectError
from losses import compute_loss
from optimization import cosine_factor
from models import build_model, load_trained_model


def test_a_run_writes_best_model_last_checkpoint_and_history(trained):
    root, _ = trained
    best = load_checkpoint(root / "saved_models" / "ResNet34_Unet_bs8_best_model.pth")
    last = load_checkpoint(root / "saved_models" / "ResNet34_Unet_bs8_last.pth")
    history = json.loads((root / "checkpoints" / "ResNet34_Unet_bs8_history.json").read_text())
    assert best["model_record"] == {"model_type": "ResNet34_Unet", "use_cbam": True, "num_classes": 2,
                                    "image_size": 32, "normalization": NORMALIZATION}
    assert {"optimizer", "scheduler", "scaler", "epochs_without_improvement"} <= set(last)
    assert [row["epoch"] for row in history["history"]] == [1, 2] and last["epoch"] == 2
    assert set(history["history"][0]) >= {"epoch", "train_loss", "val_loss", "val_dice", "val_iou", "lr", "seconds"}
    assert history["best_val_dice"] == max(row["val_dice"] for row in history["history"])
    assert history["args"]["model_type"] == "ResNet34_Unet"
    build_model("ResNet34_Unet").load_state_dict(best["model"])


@pytest.mark.slow
def test_resume_continues_exactly_where_an_uninterrupted_run_would_be(trained, tmp_path):
    train.main(train_args(tmp_path, "--model_type", "ResNet34_Unet", "-e", "1"))
    last = tmp_path / "saved_models" / "ResNet34_Unet_bs8_last.pth"
    train.main(train_args(tmp_path, "--resume", str(last), "-e", "2"))
    uninterrupted, resumed = (json.loads((root / "checkpoints" / "ResNet34_Unet_bs8_history.json")
                                         .read_text())["history"] for root in (trained[0], tmp_path))
    assert [row["epoch"] for row in resumed] == [1, 2]
    for a, b in zip(uninterrupted, resumed):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_dice"] == pytest.approx(b["val_dice"], rel=1e-5)


def test_a_best_model_cannot_be_resumed(trained, tmp_path):
    with pytest.raises(ProjectError, match="not a \\*_last.pth"):
        train.main(train_args(tmp_path, "--resume", str(trained[1])))


def test_early_stopping_after_patience_epochs_without_improvement(tmp_path, monkeypatch):
    scores = iter([0.5, 0.4, 0.4, 0.3, 0.6])
    monkeypatch.setattr(train, "evaluate", lambda *a, **k: {"loss": 1.0, "dice": next(scores), "iou": 0.1})
    monkeypatch.setattr(train, "train_one_epoch", lambda *a, **k: 1.0)
    state = train.main(train_args(tmp_path, "--model_type", "ResNet34_Unet", "-e", "10", "--patience", "3"))
    assert state.epoch == 4 and state.best_epoch == 1


@pytest.mark.slow
def test_nan_loss_stops_the_run_without_saving(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "compute_loss", lambda *a: compute_loss(*a) * float("nan"))
    with pytest.raises(ProjectError, match="loss became nan"):
        train.main(train_args(tmp_path, "--model_type", "ResNet34_Unet"))
    assert not (tmp_path / "saved_models" / "ResNet34_Unet_bs8_best_model.pth").exists()


def test_ctrl_c_exits_cleanly_and_keeps_the_last_epoch(trained, tmp_path, monkeypatch, capsys):
    last = trained[0] / "saved_models" / "ResNet34_Unet_bs8_last.pth"
    before = last.read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "train_one_epoch", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        train.main(train_args(tmp_path, "--resume", str(last), "-e", "3"))
    assert exit_info.value.code == 130
    assert "--resume" in capsys.readouterr().out
    assert last.read_bytes() == before


@pytest.mark.slow
def test_a_new_run_never_replaces_an_earlier_one_unless_asked(trained, tmp_path):
    shutil.copytree(trained[0], tmp_path, dirs_exist_ok=True)
    with pytest.raises(ProjectError, match="--resume .*--overwrite"):
        train.main(train_args(tmp_path, "--model_type", "ResNet34_Unet"))
    train.main(train_args(tmp_path, "--model_type", "ResNet34_Unet", "--overwrite"))
    assert load_checkpoint(tmp_path / "saved_models" / "ResNet34_Unet_bs8_last.pth")["epoch"] == 1


def test_runs_without_cbam_have_their_own_file_names(tmp_path):
    args = train_args(tmp_path, "--model_type", "ResNet34_Unet", "--no_cbam")
    assert train.output_paths(args)["best"].name == "ResNet34_Unet_nocbam_bs8_best_model.pth"
    for model_type in ("Unet", "DeepLabV3Plus", "HRNet"):
        assert train.run_name(train_args(tmp_path, "--model_type", model_type)) == f"{model_type}_bs8"


@pytest.mark.parametrize("model_type, flags, message", [
    ("Unet", ["--encoder_weights", "imagenet"], "ResNet34 encoder"),
    ("HRNet", ["--encoder_weights", "imagenet"], "ResNet34 encoder"),
    ("Unet", ["--no_cbam"], "no CBAM"),
    ("DeepLabV3Plus", ["--no_cbam"], "no CBAM"),
    ("HRNet", ["--no_cbam"], "no CBAM"),
])
def test_flags_for_parts_a_model_lacks_are_refused_before_training(tmp_path, model_type, flags, message):
    with pytest.raises(ProjectError, match=message) as error:
        train.main(train_args(tmp_path, "--model_type", model_type, *flags))
    assert "\n" not in str(error.value) and model_type in str(error.value)
    assert not (tmp_path / "saved_models").exists()


def test_channels_last_training_step_matches_the_default_layout():
    torch.manual_seed(0)
    images = normalize_images(torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8), **NORMALIZATION)
    masks = torch.randint(0, 2, (2, 64, 64))
    reference = build_model("ResNet34_Unet")
    results = []
    for memory_format in (torch.contiguous_format, torch.channels_last):
        model = build_model("ResNet34_Unet").to(memory_format=memory_format)
        model.load_state_dict(reference.state_dict())
        loss = compute_loss("ce", model(images.contiguous(memory_format=memory_format)), masks)
        loss.backward()
        results.append((loss.item(), [p.grad for p in model.parameters()]))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    for a, b in zip(results[0][1], results[1][1]):
        assert (a - b).norm() <= 1e-2 * a.norm() + 1e-7


def test_the_optimizer_is_the_reports_adam_with_the_fused_update(tmp_path):
    training = train.build_training(train_args(tmp_path, "--model_type", "Unet", "-lr", "3e-4"), torch.device("cpu"))
    assert isinstance(training.optimizer, torch.optim.Adam)
    assert training.optimizer.param_groups[0]["lr"] == 3e-4 and training.optimizer.param_groups[0]["fused"]
    assert training.scheduler.mode == "max" and not training.scaler.is_enabled()
    assert training.step_model is training.model


def test_on_resume_a_typed_runtime_flag_wins_even_at_its_default_value():
    saved = vars(train.fill_runtime_defaults(train.get_args_parser().parse_args(
        ["--device", "cpu", "-e", "3", "--num_workers", "2", "--no_cbam", "-lr", "1e-3"])))
    checkpoint = {"args": saved}
    typed = train.restore_args(train.get_args_parser().parse_args(
        ["--resume", "x_last.pth", "--device", "auto", "-e", "50"]), checkpoint)
    assert (typed.device, typed.epochs, typed.num_workers) == ("auto", 50, 2)
    assert (typed.learning_rate, typed.use_cbam, typed.resume) == (1e-3, False, "x_last.pth")
    untyped = train.restore_args(train.get_args_parser().parse_args(["--resume", "x_last.pth"]), checkpoint)
    assert (untyped.device, untyped.epochs) == ("cpu", 3)


def test_bad_flags_exit_with_a_message_not_a_traceback(tmp_path):
    for flags in (["-b", "0"], ["-e", "0"], ["--model_type", "resnet50"]):
        with pytest.raises(SystemExit) as exit_info:
            train.get_args_parser().parse_args(flags)
        assert exit_info.value.code == 2, flags
    result = subprocess.run([sys.executable, "src/train.py", "--data_path", str(tmp_path / "nothing"),
                             "--resume", str(tmp_path / "missing_last.pth")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "missing_last.pth" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_torchrun_with_two_cpu_processes_writes_one_model_that_loads_single_process(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "src/train.py",
               "--data_path", str(SAMPLE), "--model_type", "ResNet34_Unet", "--image_size", "32", "-b", "4", "-e", "1",
               "--num_workers", "0", "--device", "cpu", "--save_dir", str(tmp_path / "saved_models"),
               "--log_dir", str(tmp_path / "checkpoints")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("epoch 1/1:") == 1
    assert "2 processes" in result.stdout
    assert sorted(p.name for p in (tmp_path / "saved_models").iterdir()) == ["ResNet34_Unet_bs4_best_model.pth",
                                                                              "ResNet34_Unet_bs4_last.pth"]
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["ResNet34_Unet_bs4_history.json"]
    best = tmp_path / "saved_models" / "ResNet34_Unet_bs4_best_model.pth"
    _, checkpoint = load_trained_model(best, torch.device("cpu"))
    assert not any(key.startswith("module.") for key in checkpoint["model"])


RECIPE_FLAGS = ["--model_type", "DeepLabV3Plus", "--cutmix", "0.5", "--mixup", "0.5", "--border", "ignore",
                "--schedule", "cosine", "--warmup_epochs", "1", "--weight_decay", "0.01", "--loss", "ce+dice"]


@pytest.mark.slow
def test_resuming_a_run_with_the_new_recipe_repeats_the_uninterrupted_one(tmp_path):
    uninterrupted = train.main(train_args(tmp_path / "a", *RECIPE_FLAGS, "-e", "3")).history
    with interrupted_in_epoch(2):
        with pytest.raises(SystemExit):
            train.main(train_args(tmp_path / "b", *RECIPE_FLAGS, "-e", "3"))
    last = tmp_path / "b" / "saved_models" / "DeepLabV3Plus_bs8_last.pth"
    resumed = train.main(train.get_args_parser().parse_args(["--resume", str(last)]))
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    for a, b in zip(uninterrupted, resumed.history):
        assert a["lr"] == b["lr"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_dice"] == pytest.approx(b["val_dice"], rel=1e-5)
    assert [row["lr"] for row in uninterrupted] == pytest.approx([0.5e-4, 1e-4, 0.5e-4])
    history = json.loads((tmp_path / "b" / "checkpoints" / "DeepLabV3Plus_bs8_history.json").read_text())
    assert {key: history["args"][key] for key in ("cutmix", "mixup", "border", "schedule", "weight_decay")} == {
        "cutmix": 0.5, "mixup": 0.5, "border": "ignore", "schedule": "cosine", "weight_decay": 0.01}


def test_a_training_batch_ignores_the_border_before_mixing(tmp_path):
    args = train_args(tmp_path, "--border", "ignore", "--cutmix", "1")
    trimaps = torch.tensor([1, 2, 3]).repeat(2, 4, 1)
    batch = {"image": torch.zeros(2, 3, 4, 3, dtype=torch.uint8), "mask": (trimaps != 2).to(torch.uint8),
             "trimap": trimaps}
    mixed = train.training_batch(batch, torch.device("cpu"), args, np.random.default_rng(0))
    assert (mixed.masks[..., 2] == -100).all() and (mixed.masks[..., 0] == 1).all() and (mixed.masks[..., 1] == 0).all()


@pytest.mark.parametrize("flags", [["--schedule", "cosine", "--warmup_epochs", "1"],
                                   ["--warmup_epochs", "1", "-e", "5"], ["--mixup_alpha", "1", "-e", "5"]])
def test_recipe_combinations_that_cannot_work_are_refused_before_training(tmp_path, flags):
    with pytest.raises(ProjectError):
        train.main(train_args(tmp_path, *flags))
    assert not (tmp_path / "saved_models").exists()


def copy_of_trained_run(trained, tmp_path):
    shutil.copytree(trained[0], tmp_path / "run")
    return tmp_path / "run" / "saved_models" / "ResNet34_Unet_bs8_last.pth"


def modified(last, change):
    checkpoint = load_checkpoint(last)
    change(checkpoint)
    torch.save(checkpoint, last)
    return last


@pytest.mark.parametrize("change", [
    lambda c: c["optimizer"]["state"][0].update(exp_avg=torch.zeros(3, 3)),
    lambda c: c["optimizer"]["param_groups"][0]["params"].pop(),
    lambda c: c["model"].update({"encoder.conv1.weight": torch.zeros(2, 2)}),
    lambda c: c["model"].pop("encoder.conv1.weight"),
    lambda c: c.pop("args"),
    lambda c: c.update(args={"unrelated": 1}),
    lambda c: c.update(scheduler="junk"),
], ids=["optimizer shape", "optimizer count", "model shape", "model key", "no args", "foreign args", "scheduler"])
def test_a_modified_checkpoint_is_refused_before_anything_uses_it(trained, tmp_path, monkeypatch, change):
    last = modified(copy_of_trained_run(trained, tmp_path), change)
    monkeypatch.setattr(train, "train_one_epoch", lambda *a, **k: pytest.fail("trained on a refused checkpoint"))
    with pytest.raises(ProjectError, match="--resume"):
        train.main(train_args(tmp_path, "--resume", str(last), "-e", "3"))


def test_a_diverging_run_keeps_its_last_good_files(trained, tmp_path, monkeypatch):
    last = copy_of_trained_run(trained, tmp_path)
    before = {path: path.read_bytes() for path in (tmp_path / "run").rglob("*") if path.is_file()}

    def diverging(training, *args):
        batchnorm = next(m for m in training.model.modules() if isinstance(m, torch.nn.BatchNorm2d))
        batchnorm.running_var.fill_(float("inf"))
        return 0.5

    monkeypatch.setattr(train, "train_one_epoch", diverging)
    with pytest.raises(ProjectError, match="diverged in epoch 3"):
        train.main(train.get_args_parser().parse_args(["--resume", str(last), "-e", "3"]))
    assert {path: path.read_bytes() for path in (tmp_path / "run").rglob("*") if path.is_file()} == before


def test_resume_continues_the_runs_own_files_from_any_folder(trained, tmp_path, monkeypatch):
    last = copy_of_trained_run(trained, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(train, "train_one_epoch", lambda *a, **k: 0.5)
    # an older checkpoint: its folders recorded relative to where its training started (tmp_path/run)
    modified(last, lambda c: c["args"].update(save_dir="saved_models", log_dir="checkpoints",
                                              data_path=os.path.relpath(SAMPLE, tmp_path / "run")))
    train.main(train.get_args_parser().parse_args(["--resume", os.path.relpath(last), "-e", "3"]))
    history = json.loads((tmp_path / "run" / "checkpoints" / "ResNet34_Unet_bs8_history.json").read_text())
    assert [row["epoch"] for row in history["history"]] == [1, 2, 3]
    assert os.listdir(elsewhere) == []
    assert history["args"]["data_path"] == str(SAMPLE) and history["args"]["save_dir"] == str(last.parent)


@pytest.mark.parametrize("flag", ["--save_dir", "--log_dir"])
def test_an_output_folder_that_is_a_file_is_refused_before_training(tmp_path, flag, monkeypatch):
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    monkeypatch.setattr(train, "build_loaders", lambda *a: pytest.fail("started before refusing"))
    with pytest.raises(ProjectError, match=flag):
        train.main(train_args(tmp_path, flag, str(taken)))


def test_ctrl_c_while_saving_names_the_epoch_on_disk(trained, tmp_path, monkeypatch, capsys):
    last = copy_of_trained_run(trained, tmp_path)
    monkeypatch.setattr(train, "train_one_epoch", lambda *a, **k: 0.5)

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "save_epoch", killed)
    with pytest.raises(SystemExit):
        train.main(train.get_args_parser().parse_args(["--resume", str(last), "-e", "3"]))
    out = capsys.readouterr().out
    assert "epoch (2)" in out and "epoch (3)" not in out
    assert load_checkpoint(last)["epoch"] == 2


@pytest.mark.parametrize("flags", [["--seed", "-1"], ["--num_workers", "-1"], ["--image_size", "8"],
                                   ["--image_size", "100000"], ["--lr_patience", "-1"], ["-lr", "-1"],
                                   ["--patience", "0"], ["-b", "0"], ["-e", "0"], ["--cutmix", "1.5"],
                                   ["--mixup", "-0.1"], ["--mixup_alpha", "-1"], ["--mixup_alpha", "0"],
                                   ["--weight_decay", "-1"], ["--warmup_epochs", "-1"], ["--schedule", "step"],
                                   ["--border", "trimap"], ["-lr", "nan"]])
def test_flag_values_out_of_range_are_refused_when_parsed(flags, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.get_args_parser().parse_args(flags)
    assert exit_info.value.code == 2 and flags[0] in capsys.readouterr().err


def test_a_batch_of_one_at_the_smallest_size_is_refused(tmp_path):
    with pytest.raises(ProjectError, match="-b 1"):
        train.main(train_args(tmp_path, "-b", "1"))


def fast_epochs(monkeypatch, scores=None):
    """Epochs without training or evaluating: validation Dice from `scores` (rising by default)."""
    scores = iter(scores or [0.1 * step for step in range(1, 50)])
    monkeypatch.setattr(train, "evaluate", lambda *a, **k: {"loss": 1.0, "dice": next(scores), "iou": 0.1})
    monkeypatch.setattr(train, "train_one_epoch", lambda *a, **k: 1.0)


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")  # no optimizer step here
def test_an_extended_cosine_run_continues_on_the_cosine_of_its_new_length(tmp_path, monkeypatch):
    fast_epochs(monkeypatch)
    flags = ("--schedule", "cosine", "--warmup_epochs", "1", "-lr", "1e-3")
    finished = train.main(train_args(tmp_path, *flags, "-e", "4"))
    assert [row["lr"] for row in finished.history] == pytest.approx([1e-3 * cosine_factor(k, 4, 1) for k in range(4)])
    last = tmp_path / "saved_models" / "ResNet34_Unet_bs8_last.pth"
    extended = train.main(train.parse_args(["--resume", str(last), "-e", "7"]))
    new_rates = [row["lr"] for row in extended.history[4:]]
    assert [row["epoch"] for row in extended.history] == list(range(1, 8))
    assert new_rates == pytest.approx([1e-3 * cosine_factor(k, 7, 1) for k in range(4, 7)])
    assert min(new_rates) > 1e-5


@pytest.mark.parametrize("flags", [["-lr", "1e-3"], ["--image_size", "128"], ["--model_type", "Unet"],
                                   ["-lr", "1e-4"], ["--loss", "ce"], ["-b", "8"], ["--no_cbam"], ["--overwrite"]])
def test_on_resume_a_flag_that_changes_the_run_is_refused_even_at_the_checkpoints_value(flags):
    with pytest.raises(SystemExit) as exit_info:
        train.parse_args(["--resume", "x_last.pth", *flags])
    assert exit_info.value.code == 2


def test_on_resume_the_runtime_flags_apply(trained, tmp_path):
    args = train.parse_args(["--resume", "x_last.pth", "-e", "3", "--device", "cpu", "--amp", "--no_channels_last",
                             "--num_workers", "0", "--data_path", str(SAMPLE)])
    checkpoint = {"args": vars(train.fill_runtime_defaults(train_args(tmp_path)))}
    restored = train.restore_args(args, checkpoint)
    assert (restored.epochs, restored.amp, restored.no_channels_last) == (3, True, True)
    assert not train.restore_args(train.parse_args(["--resume", "x_last.pth"]), checkpoint).amp


def test_a_run_resumed_with_amp_continues_under_it(tmp_path):
    train.main(train_args(tmp_path, "--model_type", "HRNet", "-e", "1"))
    last = tmp_path / "saved_models" / "HRNet_bs8_last.pth"
    state = train.main(train.parse_args(["--resume", str(last), "-e", "2", "--amp"]))
    assert [row["epoch"] for row in state.history] == [1, 2]
    assert load_checkpoint(last)["args"]["amp"] is True


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_resuming_an_early_stopped_run_for_more_epochs_is_refused_and_a_finished_one_trains_nothing(
        tmp_path, monkeypatch):
    fast_epochs(monkeypatch, [0.5, 0.4, 0.4])
    train.main(train_args(tmp_path, "-e", "10", "--patience", "2"))
    last = tmp_path / "saved_models" / "ResNet34_Unet_bs8_last.pth"
    before = last.read_bytes()
    with pytest.raises(ProjectError):
        train.main(train.parse_args(["--resume", str(last), "-e", "20"]))
    fast_epochs(monkeypatch)
    train.main(train_args(tmp_path / "done", "-e", "2"))
    done = tmp_path / "done" / "saved_models" / "ResNet34_Unet_bs8_last.pth"
    done_before = done.read_bytes()
    assert train.main(train.parse_args(["--resume", str(done)])).epoch == 2
    assert last.read_bytes() == before and done.read_bytes() == done_before


def test_sync_bn_in_a_single_process_is_refused_rather_than_ignored(tmp_path):
    with pytest.raises(ProjectError):
        train.build_training(train_args(tmp_path, "--sync_bn"), torch.device("cpu"))
