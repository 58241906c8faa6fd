import numpy as np
import pytest

import compare
import per_image
from errors import ProjectError


def test_identical_results_differ_by_nothing_with_p_one():
    scores = np.random.default_rng(0).random(40)
    result = compare.compare_scores(scores, scores.copy())
    assert result["difference"] == 0 and result["ci_low"] == result["ci_high"] == 0
    assert result["p_value"] == 1.0 and result["ties"] == 40


def test_b_better_on_every_image_gives_an_interval_above_zero_and_a_small_p():
    a = np.random.default_rng(1).random(30) * 0.8
    result = compare.compare_scores(a, a + 0.05)
    assert result["ci_low"] > 0 and result["difference"] == pytest.approx(0.05)
    assert result["p_value"] < 0.001 and result["wins_b"] == 30
    assert compare.verdict(result).startswith("B is better")


def test_the_draws_follow_the_seed():
    differences = np.random.default_rng(2).normal(0.01, 0.1, 50)
    assert compare.bootstrap_interval(differences, seed=3) == compare.bootstrap_interval(differences, seed=3)
    assert compare.sign_flip_p_value(differences, seed=3) == compare.sign_flip_p_value(differences, seed=3)
    assert compare.bootstrap_interval(differences, seed=3) != compare.bootstrap_interval(differences, seed=4)


def write_results(path, names, dice, split="test"):
    rows = [dict.fromkeys(per_image.COLUMNS, 0, ) | {"name": name, "dice": score, "species": "cat", "breed": "x"}
            for name, score in zip(names, dice)]
    per_image.write(path, rows, {"split": split, "resolution": "input", "data_path": "/data", "tta": False})
    return path


def test_the_command_compares_two_files_and_refuses_other_images_or_splits(tmp_path, capsys):
    a = write_results(tmp_path / "a_per_image.csv", ["x_1", "x_2", "x_3"], [0.5, 0.6, 0.7])
    b = write_results(tmp_path / "b_per_image.csv", ["x_3", "x_1", "x_2"], [0.9, 0.8, 0.7])
    result = compare.main(compare.get_args_parser().parse_args([str(a), str(b)]))
    assert result["mean_b"] - result["mean_a"] == pytest.approx(0.2) and result["wins_b"] == 3
    other_images = write_results(tmp_path / "c_per_image.csv", ["x_1", "x_2", "y_9"], [0.5, 0.6, 0.7])
    other_split = write_results(tmp_path / "d_per_image.csv", ["x_1", "x_2", "x_3"], [0.5, 0.6, 0.7], "valid")
    for other in (other_images, other_split):
        with pytest.raises(ProjectError):
            compare.main(compare.get_args_parser().parse_args([str(a), str(other)]))


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
        compare.main(compare.get_args_parser().parse_args([str(a), str(b)]))


def test_a_header_only_file_is_refused(tmp_path):
    a = write_results(tmp_path / "a_per_image.csv", ["x_1", "x_2"], [0.5, 0.6])
    b = write_results(tmp_path / "b_per_image.csv", ["x_1"], [0.5])
    b.write_text(",".join(per_image.COLUMNS) + "\n")
    with pytest.raises(ProjectError, match="b_per_image.csv"):
        compare.main(compare.get_args_parser().parse_args([str(a), str(b)]))
