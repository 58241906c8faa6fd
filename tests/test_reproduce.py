import csv
import json
import shutil

import pytest
import torch
import torchvision

import compare
import reproduce
import train
from conftest import SAMPLE, interrupted_in_epoch, train_args
from errors import ProjectError
from recipes import IMPROVED_RECIPE, recipe_label
from sweep import run_args

RUNS = ["Unet_bs8", "Unet_bs16", "ResNet34_Unet_bs8", "ResNet34_Unet_bs16", "ResNet34_Unet_bs32"]
FIGURES = ["fig1_unet_batch_size.png", "fig2_resnet34_unet_batch_size.png", "fig3_unet_vs_resnet34_unet.png"]


def sweep(out, *flags):
    return reproduce.main(reproduce.parse_args(["--quick", "--image_size", "32", "--device", "cpu", "--out", str(out),
                                                *flags]))


def read_rows(out):
    with open(out / "checkpoints" / "inference_result.csv") as f:
        return list(csv.DictReader(f))


def read_history(out, name):
    return json.loads((out / "checkpoints" / f"{name}_history.json").read_text())


def no_training(*args, **kwargs):
    raise AssertionError("a finished run was trained again")


def untimed_sweep(out, runs):
    """A finished sweep of these runs; the time estimate, tested on a single run below, would add a third to it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reproduce, "seconds_per_epoch", lambda *args: 1.0)
        sweep(out, "--runs", runs)
    return out


@pytest.fixture(scope="module")
def quick_sweep(tmp_path_factory):
    return untimed_sweep(tmp_path_factory.mktemp("sweep"), reproduce.REPORT_RUNS)


@pytest.mark.slow
def test_the_quick_sweep_trains_tests_and_reports_every_run(quick_sweep):
    out = quick_sweep
    for name in RUNS:
        history = read_history(out, name)
        assert [row["epoch"] for row in history["history"]] == [1]
        assert history["args"]["image_size"] == 32 and history["args"]["data_path"] == str(SAMPLE)
    rows = read_rows(out)
    assert sorted(row["model"] for row in rows) == sorted(
        str(out / "saved_models" / f"{name}_best_model.pth") for name in RUNS)
    assert {row["split"] for row in rows} == {"test"}
    assert all((out / name).stat().st_size > 0 for name in FIGURES)
    text = (out / "REPORT.md").read_text()
    assert all(f"| {name} |" in text for name in RUNS)
    assert all(f"]({name})" in text for name in FIGURES)
    assert "report (published)" in text and "```" in text and "python src/reproduce.py --quick" in text


@pytest.mark.slow
def test_running_the_same_sweep_again_trains_and_tests_nothing(quick_sweep, monkeypatch, capsys):
    monkeypatch.setattr(train, "train_one_epoch", no_training)
    sweep(quick_sweep, "--runs", reproduce.REPORT_RUNS)
    assert len(read_rows(quick_sweep)) == 5
    assert capsys.readouterr().out.count("skipped") == 5


@pytest.mark.slow
def test_a_sweep_folder_refuses_other_training_settings(quick_sweep):
    with pytest.raises(ProjectError, match="loss 'ce' there, 'dice' now"):
        sweep(quick_sweep, "--loss", "dice")


@pytest.mark.slow
def test_a_run_stopped_after_its_first_epoch_is_resumed_not_restarted(tmp_path, capsys):
    with interrupted_in_epoch(2):
        with pytest.raises(SystemExit) as stop:
            sweep(tmp_path, "--runs", "ResNet34_Unet:32", "-e", "2")
    assert stop.value.code == 130
    first_epoch = read_history(tmp_path, "ResNet34_Unet_bs32")["history"]
    assert [row["epoch"] for row in first_epoch] == [1]
    capsys.readouterr()
    sweep(tmp_path, "--runs", "ResNet34_Unet:32", "-e", "2")
    plan = capsys.readouterr().out
    assert "run 1/1: ResNet34_Unet_bs32: resumes at epoch 2, 1 epoch at most" in plan and "Estimated time:" in plan
    history = read_history(tmp_path, "ResNet34_Unet_bs32")["history"]
    assert [row["epoch"] for row in history] == [1, 2] and history[0] == first_epoch[0]
    assert len(read_rows(tmp_path)) == 1


@pytest.mark.slow
def test_the_improved_and_pretrained_runs_keep_their_own_files_and_figure(tmp_path, monkeypatch):
    weights = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34().state_dict(), weights)
    monkeypatch.setattr(reproduce, "seconds_per_epoch", lambda *args: 1.0)
    sweep(tmp_path / "out", "--runs", "ResNet34_Unet:8", "--improved", "--encoder_weights", str(weights), "-e", "2")
    out = tmp_path / "out"
    for recipe, encoder in (("improved", None), ("pretrained", str(weights))):
        history = json.loads((out / "checkpoints" / recipe / "ResNet34_Unet_bs8_history.json").read_text())
        assert {key: history["args"][key] for key in IMPROVED_RECIPE} == IMPROVED_RECIPE
        assert history["args"]["encoder_weights"] == encoder
        assert (out / "saved_models" / recipe / "ResNet34_Unet_bs8_best_model.pth").exists()
    assert read_history(out, "ResNet34_Unet_bs8")["args"]["loss"] == "ce"
    for name in ("DeepLabV3Plus_bs8", "HRNet_bs8"):  # the proposed architectures, with the report's recipe
        assert (read_history(out, name)["args"]["loss"], read_history(out, name)["args"]["encoder_weights"]) == \
            ("ce", None)
    rows = read_rows(out)
    assert len(rows) == 5
    assert sorted(row["recipe"] for row in rows) == sorted(
        ["report"] * 3 + [recipe_label(IMPROVED_RECIPE), recipe_label(IMPROVED_RECIPE) +
                          f", pretrained encoder={weights}"])
    text = (out / "REPORT.md").read_text()
    assert "](fig4_improved.png)" in text and not (out / FIGURES[0]).exists()
    assert "Left out: Unet_bs8, Unet_bs16 not in --runs." in text
    assert "](fig5_architectures.png)" in text and "(Unet_bs8 not in --runs)" in text
    assert all(f"### {model}\n" in text for model in ("ResNet34_Unet", "DeepLabV3Plus", "HRNet"))
    assert all(f"| {name} |" in text for name in ("DeepLabV3Plus_bs8", "HRNet_bs8", "ResNet34_Unet_bs8 improved",
                                                   "ResNet34_Unet_bs8 pretrained"))


def test_the_improved_sweep_adds_the_proposed_architectures_once_and_the_improved_runs():
    runs = reproduce.sweep_runs(reproduce.parse_args(["--improved"]))
    assert [str(run) for run in runs] == [*RUNS, "DeepLabV3Plus_bs8", "HRNet_bs8", "ResNet34_Unet_bs8 improved"]
    runs = reproduce.sweep_runs(reproduce.parse_args(["--improved", "--runs", "hrnet:8,DeepLabV3Plus:16",
                                                      "--encoder_weights", "imagenet"]))
    assert [str(run) for run in runs] == ["HRNet_bs8", "DeepLabV3Plus_bs16", "DeepLabV3Plus_bs8",
                                          "ResNet34_Unet_bs8 improved", "ResNet34_Unet_bs8 pretrained"]


def test_no_cbam_in_a_sweep_switches_off_cbam_only_where_a_model_has_it(tmp_path):
    args = reproduce.parse_args(["--runs", "Unet:8,HRNet:8,ResNet34_Unet:8", "--no_cbam"])
    assert [run_args(args, run, tmp_path, args.seed).use_cbam for run in reproduce.sweep_runs(args)] == \
        [True, True, False]
    with pytest.raises(ProjectError, match="none of Unet:8,HRNet:8 does"):
        reproduce.sweep_runs(reproduce.parse_args(["--runs", "Unet:8,HRNet:8", "--no_cbam"]))


@pytest.mark.parametrize("item", ["VGG:8", "Unet", "Unet:0", "Unet:eight", ""])
def test_a_bad_runs_item_is_named_in_the_error(item):
    with pytest.raises(ProjectError, match=f"--runs item '{item}'"):
        reproduce.parse_runs(f"Unet:8,{item}")


@pytest.mark.parametrize("flags", [["--bogus", "1"], ["-b", "8"], ["--save_dir", "x"], ["--overwrite"],
                                   ["--model_type", "Unet"], ["--resume", "x_last.pth"], ["--seeds", "-1"]])
def test_flags_the_sweep_sets_for_each_run_are_refused_before_training(tmp_path, capsys, flags):
    with pytest.raises(SystemExit) as exit_info:
        sweep(tmp_path, *flags)
    assert exit_info.value.code == 2 and flags[0] in capsys.readouterr().err
    assert not (tmp_path / "saved_models").exists()


@pytest.mark.parametrize("flags, message", [
    (["--encoder_weights", "imagenet"], "add --improved"),
    (["--runs", "Unet:8,unet:8"], "twice"),
    (["--seeds", "0", "1", "0"], "twice"),
    (["--out", "taken_file"], "--out"),
    (["--runs", "ResNet34_Unet:8", "--improved", "-e", "1"], "warmup_epochs"),
    (["--improved", "-lr", "2e-4"], "learning_rate"),
])
def test_flags_the_sweep_cannot_honour_are_refused_before_training(tmp_path, flags, message, monkeypatch):
    (tmp_path / "taken_file").write_text("x")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ProjectError, match=message):
        sweep(tmp_path, *flags) if "--out" not in flags else reproduce.main(reproduce.parse_args(["--quick", *flags]))
    assert not (tmp_path / "saved_models").exists()


def test_quick_sets_defaults_that_flags_given_still_override():
    args = reproduce.parse_args(["--quick", "--image_size", "48"])
    assert (args.image_size, args.epochs, args.data_path) == (48, 1, str(SAMPLE))
    assert reproduce.parse_args([]).image_size == 256


@pytest.mark.slow
def test_seeds_train_each_run_per_seed_and_report_mean_deviation_and_the_paired_test(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce, "seconds_per_epoch", lambda *args: 1.0)
    sweep(tmp_path, "--runs", "Unet:8,ResNet34_Unet:8", "--seeds", "0", "1")
    for seed in (0, 1):
        for name in ("Unet_bs8", "ResNet34_Unet_bs8"):
            assert read_history(tmp_path / f"seed{seed}", name)["args"]["seed"] == seed
    assert len(read_rows(tmp_path)) == 4
    text = (tmp_path / "REPORT.md").read_text()
    assert text.count(" ± ") >= 12 and "| Unet_bs8 | 2 |" in text
    rows = {name: [row for row in read_rows(tmp_path) if row["model"].endswith(f"/{name}_best_model.pth")]
            for name in ("Unet_bs8", "ResNet34_Unet_bs8")}
    expected = compare.compare_files(*([row["per_image_csv"] for row in rows[name]] for name in rows))
    assert expected["seeds_a"] == expected["seeds_b"] == [0, 1] and expected["paired"]
    assert compare.interval_text(expected["seed_interval"]) in text and expected["verdict"] in text
    assert (tmp_path / "fig3_unet_vs_resnet34_unet.png").stat().st_size > 0


def test_the_time_estimate_runs_the_training_step_of_every_recipe(tmp_path):
    args = train_args(tmp_path, "--model_type", "DeepLabV3Plus", "--border", "ignore", "--cutmix", "1", "--mixup", "1",
                      "--loss", "ce+dice")
    assert reproduce.seconds_per_epoch(args, torch.device("cpu"), 16, 8) > 0


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory):
    """A finished one-run sweep of the smallest model (HRNet, 3.9 M parameters), cheap to copy."""
    return untimed_sweep(tmp_path_factory.mktemp("small") / "sweep", "HRNet:8")


@pytest.mark.slow
def test_a_sweeps_per_image_csv_is_named_after_its_run_and_seed(small_sweep):
    assert len(list((small_sweep / "checkpoints").glob("HRNet_bs8_seed0_test_*_per_image.csv"))) == 1


@pytest.mark.slow
@pytest.mark.parametrize("flags", [["-e", "2"], ["--data_path", "elsewhere"], ["--amp"], ["--seed", "1"],
                                   ["--no_augment"]])
def test_a_sweep_folder_refuses_a_command_that_changes_what_its_runs_are(small_sweep, flags):
    files = {path: path.stat().st_mtime_ns for path in small_sweep.rglob("*")}
    with pytest.raises(ProjectError, match=str(small_sweep)):
        sweep(small_sweep, "--runs", "HRNet:8", *flags)
    assert {path: path.stat().st_mtime_ns for path in small_sweep.rglob("*")} == files


@pytest.mark.slow
def test_a_copied_sweep_folder_reports_from_its_own_files(small_sweep, tmp_path, monkeypatch):
    copy = tmp_path / "copy"
    shutil.copytree(small_sweep, copy)
    monkeypatch.setattr(train, "train_one_epoch", no_training)
    sweep(copy, "--runs", "HRNet:8")
    text = (copy / "REPORT.md").read_text()
    assert str(small_sweep) not in text and str(copy / "saved_models" / "HRNet_bs8_best_model.pth") in text


@pytest.mark.slow
def test_restart_moves_the_earlier_study_aside_and_starts_afresh(small_sweep, tmp_path, monkeypatch):
    copy = tmp_path / "sweep"
    shutil.copytree(small_sweep, copy)
    started = []
    monkeypatch.setattr(reproduce, "train_and_test", lambda item, csv_dir: started.append(item.state))
    monkeypatch.setattr(reproduce, "write_report", lambda *args: copy / "REPORT.md")
    monkeypatch.setattr(reproduce, "seconds_per_epoch", lambda *args: 1.0)
    sweep(copy, "--runs", "HRNet:8", "-e", "2", "--restart")
    (aside,) = tmp_path.glob("sweep.before-*")
    assert (aside / "saved_models" / "HRNet_bs8_best_model.pth").exists() and (aside / "REPORT.md").exists()
    assert started == [None] and not (copy / "saved_models").exists()


def test_runs_of_the_reports_recipe_changed_by_the_sweeps_flags_are_labelled_by_them(tmp_path):
    args = reproduce.parse_args(["--runs", "ResNet34_Unet:8", "--loss", "ce+dice", "--cutmix", "0.5"])
    (item,) = reproduce.sweep_plan(args, reproduce.sweep_runs(args), tmp_path)
    assert item.label(seeded=False) == "ResNet34_Unet_bs8 (loss=ce+dice, cutmix=0.5)"
    plain = reproduce.parse_args(["--runs", "ResNet34_Unet:8"])
    assert reproduce.sweep_plan(plain, reproduce.sweep_runs(plain), tmp_path)[0].label(True) == \
        "ResNet34_Unet_bs8 seed 0"
