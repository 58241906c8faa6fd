import json

import pytest
from PIL import Image

import plot_history
from errors import ProjectError, run_cli


def history(model_type, epochs, use_cbam=True, batch_size=8):
    rows = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e, "val_dice": 0.9 - 0.5 / e, "val_iou": 0.8,
             "lr": 1e-4, "seconds": 10.0, "images_per_second": 30.0} for e in epochs]
    best = max(rows, key=lambda row: row["val_dice"])
    return {"args": {"model_type": model_type, "batch_size": batch_size, "use_cbam": use_cbam,
                     "image_size": 256, "epochs": 50},
            "history": rows, "best_epoch": best["epoch"], "best_val_dice": best["val_dice"]}


def write(path, data):
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


@pytest.fixture
def two_runs(tmp_path):
    """A U-Net that stopped at epoch 4 and a resumed ResNet34_Unet whose history skips epochs 4-5."""
    return [write(tmp_path / "Unet_bs8_history.json", history("Unet", [1, 2, 3, 4])),
            write(tmp_path / "ResNet34_Unet_bs4_history.json", history("ResNet34_Unet", [1, 2, 3, 6, 7], batch_size=4))]


def cli(argv):
    return run_cli(plot_history.main, plot_history.get_args_parser().parse_args(argv))


def test_two_runs_of_different_lengths_make_a_png(two_runs, tmp_path, capsys):
    out = tmp_path / "figs" / "curves.png"
    assert cli([*map(str, two_runs), "--out", str(out), "--title", "demo"]) == out
    assert str(out) in capsys.readouterr().out
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > 1000 and image.size[1] > 500


def test_a_gap_breaks_the_line_at_the_epochs_recorded():
    epochs, values = plot_history.with_gaps(history("Unet", [1, 2, 5])["history"], "val_dice")
    assert epochs == [1, 2, 3, 5]
    assert values[2] != values[2] and values[3] == pytest.approx(0.9 - 0.5 / 5)


def test_default_labels_name_model_batch_and_missing_cbam():
    assert plot_history.run_label(history("Unet", [1], use_cbam=False)) == "Unet bs8"
    assert plot_history.run_label(history("ResNet34_Unet", [1], batch_size=16)) == "ResNet34_Unet bs16"
    assert plot_history.run_label(history("ResNet34_Unet", [1], use_cbam=False)) == "ResNet34_Unet bs8 no CBAM"
    assert plot_history.run_label(history("HRNet", [1], use_cbam=False)) == "HRNet bs8"
    assert plot_history.run_label(history("DeepLabV3Plus", [1])) == "DeepLabV3Plus bs8"
    spelled = history("ResNet34_Unet", [1])
    spelled["args"]["use_cbam"] = False
    assert plot_history.run_label(spelled).endswith(" no CBAM")


def test_label_count_must_match(two_runs, tmp_path):
    args = plot_history.get_args_parser().parse_args([*map(str, two_runs), "--labels", "only one",
                                                      "--out", str(tmp_path / "c.png")])
    with pytest.raises(ProjectError, match=r"labels \(1\) differs from the number of histories \(2\)"):
        plot_history.main(args)
    assert not (tmp_path / "c.png").exists()


@pytest.mark.parametrize("content, reason", [
    ("{not json", "not a JSON file"),
    ({"history": []}, "no 'args'"),
    ({**history("Unet", [1]), "history": [{"epoch": 1}]}, "lacks a numeric epoch"),
    ({**history("Unet", [1]), "history": []}, "empty"),
    (None, "no such file"),
])
def test_a_bad_history_is_an_error_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "bad_history.json"
    if content is not None:
        write(path, content)
    with pytest.raises(ProjectError, match=reason) as error:
        plot_history.load_history(path)
    assert str(path) in str(error.value)


def test_the_cli_exits_non_zero_without_a_traceback(two_runs, tmp_path, capsys):
    bad = write(tmp_path / "broken_history.json", "[]")
    with pytest.raises(SystemExit) as exit_info:
        cli([str(two_runs[0]), str(bad), "--out", str(tmp_path / "c.png")])
    err = capsys.readouterr().err
    assert exit_info.value.code != 0
    assert err.startswith("error: ") and str(bad) in err and "Traceback" not in err


def test_an_out_that_is_a_folder_or_inside_a_file_is_refused(two_runs, tmp_path):
    folder = tmp_path / "curves.png"
    folder.mkdir()
    existing = tmp_path / "notes.txt"
    existing.write_text("a file")
    for out in (folder, existing / "curves.png"):
        with pytest.raises(ProjectError):
            plot_history.main(plot_history.get_args_parser().parse_args([*map(str, two_runs), "--out", str(out)]))
    assert existing.read_text() == "a file"
