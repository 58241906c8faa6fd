"""Files that survive a crash or a kill: atomic replacement of whole files, appended CSV rows (no torch)."""
import csv
import json
import os
import tempfile
from pathlib import Path


def atomic_write(path, write):
    """Call write(tmp_path), then rename over path, so a crash leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_json(data, path):
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


def csv_cells(row):
    """A row's values as CSV cells: floats to 6 decimals, everything else as it is."""
    return {key: f"{value:.6f}" if isinstance(value, float) else value for key, value in row.items()}


def write_csv(path, rows):
    """Write dicts as a whole CSV file (the first row's keys are the header), atomically."""
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


def append_csv_row(path, row):
    """Append a dict as a CSV row, with the header only when the file is new; earlier rows are never changed. When
    the row has columns that an older file's header lacks, they are added at the end of its header, so the older
    rows read as empty there and every column keeps its place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = read_csv_header(path)
    columns = header + [column for column in row if column not in header]
    if header and columns != header:
        replace_csv_header(path, columns)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        if not header:
            writer.writeheader()
        writer.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def read_csv_header(path):
    """The column names of a CSV file's first line; [] for a missing or empty file."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return next(csv.reader(f), [])


def replace_csv_header(path, columns):
    """Atomically rewrite a CSV file's first line as columns, its rows byte for byte as they are."""
    with open(path, newline="") as f:
        f.readline()
        rows = f.read()

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerow(columns)
            f.write(rows)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)
