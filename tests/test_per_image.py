import pytest

import per_image
from errors import ProjectError
from files import file_identity


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


def write_one_image(tmp_path):
    """A per-image CSV of two images with its source; returns the CSV's path."""
    rows = [dict.fromkeys(per_image.COLUMNS, 1) | {"name": name, "species": "cat", "breed": "Abyssinian",
                                                   "band_accuracy": float("nan")} for name in ("a_1", "a_2")]
    path = tmp_path / "m_per_image.csv"
    per_image.write(path, rows, {"model": "m.pth", "split": "test"})
    return path


def test_a_csv_saved_again_with_a_byte_order_mark_reads_the_same(tmp_path):
    path = write_one_image(tmp_path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    rows, _ = per_image.read(path)
    assert [row["name"] for row in rows] == ["a_1", "a_2"] and rows[0]["band_accuracy"] != rows[0]["band_accuracy"]


@pytest.mark.parametrize("damage", [
    lambda text: "",  # empty
    lambda text: text.splitlines(keepends=True)[0],  # the header alone
    lambda text: text.replace("dice,", "", 1),  # a column missing
    lambda text: text.rstrip("\n").rsplit(",", 3)[0] + "\n",  # the last row cut short
    lambda text: text.replace("a_2,cat,Abyssinian,1,1,1", "a_2,cat,Abyssinian,1,1,nan", 1),  # a NaN Dice
    lambda text: text.replace("a_2,cat,Abyssinian,1,1,1", "a_2,cat,Abyssinian,1,1,inf", 1),
    lambda text: text.replace("a_2,cat,Abyssinian,1,1,1", "a_2,cat,Abyssinian,1,1,", 1),  # an empty cell
    lambda text: text.replace("a_2,", "a_1,", 1),  # an image twice
], ids=["empty", "header_only", "missing_column", "short_row", "nan", "infinite", "empty_cell", "duplicate"])
def test_a_damaged_csv_is_refused_naming_it(tmp_path, damage):
    path = write_one_image(tmp_path)
    path.write_text(damage(path.read_text()))
    with pytest.raises(ProjectError, match="m_per_image.csv"):
        per_image.read(path)


@pytest.mark.parametrize("source", ["{\"model\": \"m.pth\"", "[]", "\xff\xfe"], ids=["truncated", "list", "binary"])
def test_a_damaged_source_is_refused_naming_it(tmp_path, source):
    path = write_one_image(tmp_path)
    path.with_suffix(".json").write_bytes(source.encode("latin-1"))
    with pytest.raises(ProjectError, match="m_per_image.json"):
        per_image.read(path)


def test_a_not_utf8_csv_is_refused(tmp_path):
    path = write_one_image(tmp_path)
    path.write_bytes(path.read_bytes().replace(b"Abyssinian", b"Abyssin\xe9"))
    with pytest.raises(ProjectError, match="m_per_image.csv"):
        per_image.read(path)


def write_counted(tmp_path, count=3, **changes):
    rows = [dict.fromkeys(per_image.COLUMNS, 1) | {"name": f"a_{index}", "species": "cat", "breed": "Abyssinian",
                                                   "band_accuracy": float("nan"), **changes} for index in range(count)]
    path = tmp_path / "m_per_image.csv"
    per_image.write(path, rows, {"model": "m.pth", "split": "test", "images": count})
    return path


def test_a_csv_cut_short_at_a_row_boundary_is_refused(tmp_path):
    path = write_counted(tmp_path)
    assert len(per_image.read(path)[0]) == 3
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))
    with pytest.raises(ProjectError):
        per_image.read(path)


@pytest.mark.parametrize("score", ["dice", "iou", "boundary_iou", "band_accuracy"])
def test_a_score_outside_zero_to_one_is_refused(tmp_path, score):
    with pytest.raises(ProjectError):
        per_image.read(write_counted(tmp_path, **{score: 7.5}))


def test_an_older_record_without_a_count_reads_and_says_what_cannot_be_checked(tmp_path, capsys):
    path = write_one_image(tmp_path)
    assert len(per_image.read(path)[0]) == 2 and capsys.readouterr().out


def test_a_replaced_model_file_is_told_apart_from_the_one_that_was_tested(tmp_path):
    model = tmp_path / "m.pth"
    model.write_bytes(b"the model that was tested")
    source = {"model": str(model), **{f"model_{key}": value for key, value in file_identity(model).items()}}
    per_image.check_model_file(source, "m_per_image.csv")
    model.write_bytes(b"a model trained again")
    with pytest.raises(ProjectError):
        per_image.check_model_file(source, "m_per_image.csv")
    model.unlink()
    with pytest.raises(ProjectError):
        per_image.check_model_file(source, "m_per_image.csv")
