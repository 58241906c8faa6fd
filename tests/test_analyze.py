import shutil

import pytest
import torch
from PIL import Image

import analyze
import inference
import per_image
from conftest import SAMPLE
from errors import ProjectError


def test_breed_tables_chart_and_gallery_from_a_per_image_csv_alone(trained, tmp_path):
    _, model = trained
    row = inference.main(inference.get_args_parser().parse_args([
        "--model", str(model), "--data_path", str(SAMPLE), "--device", "cpu", "--num_workers", "0",
        "--log_dir", str(tmp_path)]))
    out = analyze.main(analyze.get_args_parser().parse_args([row["per_image_csv"], "-k", "3", "--device", "cpu"]))
    text = (out / "breeds.md").read_text()
    assert "| cat |" in text and "| dog |" in text and "Abyssinian" in text
    assert Image.open(out / "dice_per_breed.png").size[1] > 200
    assert Image.open(out / "worst_images.png").size[0] > 300


def write_results(path, source):
    rows = [dict.fromkeys(per_image.COLUMNS, 1) | {"name": "Abyssinian_1", "species": "cat", "breed": "Abyssinian"}]
    per_image.write(path, rows, source)
    return path


SOURCE = {"model": "gone.pth", "data_path": str(SAMPLE), "split": "test", "resolution": "input", "tta": False}


def never_load(*args, **kwargs):
    raise AssertionError("the model was read")


def test_an_out_that_is_a_file_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(analyze, "load_model", never_load)
    csv_path = write_results(tmp_path / "m_per_image.csv", SOURCE)
    existing = tmp_path / "notes.txt"
    existing.write_text("a file")
    with pytest.raises(ProjectError, match="notes.txt"):
        analyze.main(analyze.get_args_parser().parse_args([str(csv_path), "--out", str(existing)]))


def test_a_source_without_the_model_or_dataset_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(analyze, "load_model", never_load)
    csv_path = write_results(tmp_path / "m_per_image.csv", {"split": "test"})
    with pytest.raises(ProjectError, match="m_per_image.json"):
        analyze.main(analyze.get_args_parser().parse_args([str(csv_path)]))
    assert not (tmp_path / "m_per_image_analysis").exists()


@pytest.mark.parametrize("argv", [["-k", "0"], ["--worst", "-2"], ["-k", "many"]])
def test_bad_numbers_exit_with_code_2(argv):
    with pytest.raises(SystemExit) as exit_info:
        analyze.get_args_parser().parse_args(["m_per_image.csv", *argv])
    assert exit_info.value.code == 2


def test_the_gallery_is_refused_when_the_model_file_was_replaced_after_the_test(trained, tmp_path):
    _, model = trained
    copy = tmp_path / "m_best_model.pth"
    shutil.copy(model, copy)
    row = inference.main(inference.get_args_parser().parse_args([
        "--model", str(copy), "--data_path", str(SAMPLE), "--device", "cpu", "--num_workers", "0",
        "--log_dir", str(tmp_path)]))
    checkpoint = torch.load(copy, weights_only=True)
    checkpoint["epoch"] += 1  # the same name, another file: a run trained again under it
    torch.save(checkpoint, copy)
    with pytest.raises(ProjectError):
        analyze.main(analyze.get_args_parser().parse_args([row["per_image_csv"], "-k", "3", "--device", "cpu"]))
    assert not list(tmp_path.glob("*_analysis/worst_images.png"))
