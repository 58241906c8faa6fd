import csv
import os

import pytest

from files import append_csv_row, atomic_write, save_json


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "history.json"
    save_json({"epoch": 1}, path)

    def crash(tmp):
        with open(tmp, "w") as f:
            f.write("{half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert path.read_text().startswith("{") and '"epoch": 1' in path.read_text()
    assert os.listdir(tmp_path) == ["history.json"]


def test_csv_rows_are_appended_with_one_header(tmp_path):
    path = tmp_path / "results.csv"
    append_csv_row(path, {"a": 1, "b": 2})
    append_csv_row(path, {"a": 3, "b": 4})
    assert path.read_text().splitlines() == ["a,b", "1,2", "3,4"]


def test_a_row_without_a_newer_column_leaves_its_cell_empty(tmp_path):
    path = tmp_path / "results.csv"
    append_csv_row(path, {"a": 1, "b": 2})
    append_csv_row(path, {"a": 3, "b": 4, "c": 5})
    append_csv_row(path, {"a": 6, "b": 7})
    assert path.read_text().splitlines() == ["a,b,c", "1,2", "3,4,5", "6,7,"]


def test_a_new_column_extends_an_older_files_header_and_earlier_rows_keep_their_cells(tmp_path):
    path = tmp_path / "results.csv"
    append_csv_row(path, {"a": 1, "b": 2})
    append_csv_row(path, {"a": 3, "b": 4, "c": 5})
    append_csv_row(path, {"a": 6, "b": 7, "c": 8})
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [{"a": "1", "b": "2", "c": None}, {"a": "3", "b": "4", "c": "5"}, {"a": "6", "b": "7", "c": "8"}]
    assert os.listdir(tmp_path) == ["results.csv"]
