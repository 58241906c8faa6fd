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


def test_checkpoint_with_pickled_objects_is_refused_without_advice_to_unpickle_them(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"args": ProjectError("an arbitrary object")}, path)
    with pytest.raises(ProjectError, match="pickled objects") as error:
        load_checkpoint(path)
    assert "weights_only=False" not in str(error.value)


def test_an_onnx_file_where_a_checkpoint_is_needed_is_refused_before_torch_reads_it(tmp_path, monkeypatch):
    onnx_file = tmp_path / "model.onnx"
    onnx_file.write_bytes(b"\x08\x07")
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: pytest.fail("torch.load read an ONNX file"))
    with pytest.raises(ProjectError, match="model.onnx"):
        load_checkpoint(onnx_file, "--resume")


def test_older_checkpoints_give_the_cbam_setting_under_its_one_name():
    assert training_args({"args": {"no_cbam": True, "batch_size": 8}}) == {"use_cbam": False, "batch_size": 8}
    assert training_args({"args": {"use_cbam": True}}) == {"use_cbam": True}
