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
    """Append a dict as a CSV row, with the header only when the file is new; earlier rows are never changed.

    When the row has columns the file's header lacks (the file was written by an older version), the file is
    rewritten once, atomically, with those columns added at the end of the header and left empty in earlier rows.
    """
    path = Path(path)
    header = csv_header(path)
    if header and not set(row) <= set(header):
        return add_columns_and_row(path, header, row)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header or list(row), restval="")
        if not header:
            writer.writeheader()
        writer.writerow(row)
        f.flush()
        os.fsync(f.fileno())


def csv_header(path):
    """The column names of an existing CSV file; [] when there is no file or it is empty."""
    if not path.exists() or path.stat().st_size == 0:
        return []
    with open(path, newline="") as f:
        return next(csv.reader(f), [])


def add_columns_and_row(path, header, row):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = header + [column for column in row if column not in header]
    write_csv(path, [{column: old.get(column, "") for column in columns} for old in rows + [row]])
