import pytest

import per_image
from errors import ProjectError


def test_rows_and_their_source_round_trip_and_names_are_never_reused(tmp_path):
    rows = [dict.fromkeys(per_image.COLUMNS, 1) | {"name": "Abyssinian_1", "species": "cat", "breed": "Abyssinian",
                                                   "dice": 0.25, "band_accuracy": float("nan")}]
    path = per_image.new_path(tmp_path, "model_test")
    per_image.write(path, rows, {"model": "m.pth", "split": "test"})
    read, source = per_image.read(path)
    assert read[0]["dice"] == 0.25 and read[0]["breed"] == "Abyssinian" and read[0]["width"] == 1
    assert source == {"model": "m.pth", "split": "test"}
    assert per_image.new_path(tmp_path, "model_test") != path


def test_a_csv_without_its_source_or_columns_is_refused(tmp_path):
    lonely = tmp_path / "x_per_image.csv"
    lonely.write_text("name,dice\na,0.5\n")
    with pytest.raises(ProjectError):
        per_image.read(lonely)
    lonely.with_suffix(".json").write_text("{}")
    with pytest.raises(ProjectError):
        per_image.read(lonely)
