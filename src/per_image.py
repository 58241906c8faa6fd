"""The per-image results file of a test: one row per image, and beside it (same name, .json) what was tested on
what, so that src/analyze.py and src/compare.py need nothing else. Reading it needs no torch."""
import csv
import json
import math
from collections import Counter
from pathlib import Path

from errors import ProjectError
from files import csv_cells, file_identity, save_json, write_csv

COLUMNS = ("name", "species", "breed", "width", "height", "dice", "iou", "band_accuracy", "boundary_iou",
           "intersection", "predicted_area", "true_area")
NUMBERS = ("width", "height", "dice", "iou", "band_accuracy", "boundary_iou", "intersection", "predicted_area",
           "true_area")
SCORES = ("dice", "iou", "band_accuracy", "boundary_iou")  # each in [0, 1]


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
    """(rows with their numbers parsed, source) of a per-image CSV and the .json beside it; ProjectError for files
    that are not these: a missing column or cell, a number that is not finite (band_accuracy is NaN for an image
    without a border band, so there NaN is a score), an image listed twice, no image, a source that is no object."""
    path = Path(path)
    source_path = path.with_suffix(".json")
    if not path.is_file() or not source_path.is_file():
        raise ProjectError(f"{path}: no such per-image CSV with its {source_path.name} beside it; src/inference.py "
                           "writes both when it tests a model on a split.")
    try:
        # utf-8-sig: a CSV saved again by a spreadsheet may begin with a byte-order mark.
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not set(COLUMNS) <= set(reader.fieldnames or []):
                raise ProjectError(f"{path} is not a per-image CSV of src/inference.py; it lacks some of the "
                                   f"columns {', '.join(COLUMNS)}.")
            rows = [parse_row(row, path, reader.line_num) for row in reader]
    except UnicodeDecodeError as error:
        raise ProjectError(f"{path} is not a per-image CSV of src/inference.py: it is not UTF-8 text "
                           f"({error}).") from None
    if not rows:
        raise ProjectError(f"{path} lists no image.")
    check_names_unique(rows, path)
    source = read_source(source_path)
    check_image_count(rows, source, path)
    return rows, source


def parse_row(row, path, line):
    """A CSV row with its number columns parsed; ProjectError unless each is finite (band_accuracy may be NaN)."""
    try:
        numbers = {key: float(row[key]) for key in NUMBERS}
    except (TypeError, ValueError):  # TypeError: the cells missing from a short row are None
        raise ProjectError(f"{path}, line {line}: a number column is empty or holds something else.") from None
    bad = [key for key, value in numbers.items()
           if not (math.isfinite(value) or (key == "band_accuracy" and math.isnan(value)))]
    if bad:
        raise ProjectError(f"{path}, line {line}: {', '.join(bad)} is not a finite number "
                           f"({', '.join(row[key] for key in bad)}).")
    outside = [key for key in SCORES if not (0 <= numbers[key] <= 1 or math.isnan(numbers[key]))]
    if outside:
        raise ProjectError(f"{path}, line {line}: {', '.join(outside)} is outside [0, 1] "
                           f"({', '.join(row[key] for key in outside)}); scores of src/inference.py never are, so "
                           "the file was changed or is not one of its per-image CSVs.")
    return dict(row, **numbers)


def check_names_unique(rows, path):
    """ProjectError when an image has more than one row (two CSVs pasted together, say)."""
    twice = sorted(name for name, count in Counter(row["name"] for row in rows).items() if count > 1)
    if twice:
        raise ProjectError(f"{path} lists {len(twice)} images more than once, such as {twice[:3]}; a per-image CSV of "
                           "src/inference.py has one row per image.")


def check_image_count(rows, source, path):
    """ProjectError when the CSV has other rows than its record counts (a file cut short, or rows added); a record
    of an older src/inference.py, which has no count, is said in a line."""
    if "images" not in source:
        print(f"note: {path.with_suffix('.json')} is from an older src/inference.py: it does not record the number "
              "of images, the model file's identity or the model's training arguments, so they cannot be checked.")
    elif source["images"] != len(rows):
        raise ProjectError(f"{path} has {len(rows)} images, but its record says the test scored {source['images']}; "
                           "the file was cut short or changed. Test the model again with src/inference.py.")


def read_source(path):
    """The JSON object beside a per-image CSV."""
    try:
        source = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:  # not JSON, or not UTF-8
        source = None
    if not isinstance(source, dict):
        raise ProjectError(f"{path} is not the JSON object that src/inference.py writes beside a per-image CSV, "
                           "which says what was tested on what.")
    return source


def check_model_file(source, path):
    """ProjectError unless the model file the record names is the one that was tested (same size and SHA-256);
    records of an older src/inference.py, without them, are said in a line by read()."""
    model = Path(source["model"])
    if not model.is_file():
        raise ProjectError(f"the model {model} that {path} was scored with is no longer there; what needs only the "
                           "CSV is written, what needs the model is not.")
    if "model_sha256" in source and file_identity(model) != {"bytes": source["model_bytes"],
                                                             "sha256": source["model_sha256"]}:
        raise ProjectError(f"the model {model} is not the file that {path} was scored with: it was replaced (a "
                           "retrained or overwritten run) after that test. Test the model again with "
                           "src/inference.py, and use the new per-image CSV (what needs only this CSV is written).")
