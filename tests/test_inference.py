import csv
import hashlib
import subprocess
from datetime import datetime
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import inference
import per_image
import train
from conftest import ROOT, SAMPLE, foreign_onnx_file, train_args
from data import NORMALIZATION
from errors import ProjectError, run_cli


def inference_args(out, *extra):
    return inference.get_args_parser().parse_args([
        "--data_path", str(SAMPLE), "--num_workers", "0", "--device", "cpu", "--log_dir", str(out),
        "--save_dir", str(out / "saved_models"), *extra])


def test_test_split_rows_are_appended_and_pictures_written(trained, tmp_path):
    _, model = trained
    first = inference.main(inference_args(tmp_path, "--model", str(model), "--visualize", "--num_visualize", "3"))
    inference.main(inference_args(tmp_path, "--model", str(model), "--tta"))
    with open(tmp_path / "inference_result.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    assert rows[0]["model_type"] == "ResNet34_Unet" and rows[0]["batch_size"] == "8"
    assert rows[0]["split"] == "test" and int(rows[0]["num_images"]) == first["num_images"] > 0
    assert float(rows[0]["dice"]) == pytest.approx(first["dice"], abs=1e-6)
    assert [row["tta"] for row in rows] == ["False", "True"]
    pictures = sorted(tmp_path.glob("vis_result_*.png"))
    assert len(pictures) == 3 and Image.open(pictures[0]).size[0] > 100
    per_image_rows, source = per_image.read(rows[0]["per_image_csv"])
    assert len(per_image_rows) == first["num_images"] == source["images"] and source["model"] == str(model.resolve())
    assert source["model_bytes"] == model.stat().st_size and source["model_sha256"] == hashlib.sha256(
        model.read_bytes()).hexdigest()
    assert source["image_size"] == 32 and source["args"]["seed"] == 0
    assert source["args"]["model_type"] == "ResNet34_Unet"
    assert rows[0]["per_image_csv"] != rows[1]["per_image_csv"] and rows[0]["resolution"] == "input"
    assert rows[0]["recipe"] == "report"
    assert float(rows[0]["boundary_iou"]) == pytest.approx(np.mean([row["boundary_iou"] for row in per_image_rows]),
                                                          abs=1e-5)


def test_full_resolution_is_recorded_in_the_row_and_the_per_image_file(trained, tmp_path):
    _, model = trained
    row = inference.main(inference_args(tmp_path, "--model", str(model), "--full_resolution"))
    assert row["resolution"] == "original"
    rows, source = per_image.read(row["per_image_csv"])
    assert source["resolution"] == "original" and max(r["width"] for r in rows) > 32


def test_without_model_the_newest_best_model_is_used(trained):
    root, model = trained
    assert inference.newest_best_model(root / "saved_models") == model


def test_flags_that_disagree_with_the_checkpoint_are_refused(trained, tmp_path):
    _, model = trained
    with pytest.raises(ProjectError, match="disagrees"):
        inference.main(inference_args(tmp_path, "--model", str(model), "--model_type", "Unet"))
    with pytest.raises(ProjectError, match="without CBAM|with CBAM"):
        inference.main(inference_args(tmp_path, "--model", str(model), "--no_cbam"))


def test_own_pictures_get_masks_at_their_original_size(trained, tmp_path):
    _, model = trained
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((45, 70, 3), 120, np.uint8)).save(photos / "cat.jpg")
    Image.fromarray(np.full((30, 20), 90, np.uint8)).save(photos / "dog.png")
    (photos / "notes.txt").write_text("not an image")
    inference.main(inference_args(tmp_path, "--model", str(model), "--images", str(photos),
                                  "--output_dir", str(tmp_path / "out")))
    mask = np.array(Image.open(tmp_path / "out" / "cat_mask.png"))
    assert mask.shape == (45, 70) and set(np.unique(mask)) <= {0, 255}
    assert Image.open(tmp_path / "out" / "dog_overlay.png").size == (20, 30)


class NoPetNet(torch.nn.Module):
    """Predicts background everywhere, so an overlay is its picture unchanged."""

    def forward(self, images):
        background = torch.full_like(images[:, :1], 10.0)
        return torch.cat([background, -background], dim=1)


RECORD = {"image_size": 32, "normalization": NORMALIZATION}


def predict_pictures(paths, out):
    return inference.predict_files(NoPetNet(), RECORD, inference.expand_image_paths(map(str, paths)), out,
                                   torch.device("cpu"), tta=False)


def save_picture(path, height, width):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), 100, np.uint8)).save(path)
    return path


def test_pictures_of_the_same_name_never_overwrite_each_others_outputs(tmp_path, capsys):
    one, two = tmp_path / "one", tmp_path / "two"
    # Each picture has its own size, so each output can be told from the others; a_2 is what a second a becomes.
    pictures = [save_picture(one / "a_2.png", 10, 11), save_picture(one / "a.png", 12, 13),
                save_picture(two / "a.png", 14, 15), save_picture(one / "a.jpg", 16, 17),
                save_picture(one / "a_1.png", 18, 19), save_picture(two / "A.png", 20, 21)]
    out = tmp_path / "out"
    assert predict_pictures([*pictures, one / "a.png"], out) == len(pictures)
    assert f"of {len(pictures)} images" in capsys.readouterr().out
    masks, overlays = sorted(out.glob("*_mask.png")), sorted(out.glob("*_overlay.png"))
    assert len(masks) == len(overlays) == len(pictures)
    sizes = sorted(Image.open(path).size for path in pictures)
    assert sorted(Image.open(path).size for path in masks) == sizes
    assert sorted(Image.open(path).size for path in overlays) == sizes


def test_outputs_never_overwrite_a_picture_given(tmp_path):
    photos = tmp_path / "photos"
    save_picture(photos / "a.png", 10, 11)
    given_mask = save_picture(photos / "a_mask.png", 12, 13)
    before = given_mask.read_bytes()
    assert predict_pictures([photos], photos) == 2
    assert given_mask.read_bytes() == before
    assert len(list(photos.glob("*_overlay.png"))) == 2


def test_16_bit_pictures_are_read_at_their_own_brightness(tmp_path):
    gray = np.arange(12 * 10, dtype=np.uint16).reshape(10, 12) * 500
    Image.fromarray(gray).save(tmp_path / "gray16.png")
    predict_pictures([tmp_path / "gray16.png"], tmp_path / "out")
    overlay = np.array(Image.open(tmp_path / "out" / "gray16_overlay.png"))
    assert np.array_equal(overlay, np.repeat((gray >> 8).astype(np.uint8)[..., None], 3, axis=2))


@pytest.mark.parametrize("flag", ["--output_dir", "--log_dir"])
@pytest.mark.parametrize("images", [True, False], ids=["images", "test_split"])
def test_an_output_folder_that_is_a_file_is_refused_before_the_model_is_read(tmp_path, monkeypatch, flag, images):
    def fail(*args, **kwargs):
        raise AssertionError("the model was read")

    monkeypatch.setattr(inference, "load_model", fail)
    monkeypatch.setattr(inference, "evaluate_checkpoint", fail)
    existing = tmp_path / "notes.txt"
    existing.write_text("a file")
    photo = save_picture(tmp_path / "cat.png", 10, 11)
    extra = ["--images", str(photo)] if images else []
    with pytest.raises(ProjectError, match="notes.txt"):
        inference.main(inference_args(tmp_path, "--model", str(tmp_path / "m.pth"), *extra, flag, str(existing)))


@pytest.mark.parametrize("argv", [["-b", "0"], ["--batch_size", "-2"], ["--num_visualize", "0"],
                                  ["--num_workers", "-1"], ["-b", "two"]])
def test_bad_numbers_exit_with_code_2(argv):
    with pytest.raises(SystemExit) as exit_info:
        inference.get_args_parser().parse_args(["--model", "m.pth", *argv])
    assert exit_info.value.code == 2


def test_a_model_that_is_a_folder_exits_with_a_message(tmp_path, capsys):
    folder = tmp_path / "model.pth"
    folder.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(inference.main, inference_args(tmp_path, "--model", str(folder), "--images", str(folder)))
    assert exit_info.value.code == 2 and "model.pth" in capsys.readouterr().err


def test_no_matching_images_is_an_error(trained, tmp_path):
    _, model = trained
    with pytest.raises(ProjectError, match="matched no image"):
        inference.main(inference_args(tmp_path, "--model", str(model), "--images", str(tmp_path / "*.jpg")))


def test_bad_model_files_exit_with_a_message_not_a_traceback(tmp_path, capsys):
    not_a_checkpoint = tmp_path / "notes.pth"
    not_a_checkpoint.write_text("hello")
    state_dict_only = tmp_path / "weights.pth"
    torch.save({"w": torch.zeros(1)}, state_dict_only)
    for path in (not_a_checkpoint, state_dict_only):
        with pytest.raises(SystemExit) as exit_info:
            run_cli(inference.main, inference_args(tmp_path, "--model", str(path)))
        assert exit_info.value.code == 2 and path.name in capsys.readouterr().err
    missing = tmp_path / "missing.pth"
    result = subprocess.run([sys.executable, "src/inference.py", "--model", str(missing), "--data_path",
                             str(SAMPLE)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and missing.name in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("model_type, flags", [("DeepLabV3Plus", []), ("HRNet", ["--amp"])])
def test_the_proposed_architectures_train_and_are_tested_like_the_reports(tmp_path, model_type, flags):
    train.main(train_args(tmp_path, "--model_type", model_type.lower(), *flags))
    model = tmp_path / "saved_models" / f"{model_type}_bs8_best_model.pth"
    row = inference.main(inference_args(tmp_path, "--model", str(model), "--tta", "--visualize",
                                        "--num_visualize", "2"))
    assert (row["model_type"], row["use_cbam"], row["tta"]) == (model_type, "", True) and row["num_images"] > 0
    assert len(list(tmp_path.glob("vis_result_*.png"))) == 2
    photo = tmp_path / "cat.jpg"
    Image.fromarray(np.full((45, 70, 3), 120, np.uint8)).save(photo)
    inference.main(inference_args(tmp_path, "--model", str(model), "--images", str(photo),
                                  "--output_dir", str(tmp_path / "out")))
    assert np.array(Image.open(tmp_path / "out" / "cat_mask.png")).shape == (45, 70)


def test_an_onnx_export_gives_the_checkpoints_row_pictures_and_masks(trained, exported, tmp_path):
    _, model = trained
    rows, masks = [], []
    photos = str(SAMPLE / "images" / "Abyssinian_1*.jpg")
    for path, out in ((model, tmp_path / "pth"), (exported[0], tmp_path / "onnx")):
        rows.append(inference.main(inference_args(out, "--model", str(path), "--tta", "--visualize",
                                                  "--num_visualize", "2")))
        inference.main(inference_args(out, "--model", str(path), "--images", photos,
                                      "--output_dir", str(out / "masks")))
        masks.append({mask.name: np.array(Image.open(mask)) for mask in (out / "masks").glob("*_mask.png")})
        assert len(list(out.glob("vis_result_*.png"))) == 2
    assert [row["runtime"] for row in rows] == ["pytorch", "onnxruntime-cpu"]
    for key in ("dice", "iou", "dataset_dice", "dataset_iou"):
        assert rows[1][key] == pytest.approx(rows[0][key], abs=1e-4)
    assert masks[0].keys() == masks[1].keys() and len(masks[0]) > 0
    differing = sum((masks[0][name] != masks[1][name]).sum() for name in masks[0])
    assert differing <= 1e-3 * sum(mask.size for mask in masks[0].values())
    with open(tmp_path / "onnx" / "inference_result.csv") as f:
        assert next(csv.DictReader(f))["runtime"] == "onnxruntime-cpu"


def test_a_foreign_onnx_file_exits_with_a_message(tmp_path, capsys):
    path = foreign_onnx_file(tmp_path / "other.onnx")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(inference.main, inference_args(tmp_path, "--model", str(path)))
    assert exit_info.value.code == 2 and path.name in capsys.readouterr().err


def test_the_cbam_cell_is_empty_for_models_without_cbam():
    args = inference.parse_args(["--model", "m.pth"])
    metrics = dict.fromkeys(["num_images", "dice", "iou", "dataset_dice", "dataset_iou", "band_accuracy",
                             "boundary_iou"], 1)
    cells = {}
    for model_type in ("HRNet", "DeepLabV3Plus", "Unet", "ResNet34_Unet"):
        checkpoint = {"model_record": {"model_type": model_type, "use_cbam": True, "image_size": 32},
                      "args": {"batch_size": 8}}
        cells[model_type] = inference.result_row(args, checkpoint, metrics, "x.csv", datetime.now(), "pytorch")[
            "use_cbam"]
    assert cells == {"HRNet": "", "DeepLabV3Plus": "", "Unet": "", "ResNet34_Unet": True}


@pytest.mark.parametrize("flags", [["--images", "a.jpg", "--visualize"], ["--images", "a.jpg", "--split", "test"],
                                   ["--images", "a.jpg", "--full_resolution"], ["--images", "a.jpg", "--num_visualize",
                                                                                 "3"],
                                   ["--images", "a.jpg", "-b", "8"], ["--output_dir", "out"]])
def test_a_flag_the_chosen_mode_would_ignore_is_refused(flags):
    with pytest.raises(SystemExit) as exit_info:
        inference.parse_args(["--model", "m.pth", *flags])
    assert exit_info.value.code == 2


def test_the_flags_of_each_mode_are_taken():
    assert inference.parse_args(["--images", "a.jpg", "--tta", "--output_dir", "out"]).tta
    assert inference.parse_args(["--split", "valid", "--visualize", "--full_resolution"]).split == "valid"
