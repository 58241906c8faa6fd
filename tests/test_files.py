import csv
import errno
import multiprocessing
import os
import stat
import subprocess

import pytest
import torch

import files
from checkpoint import save_checkpoint
from errors import ProjectError
from files import append_csv_row, atomic_write, check_folder, save_json


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


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB tmpfs (needs root; skipped where it cannot be mounted)."""
    folder = tmp_path / "full"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_is_a_clear_error_and_leaves_the_earlier_files(full_disk):
    history, results, model = full_disk / "history.json", full_disk / "results.csv", full_disk / "last.pth"
    save_json({"epoch": 1}, history)
    append_csv_row(results, {"a": 1})
    save_checkpoint({"w": torch.zeros(10)}, model)
    before = {path: path.read_bytes() for path in (history, results, model)}
    for write in (lambda: save_json({"big": "x" * 400_000}, history),
                  lambda: append_csv_row(results, {"a": "x" * 400_000}),
                  lambda: save_checkpoint({"w": torch.zeros(100_000)}, model)):
        with pytest.raises(ProjectError, match=str(full_disk)):
            write()
    assert {path: path.read_bytes() for path in before} == before
    assert sorted(os.listdir(full_disk)) == ["history.json", "last.pth", "results.csv"]


def test_a_failed_append_leaves_the_csv_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "results.csv"
    append_csv_row(path, {"a": 1, "b": 2})

    def disk_full_midway(tmp, text):
        with open(tmp, "w") as f:
            f.write(text[: len(text) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "write_synced", disk_full_midway)
    with pytest.raises(ProjectError, match="full"):
        append_csv_row(path, {"a": 3, "b": 4})
    monkeypatch.undo()
    append_csv_row(path, {"a": 5, "b": 6})
    assert path.read_text().splitlines() == ["a,b", "1,2", "5,6"]


def test_a_torn_last_line_from_an_older_writer_is_dropped(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("a,b\n1,2\n3,")
    append_csv_row(path, {"a": 5, "b": 6})
    assert path.read_text().splitlines() == ["a,b", "1,2", "5,6"]


def append_rows(path, start, count):
    for value in range(start, start + count):
        append_csv_row(path, {"a": value, "b": value})


def test_processes_appending_at_once_write_one_header_and_every_row(tmp_path):
    path = tmp_path / "results.csv"
    processes = [multiprocessing.get_context("fork").Process(target=append_rows, args=(path, start, 25))
                 for start in (0, 100, 200)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    lines = path.read_text().splitlines()
    assert lines[0] == "a,b" and lines.count("a,b") == 1
    assert sorted(int(line.split(",")[0]) for line in lines[1:]) == [*range(25), *range(100, 125), *range(200, 225)]


def test_temporaries_of_killed_writers_are_removed_and_nothing_else(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    path = tmp_path / "history.json"
    stale = tmp_path / f".history.json.{dead.pid}.abcd1234.tmp"
    alive = tmp_path / f".history.json.{os.getpid()}.efgh5678.tmp"
    others = [tmp_path / f".other.json.{dead.pid}.abcd1234.tmp", tmp_path / ".history.json.notes.tmp",
              tmp_path / "history.json.bak"]
    for file in (stale, alive, *others):
        file.write_text("x")
    save_json({"epoch": 1}, path)
    assert not stale.exists() and alive.exists() and all(file.exists() for file in others)


def test_written_files_follow_the_umask_and_keep_an_existing_files_mode(tmp_path):
    previous = os.umask(0o027)
    try:
        save_json({}, tmp_path / "new.json")
        save_checkpoint({}, tmp_path / "new.pth")
        existing = tmp_path / "existing.json"
        existing.write_text("{}")
        existing.chmod(0o600)
        save_json({"a": 1}, existing)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "new.pth").stat().st_mode) == 0o640
    assert stat.S_IMODE(existing.stat().st_mode) == 0o600


def test_a_folder_that_is_an_existing_file_is_refused(tmp_path):
    (tmp_path / "taken").write_text("x")
    check_folder(tmp_path / "missing", "--log_dir")
    with pytest.raises(ProjectError, match="--log_dir"):
        check_folder(tmp_path / "taken", "--log_dir")
    with pytest.raises(ProjectError, match="taken"):
        save_json({}, tmp_path / "taken" / "history.json")
