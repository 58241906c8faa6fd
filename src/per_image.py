"""The per-image results file of a test: one row per image, and beside it (same name, .json) what was tested on
what, so that src/analyze.py and src/compare.py need nothing else. Reading it needs no torch."""
import csv
import json
from pathlib import Path

from errors import ProjectError
from files import csv_cells, save_json, write_csv

COLUMNS = ("name", "species", "breed", "width", "height", "dice", "iou", "band_accuracy", "boundary_iou",
           "intersection", "predicted_area", "true_area")
NUMBERS = ("width", "height", "dice", "iou", "band_accuracy", "boundary_iou", "intersection", "predicted_area",
           "true_area")


def new_path(folder, stem):
    """<folder>/<stem>_per_image.csv, numbered so that it is never the name of an earlier file."""
    path, number = Path(folder) / f"{stem}_per_image.csv", 1
    while path.exists():
        number += 1
        path = Path(folder) / f"{stem}_{number}_per_image.csv"
    return path


def write(path, rows, source):
    """The source (a dict of plain values) first, then the rows, each file atomically."""
    save_json(source, Path(path).with_suffix(".json"))
    write_csv(path, [csv_cells({key: row[key] for key in COLUMNS}) for row in rows])


def read(path):
    """(rows with their numbers parsed, source) of a per-image CSV and the .json beside it."""
    path = Path(path)
    source_path = path.with_suffix(".json")
    if not path.is_file() or not source_path.is_file():
        raise ProjectError(f"{path}: no such per-image CSV with its {source_path.name} beside it; src/inference.py "
                           "writes both when it tests a model on a split.")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not set(COLUMNS) <= set(reader.fieldnames or []):
            raise ProjectError(f"{path} is not a per-image CSV of src/inference.py; it lacks some of the columns "
                               f"{', '.join(COLUMNS)}.")
        try:
            rows = [dict(row, **{key: float(row[key]) for key in NUMBERS}) for row in reader]
        except ValueError:
            raise ProjectError(f"{path}, line {reader.line_num}: a number column holds something else.") from None
    if not rows:
        raise ProjectError(f"{path} lists no image.")
    return rows, json.loads(source_path.read_text())
