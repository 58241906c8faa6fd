import pytest
import torch

from checkpoint import load_checkpoint, save_checkpoint, training_args
from errors import ProjectError


def test_checkpoint_round_trip_and_damaged_files(tmp_path):
    path = tmp_path / "model.pth"
    save_checkpoint({"model": {"w": torch.ones(2)}, "args": {"lr": 1e-4}}, path)
    assert load_checkpoint(path)["args"] == {"lr": 1e-4}
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[:100])
    for bad in (truncated, tmp_path / "missing.pth"):
        with pytest.raises(ProjectError, match=bad.name):
            load_checkpoint(bad)


def test_checkpoint_with_pickled_objects_is_refused(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"args": ProjectError("an arbitrary object")}, path)
    with pytest.raises(ProjectError, match="pickled objects"):
        load_checkpoint(path)


def test_older_checkpoints_give_the_cbam_setting_under_its_one_name():
    assert training_args({"args": {"no_cbam": True, "batch_size": 8}}) == {"use_cbam": False, "batch_size": 8}
    assert training_args({"args": {"use_cbam": True}}) == {"use_cbam": True}
