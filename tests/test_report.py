import csv
import subprocess
import sys

import pytest

import report
from conftest import ROOT
from errors import ProjectError, run_cli

HEADER = ["timestamp", "model", "model_type", "use_cbam", "image_size", "batch_size", "split", "num_images",
          "dice", "iou", "dataset_dice", "dataset_iou", "tta"]


def result(model, model_type, dice, split="test", use_cbam="True", tta="False"):
    return {"timestamp": "2024-01-01T00:00:00", "model": model, "model_type": model_type, "use_cbam": use_cbam,
            "image_size": 256, "batch_size": 8, "split": split, "num_images": 3669, "dice": dice, "iou": dice - 0.07,
            "dataset_dice": dice + 0.01, "dataset_iou": dice - 0.06, "tta": tta}


def write_csv(path, rows, header=HEADER):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def results_csv(tmp_path):
    return write_csv(tmp_path / "inference_result.csv", [
        result("saved_models/Unet_bs8_best_model.pth", "Unet", 0.9101),
        result("saved_models/ResNet34_Unet_bs8_best_model.pth", "ResNet34_Unet", 0.9262),
        result("saved_models/ResNet34_Unet_bs8_best_model.pth", "ResNet34_Unet", 0.9270, tta="True"),
        result("saved_models/nocbam.pth", "ResNet34_Unet", 0.9180, use_cbam="False"),
        result("saved_models/HRNet_bs8_best_model.pth", "HRNet", 0.9150),
        result("saved_models/Unet_bs8_best_model.pth", "Unet", 0.9500, split="valid"),
    ])


def table_lines(text):
    return [line for line in text.splitlines() if line.startswith("| `")]


def test_table_is_sorted_best_first_and_keeps_repeated_evaluations(results_csv, tmp_path, capsys):
    out = tmp_path / "results.md"
    text = report.main(report.get_args_parser().parse_args(["--csv", str(results_csv), "--out", str(out)]))
    assert out.read_text() == text and text in capsys.readouterr().out
    rows = table_lines(text)
    assert [line.split(" | ")[8] for line in rows] == ["0.9270", "0.9262", "0.9180", "0.9150", "0.9101"]
    assert {line.split(" | ")[6] for line in rows} == {"input"}  # rows from before the resolution column
    assert sum("ResNet34_Unet_bs8_best_model.pth" in line for line in rows) == 2
    assert "| yes |" in rows[0] and "| no | 8 |" in rows[2] and "| HRNet | n/a |" in rows[3] and "| n/a |" in rows[4]
    assert "0.9500" not in text  # a validation-split row with --split test


def test_published_figures_are_beside_the_results(results_csv):
    text = report.report_markdown(report.read_results(results_csv), results_csv, "test")
    published = text.split("## The report (published)")[1]
    for figure in ("0.9226–0.9242", "0.9245–0.9275", "31.0 M", "21.9 M", "54.65 G", "6.92 G", "256x256"):
        assert figure in published
    assert published.count("report (published)") == 2


def test_older_files_without_tta_are_read(tmp_path):
    path = write_csv(tmp_path / "old.csv", [result("a.pth", "Unet", 0.9)], [c for c in HEADER if c != "tta"])
    rows = report.read_results(path)
    assert rows[0]["tta"] is None and rows[0]["dice"] == pytest.approx(0.9)
    assert "| ? |" in report.results_table(rows)


@pytest.mark.parametrize("content, reason", [
    (None, "no such file"),
    ("", "empty or lacks"),
    ("model,dice\na.pth,0.9\n", "lacks the columns model_type"),
    (",".join(HEADER) + "\n", "no results"),
])
def test_a_missing_empty_or_foreign_csv_is_an_error_naming_it(tmp_path, content, reason):
    path = tmp_path / "inference_result.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ProjectError, match=reason) as error:
        report.read_results(path)
    assert str(path) in str(error.value)


def test_a_split_without_evaluations_exits_non_zero(results_csv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(report.main, report.get_args_parser().parse_args(
            ["--csv", str(results_csv), "--out", str(tmp_path / "r.md"), "--split", "train"]))
    err = capsys.readouterr().err
    assert exit_info.value.code != 0 and "no evaluation on the train split" in err and "Traceback" not in err
    assert not (tmp_path / "r.md").exists()


def test_the_runtime_is_listed_and_older_rows_ran_in_pytorch(tmp_path):
    old = write_csv(tmp_path / "old.csv", [result("a.pth", "Unet", 0.9)])
    assert report.read_results(old)[0]["runtime"] == "pytorch"
    new = write_csv(tmp_path / "new.csv", [dict(result("a.onnx", "Unet", 0.9), runtime="onnxruntime-cpu")],
                    HEADER + ["runtime"])
    assert table_lines(report.results_table(report.read_results(new)))[0].endswith("| onnxruntime-cpu | ? |")


def test_the_recipe_of_each_row_is_shown_and_older_rows_say_it_is_unknown(tmp_path):
    rows = [dict(result("a.pth", "ResNet34_Unet", 0.9), recipe="report"),
            dict(result("b.pth", "ResNet34_Unet", 0.8), recipe="loss=ce+dice, pretrained encoder=imagenet")]
    lines = table_lines(report.results_table(report.read_results(write_csv(tmp_path / "r.csv", rows,
                                                                           HEADER + ["recipe"]))))
    assert lines[0].endswith("| report |") and lines[1].endswith("| loss=ce+dice, pretrained encoder=imagenet |")


def test_the_scripts_that_only_read_results_import_no_torch():
    code = "import sys; import report, plot_history, compare; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "src", capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr


def test_the_resolution_a_row_was_scored_at_is_shown(tmp_path):
    rows = [result("a.pth", "Unet", 0.9) | {"resolution": "original"}, result("b.pth", "Unet", 0.8)]
    path = write_csv(tmp_path / "inference_result.csv", rows, header=HEADER + ["resolution"])
    text = report.report_markdown(report.read_results(path), path, "test")
    assert [line.split(" | ")[6] for line in table_lines(text)] == ["original", "input"]
