import argparse

import pytest

import reproduce
import sweep
import train
from conftest import SAMPLE
from errors import ProjectError


def sweep_args(*flags):
    return reproduce.parse_args(["--quick", "--image_size", "32", "--device", "cpu", "-e", "1", *flags])


def test_a_training_is_named_after_its_run_recipe_and_seed(tmp_path):
    args = sweep_args("--seeds", "3")
    assert sweep.planned(args, sweep.Run("HRNet", 8), 3, tmp_path).key() == "HRNet_bs8_seed3"
    assert sweep.planned(args, sweep.Run("ResNet34_Unet", 8, "improved"), 3, tmp_path).key() == (
        "ResNet34_Unet_bs8_improved_seed3")


def test_each_seed_of_a_seeded_sweep_has_its_own_folder(tmp_path):
    item = sweep.planned(sweep_args("--seeds", "0", "1"), sweep.Run("Unet", 8), 1, tmp_path)
    assert item.args.save_dir == str(tmp_path / "seed1" / "saved_models")
    assert item.args.seed == 1 and item.state is None and not item.is_finished()


def test_a_run_held_by_another_process_is_refused_and_nothing_is_written(tmp_path, monkeypatch):
    item = sweep.planned(sweep_args(), sweep.Run("ResNet34_Unet", 8), 0, tmp_path)
    monkeypatch.setattr(train, "main", lambda args: pytest.fail("trained a run that another process holds"))
    with sweep.training_lock(item):  # another open file description: as another process would hold it
        with pytest.raises(ProjectError):
            sweep.train_and_test(item, tmp_path / "checkpoints")
    assert not (tmp_path / "checkpoints" / "inference_result.csv").exists()
    assert not sweep.test_result_path(item.args).exists()


def test_run_args_take_the_sweeps_training_flags_and_the_improved_recipe(tmp_path):
    args = sweep.run_args(sweep_args("--loss", "ce+dice"), sweep.Run("ResNet34_Unet", 8, "improved"), tmp_path, 4)
    assert isinstance(args, argparse.Namespace)
    assert (args.loss, args.schedule, args.learning_rate, args.seed) == ("ce+dice", "cosine", 2e-4, 4)
    assert args.data_path == str(SAMPLE) and args.log_dir == str(tmp_path / "checkpoints" / "improved")
