import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import compare
import per_image
from conftest import ROOT
from errors import ProjectError

NAMES = [f"x_{index}" for index in range(40)]


def write_results(path, names, dice, split="test", seed=0, model_type="ResNet34_Unet", image_size=64,
                  resolution="input", learning_rate=1e-4, record=True):
    """A per-image CSV and its record, as src/inference.py writes them (record=False: an older record without the
    model's training arguments)."""
    rows = [dict.fromkeys(per_image.COLUMNS, 0) | {"name": name, "dice": score, "species": "cat", "breed": "x"}
            for name, score in zip(names, dice)]
    source = {"split": split, "resolution": resolution, "data_path": "/data", "tta": False, "image_size": image_size,
              "model_record": {"model_type": model_type, "use_cbam": True, "image_size": image_size}}
    if record:
        source["args"] = {"seed": seed, "learning_rate": learning_rate, "model_type": model_type}
    per_image.write(path, rows, source)
    return str(path)


def seed_files(folder, name, offsets, gain=0.0, **options):
    """One CSV per seed: every image of seed s shifted by offsets[s], plus a little noise of its own."""
    base = np.random.default_rng(0).uniform(0.5, 0.9, len(NAMES))
    rng = np.random.default_rng([ord(letter) for letter in name])
    return [write_results(folder / f"{name}_seed{seed}_per_image.csv", NAMES,
                          base + gain + offset + rng.normal(0, 0.005, len(NAMES)), seed=seed, **options)
            for seed, offset in enumerate(offsets)]


def run(*argv):
    return compare.main(compare.get_args_parser().parse_args([str(arg) for arg in argv]))


def test_several_seeds_per_setting_are_paired_by_seed_and_written_as_json(tmp_path):
    a = seed_files(tmp_path, "a", [0.03, -0.03, 0.0, 0.04, -0.04])
    b = seed_files(tmp_path, "b", [-0.02, 0.03, -0.035, 0.01, 0.025], gain=0.01, learning_rate=2e-4)
    out = tmp_path / "result.json"
    result = run("--a", *a, "--b", *b, "--json", out)
    written = json.loads(out.read_text())
    assert written["seeds_a"] == written["seeds_b"] == [0, 1, 2, 3, 4] and written["images"] == len(NAMES)
    assert written["paired"] and written["difference"] == pytest.approx(result["difference"])
    for key in ("seed_interval", "image_interval"):
        assert len(written[key]) == 2 and written[key][0] <= written["difference"] <= written[key][1]
    assert written["image_interval"][0] > 0 > written["seed_interval"][0]  # seed noise hides the gain of 0.01
    assert 0 <= written["seed_p"] <= 1 and 0 <= written["image_p"] <= 1


def test_the_short_form_compares_one_model_per_setting(tmp_path):
    a = write_results(tmp_path / "a_per_image.csv", ["x_1", "x_2", "x_3"], [0.5, 0.6, 0.7])
    b = write_results(tmp_path / "b_per_image.csv", ["x_3", "x_1", "x_2"], [0.9, 0.8, 0.7], learning_rate=2e-4)
    result = run(a, b)
    assert result["mean_b"] - result["mean_a"] == pytest.approx(0.2) and result["wins_b"] == 3
    assert result["seed_interval"] is None and result["seed_p"] is None and result["image_interval"][0] > 0


def test_older_records_without_training_arguments_still_compare_one_model_each(tmp_path):
    a = write_results(tmp_path / "a_per_image.csv", NAMES[:5], [0.5] * 5, record=False)
    b = write_results(tmp_path / "b_per_image.csv", NAMES[:5], [0.6] * 5, record=False)
    assert run(a, b)["seeds_a"] == [None]


def test_identical_settings_differ_by_nothing_with_p_one(tmp_path):
    a = seed_files(tmp_path, "a", [0.03, -0.03, 0.0])
    result = run("--a", *a, "--b", *a)
    assert result["difference"] == 0 and result["seed_p"] == result["image_p"] == 1.0


@pytest.mark.parametrize("problem", ["other images", "other split", "other image size", "seed twice",
                                     "no record", "no seed in the record", "two models in a setting",
                                     "both forms", "three files"])
def test_inputs_that_cannot_be_compared_are_refused(tmp_path, problem):
    a = seed_files(tmp_path, "a", [0.0, 0.01])
    b = seed_files(tmp_path, "b", [0.0, 0.01], gain=0.01)
    other = tmp_path / "other_per_image.csv"
    if problem == "other images":
        b[1] = write_results(other, NAMES[:-1] + ["y_9"], [0.5] * len(NAMES), seed=1)
    elif problem == "other split":
        b[1] = write_results(other, NAMES, [0.5] * len(NAMES), split="valid", seed=1)
    elif problem == "other image size":
        b[1] = write_results(other, NAMES, [0.5] * len(NAMES), seed=1, image_size=32)
    elif problem == "seed twice":
        b[1] = write_results(other, NAMES, [0.5] * len(NAMES), seed=0)
    elif problem == "no record":
        (tmp_path / "b_seed1_per_image.json").unlink()
    elif problem == "no seed in the record":
        b[1] = write_results(other, NAMES, [0.5] * len(NAMES), record=False)
    elif problem == "two models in a setting":
        b[1] = write_results(other, NAMES, [0.5] * len(NAMES), seed=1, model_type="Unet")
    argv = {"both forms": [a[0], b[0], "--a", *a, "--b", *b], "three files": [a[0], a[1], b[0]]}.get(
        problem, ["--a", *a, "--b", *b])
    with pytest.raises(ProjectError):
        run(*argv)


def test_models_of_other_image_sizes_compare_when_scored_at_the_original_resolution(tmp_path):
    a = write_results(tmp_path / "a_per_image.csv", NAMES, [0.5] * len(NAMES), resolution="original")
    b = write_results(tmp_path / "b_per_image.csv", NAMES, [0.6] * len(NAMES), resolution="original", image_size=32)
    assert run(a, b)["difference"] == pytest.approx(0.1)


def test_a_refused_comparison_exits_with_code_2_and_no_traceback(tmp_path):
    a = seed_files(tmp_path, "a", [0.0, 0.01])
    process = subprocess.run([sys.executable, str(ROOT / "src" / "compare.py"), "--a", *a, "--b", a[0], a[0]],
                             capture_output=True, text=True)
    assert process.returncode == 2 and "Traceback" not in process.stderr and process.stderr.startswith("error:")


@pytest.mark.parametrize("seed", ["-1", str(2**32), "1.5", "x"])
def test_bad_seeds_exit_with_code_2(seed):
    with pytest.raises(SystemExit) as exit_info:
        compare.get_args_parser().parse_args(["a.csv", "b.csv", "--seed", seed])
    assert exit_info.value.code == 2


def test_a_seed_of_the_whole_range_is_taken():
    assert compare.get_args_parser().parse_args(["a.csv", "b.csv", "--seed", str(2**32 - 1)]).seed == 2**32 - 1


def test_a_nan_score_is_refused_rather_than_compared(tmp_path):
    a = write_results(tmp_path / "a_per_image.csv", ["x_1", "x_2"], [0.5, 0.6])
    b = write_results(tmp_path / "b_per_image.csv", ["x_1", "x_2"], [0.5, float("nan")])
    with pytest.raises(ProjectError, match="b_per_image.csv"):
        run(a, b)


def test_a_header_only_file_is_refused(tmp_path):
    a = write_results(tmp_path / "a_per_image.csv", ["x_1", "x_2"], [0.5, 0.6])
    b = write_results(tmp_path / "b_per_image.csv", ["x_1"], [0.5])
    Path(b).write_text(",".join(per_image.COLUMNS) + "\n")
    with pytest.raises(ProjectError, match="b_per_image.csv"):
        run(a, b)
