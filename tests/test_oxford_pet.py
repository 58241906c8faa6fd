import codecs
import pickle
import shutil
import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

import oxford_pet
from conftest import SAMPLE, add_sample, make_dataset, random_rgb, striped_trimap, write_lists
from oxford_pet import MODES, OxfordPetDataset, SimpleOxfordPetDataset, load_dataset, read_split, split_labels
from data import SeededSampler, build_loader
from errors import ProjectError
from transforms import SegmentationTransform


def skip_warnings(caught):
    return [str(w.message) for w in caught if str(w.message).startswith("skipped")]


# ---------------------------------------------------------------- splits and items

def test_split_rule_gives_the_report_counts_on_the_official_lists(tmp_path):
    full = SAMPLE / "annotations" / "official_full_lists"
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "trainval.txt").write_text("# a comment\n" + (full / "trainval.txt").read_text())
    shutil.copy(full / "test.txt", tmp_path / "annotations" / "test.txt")
    listed = [line.split()[0] for line in (full / "trainval.txt").read_text().splitlines() if line.strip()]
    train, valid, test = (read_split(tmp_path, mode) for mode in MODES)
    assert (len(train), len(valid), len(test)) == (3312, 368, 3669)
    assert valid == listed[::10]
    assert sorted(train + valid) == sorted(listed)


def test_species_come_from_the_list_and_breeds_from_the_names(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "test.txt").write_text("Bengal_10 6 1 3\nsaint_bernard_2 30 2 19\nodd_one_4\n")
    assert split_labels(tmp_path, "test") == {
        "Bengal_10": ("cat", "Bengal"), "saint_bernard_2": ("dog", "saint_bernard"), "odd_one_4": ("dog", "odd_one")}


LIST = "# name class species breed\nBengal_10 6 1 3\nsaint_bernard_2 30 2 19\n"


@pytest.mark.parametrize("data", [LIST.encode(), codecs.BOM_UTF8 + LIST.encode(), LIST.encode("utf-16"),
                                  codecs.BOM_UTF16_BE + LIST.encode("utf-16-be"), LIST.replace("\n", "\r\n").encode()],
                         ids=["utf8", "utf8_bom", "utf16_le_bom", "utf16_be_bom", "crlf"])
def test_lists_in_utf8_or_utf16_with_a_byte_order_mark_give_every_name(tmp_path, data):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "test.txt").write_bytes(data)
    (tmp_path / "annotations" / "trainval.txt").write_bytes(data)
    assert read_split(tmp_path, "test") == ["Bengal_10", "saint_bernard_2"]
    assert read_split(tmp_path, "valid") == ["Bengal_10"] and read_split(tmp_path, "train") == ["saint_bernard_2"]
    assert split_labels(tmp_path, "test")["Bengal_10"] == ("cat", "Bengal")


@pytest.mark.parametrize("data", ["Bengal_10 6 1 3\nchat_\xe9t\xe9_1 6 1 3\n".encode("latin-1"),
                                  LIST.encode("utf-16-le"), LIST.encode("utf-16")[:-1]],
                         ids=["latin1", "utf16_without_bom", "truncated_utf16"])
def test_a_list_that_is_not_utf8_or_marked_utf16_is_an_error_naming_it(tmp_path, data):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "test.txt").write_bytes(data)
    with pytest.raises(ProjectError, match="test.txt"):
        read_split(tmp_path, "test")


def test_unknown_split_is_an_error(tmp_path):
    with pytest.raises(ProjectError, match="valid"):
        read_split(make_dataset(tmp_path, ["a"]), "validation")


def test_item_is_true_size_rgb_and_mask_maps_trimap(tmp_path):
    make_dataset(tmp_path, ["cat"])
    item = OxfordPetDataset(tmp_path, "test")[0]
    trimap = striped_trimap(10, 12)
    assert item["name"] == "cat"
    assert item["image"].dtype == np.uint8 and np.array_equal(item["image"], random_rgb())
    assert np.array_equal(item["trimap"], trimap)
    assert item["mask"].dtype == np.uint8
    assert np.array_equal(item["mask"], ((trimap == 1) | (trimap == 3)).astype(np.uint8))
    assert set(np.unique(item["trimap"][item["mask"] == 0])) == {2}


def test_odd_image_formats_load_as_rgb_of_true_size(tmp_path):
    rgb = random_rgb()
    palette = Image.new("P", (12, 10))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.paste(1, (0, 0, 6, 10))
    add_sample(tmp_path, "png_named_jpg", Image.fromarray(rgb), "PNG")
    add_sample(tmp_path, "rgba", Image.fromarray(np.dstack([rgb, np.full((10, 12), 128, np.uint8)])), "PNG")
    add_sample(tmp_path, "gif", palette, "GIF")
    add_sample(tmp_path, "gray", Image.fromarray(rgb[..., 0]), "JPEG")
    add_sample(tmp_path, "cmyk", Image.new("CMYK", (12, 10), (0, 0, 0, 0)), "JPEG")
    names = ["png_named_jpg", "rgba", "gif", "gray", "cmyk"]
    write_lists(tmp_path, test=names)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = OxfordPetDataset(tmp_path, "test")
    assert skip_warnings(caught) == [] and dataset.names == names
    images = {item["name"]: item["image"] for item in dataset}
    assert all(image.shape == (10, 12, 3) and image.dtype == np.uint8 for image in images.values())
    assert np.array_equal(images["png_named_jpg"], rgb) and np.array_equal(images["rgba"], rgb)
    assert (images["gif"][:, :6] == [0, 0, 255]).all() and (images["gif"][:, 6:] == [255, 0, 0]).all()
    assert (images["gray"][..., 0] == images["gray"][..., 2]).all()
    assert images["cmyk"].min() > 240  # no ink is white


def write_png16(path, values):
    """A 16-bit PNG of H x W (gray), H x W x 2 (gray, alpha), x 3 (RGB) or x 4 (RGBA) values, written byte by byte:
    Pillow writes 16-bit PNGs of grayscale only."""
    values = np.asarray(values, np.uint16)
    height, width = values.shape[:2]
    color_type = 0 if values.ndim == 2 else {2: 4, 3: 2, 4: 6}[values.shape[2]]

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in values.reshape(height, -1))
    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))


def test_16_bit_images_read_as_their_8_bit_values(tmp_path):
    rgb = random_rgb()
    wide = rgb.astype(np.uint16) * 257  # the 16-bit value of 8-bit v is 257 v
    opaque = np.full((10, 12), 65535)
    files = {"gray16": wide[..., 0], "gray16_alpha": np.dstack([wide[..., 0], opaque]), "rgb16": wide,
             "rgba16": np.dstack([wide, opaque])}
    for name, values in files.items():
        add_sample(tmp_path, name)
        write_png16(tmp_path / "images" / f"{name}.jpg", values)
    add_sample(tmp_path, "gray32", Image.fromarray(wide[..., 0].astype(np.int32)), "TIFF")  # mode I
    names = [*files, "gray32"]
    write_lists(tmp_path, test=names)
    assert Image.open(tmp_path / "images" / "gray16.jpg").mode == "I;16"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = OxfordPetDataset(tmp_path, "test")
    assert skip_warnings(caught) == [] and dataset.names == names
    images = {item["name"]: item["image"] for item in dataset}
    gray = np.repeat(rgb[..., :1], 3, axis=2)
    for name in ("gray16", "gray16_alpha", "gray32"):
        assert np.array_equal(images[name], gray), name
    assert np.array_equal(images["rgb16"], rgb) and np.array_equal(images["rgba16"], rgb)
    upright = oxford_pet.read_image(tmp_path / "images" / "gray16.jpg", upright=True)
    assert np.array_equal(upright, gray)
    cached = SimpleOxfordPetDataset(tmp_path, "test", image_size=8)[0]["image"]
    assert np.array_equal(cached, oxford_pet.resize_image(gray, 8).transpose(2, 0, 1))


@pytest.mark.parametrize("image", [Image.fromarray(np.full((10, 12), 0.5, np.float32)),
                                   Image.fromarray(np.full((10, 12), 70_000, np.int32))], ids=["float", "32_bit"])
def test_images_of_unknown_range_are_refused_naming_the_file(tmp_path, image):
    path = tmp_path / "odd.tif"
    image.save(path)
    with pytest.raises(ProjectError, match="odd.tif"):
        oxford_pet.read_image(path)


def test_a_trimap_saved_as_16_bit_png_reads_as_1_2_3(tmp_path):
    make_dataset(tmp_path, ["a"])
    Image.fromarray(striped_trimap(10, 12).astype(np.uint16)).save(tmp_path / "annotations" / "trimaps" / "a.png")
    assert Image.open(tmp_path / "annotations" / "trimaps" / "a.png").mode == "I;16"
    assert np.array_equal(OxfordPetDataset(tmp_path, "test")[0]["trimap"], striped_trimap(10, 12))
    cached = SimpleOxfordPetDataset(tmp_path, "test", image_size=8)[0]["trimap"]
    assert np.array_equal(cached, oxford_pet.resize_trimap(striped_trimap(10, 12), 8))


def damage_samples(root):
    """Six ways a listed sample cannot be used, beside two good ones; returns the file each problem is in."""
    good = ["good_1", "good_2"]
    bad = ["truncated", "no_trimap", "no_image", "not_an_image", "not_a_trimap", "small_trimap"]
    for name in good + bad:
        add_sample(root, name, Image.fromarray(random_rgb(64, 64)), "JPEG")
    jpeg = root / "images" / "truncated.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    (root / "annotations" / "trimaps" / "no_trimap.png").unlink()
    (root / "images" / "no_image.jpg").unlink()
    (root / "images" / "not_an_image.jpg").write_text("<html>404</html>")
    Image.fromarray(np.full((64, 64), 255, np.uint8)).save(root / "annotations" / "trimaps" / "not_a_trimap.png")
    Image.fromarray(striped_trimap(32, 32)).save(root / "annotations" / "trimaps" / "small_trimap.png")
    write_lists(root, test=good[:1] + bad + good[1:])
    return good, ["truncated.jpg", "no_trimap.png", "no_image.jpg", "not_an_image.jpg", "not_a_trimap.png",
                  "small_trimap.png"]


@pytest.mark.parametrize("make", [lambda root: OxfordPetDataset(root, "test"),
                                  lambda root: SimpleOxfordPetDataset(root, "test", image_size=8, use_cache=False),
                                  lambda root: SimpleOxfordPetDataset(root, "test", image_size=8)],
                         ids=["true_size", "resized", "cached"])
def test_unusable_samples_are_skipped_with_a_warning_naming_each_file(tmp_path, make):
    good, bad_files = damage_samples(tmp_path)
    with pytest.warns(UserWarning, match="skipped 6 of 8 test samples") as caught:
        dataset = make(tmp_path)
    message = " ".join(skip_warnings(caught))
    assert all(file in message for file in bad_files)
    assert dataset.names == good
    assert [item["name"] for item in dataset] == good


def test_split_with_nothing_usable_is_an_error(tmp_path):
    make_dataset(tmp_path, ["a", "b"])
    for name in ("a", "b"):
        (tmp_path / "images" / f"{name}.jpg").write_bytes(b"")
    with pytest.warns(UserWarning), pytest.raises(ProjectError, match="none of the 2 test samples"):
        OxfordPetDataset(tmp_path, "test")


# ---------------------------------------------------------------- resized dataset and its cache

def test_resized_items_are_uint8_chw_and_the_cache_matches_the_originals(tmp_path):
    make_dataset(tmp_path, ["a", "b"])
    cached = SimpleOxfordPetDataset(tmp_path, "test", image_size=16)
    direct = SimpleOxfordPetDataset(tmp_path, "test", image_size=16, use_cache=False)
    item = cached[1]
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == np.uint8
    assert item["image"].flags["C_CONTIGUOUS"]
    assert item["mask"].shape == item["trimap"].shape == (16, 16) and item["mask"].dtype == np.uint8
    assert set(np.unique(item["mask"])) == {0, 1} and set(np.unique(item["trimap"])) == {1, 2, 3}
    expected = np.array(Image.fromarray(random_rgb()).resize((16, 16), Image.BILINEAR)).transpose(2, 0, 1)
    assert np.array_equal(item["image"], expected)
    for a, b in zip(cached, direct):
        assert all(np.array_equal(a[key], b[key]) for key in ("image", "mask", "trimap"))


def test_transform_runs_on_the_resized_hwc_arrays(tmp_path):
    make_dataset(tmp_path, ["a"])
    seen = []

    def flip(image, mask, trimap):
        seen.append((image.shape, mask.shape, trimap.shape))
        return image[:, ::-1], mask[:, ::-1], trimap[:, ::-1]

    plain = SimpleOxfordPetDataset(tmp_path, "test", image_size=16)[0]
    flipped = SimpleOxfordPetDataset(tmp_path, "test", transform=flip, image_size=16)[0]
    assert seen == [((16, 16, 3), (16, 16), (16, 16))]
    assert np.array_equal(flipped["image"], plain["image"][:, :, ::-1]) and flipped["image"].flags["C_CONTIGUOUS"]
    assert np.array_equal(flipped["mask"], plain["mask"][:, ::-1])
    augmented = SimpleOxfordPetDataset(tmp_path, "test", transform=SegmentationTransform(seed=0), image_size=16)[0]
    assert augmented["image"].shape == (3, 16, 16) and augmented["mask"].shape == (16, 16)


def test_an_index_with_a_seed_gives_the_same_augmentation_whatever_came_before(tmp_path):
    make_dataset(tmp_path, [f"pet_{i}" for i in range(3)])
    dataset = SimpleOxfordPetDataset(tmp_path, "test", transform=SegmentationTransform(seed=0), image_size=16,
                                     use_cache=False)
    images = [dataset[(0, seed)]["image"] for seed in range(8)]
    assert any(not np.array_equal(images[0], other) for other in images[1:])
    for key in ((1, 5), 2):  # other draws in between must not change what (0, 3) gives
        dataset[key]
    assert np.array_equal(dataset[(0, 3)]["image"], images[3])


def test_persistent_workers_give_the_epochs_of_a_single_process(tmp_path):
    make_dataset(tmp_path, [f"pet_{i}" for i in range(6)])
    dataset = SimpleOxfordPetDataset(tmp_path, "test", transform=SegmentationTransform(seed=0), image_size=16)

    def two_epochs(num_workers):
        sampler = SeededSampler(dataset, seed=7)
        loader = build_loader(dataset, 2, num_workers, torch.device("cpu"), sampler=sampler)
        epochs = []
        for epoch in (1, 2):
            sampler.set_epoch(epoch)
            epochs.append([(batch["name"], batch["image"]) for batch in loader])
        return epochs

    single, workers = two_epochs(0), two_epochs(2)
    assert [names for names, _ in single[0]] != [names for names, _ in single[1]]
    for epoch_single, epoch_workers in zip(single, workers):
        for (names, images), (worker_names, worker_images) in zip(epoch_single, epoch_workers, strict=True):
            assert names == worker_names and torch.equal(images, worker_images)


def count_decodes(monkeypatch):
    calls = []
    read_image = oxford_pet.read_image

    def counting(path):
        calls.append(path)
        return read_image(path)

    monkeypatch.setattr(oxford_pet, "read_image", counting)
    return calls


def cache_entries(root):
    return sorted(path.name for path in (root / ".cache").iterdir())


def test_cache_is_reused_without_decoding(tmp_path, monkeypatch):
    make_dataset(tmp_path, ["a", "b"])
    (tmp_path / "images" / "b.jpg").write_bytes(b"broken")
    with pytest.warns(UserWarning, match="skipped 1 of 2"):
        first = SimpleOxfordPetDataset(tmp_path, "test", image_size=16)

    def fail(path):
        raise AssertionError(f"decoded {path} again")

    monkeypatch.setattr(oxford_pet, "read_image", fail)
    with pytest.warns(UserWarning, match="skipped 1 of 2 .*b.jpg"):
        second = SimpleOxfordPetDataset(tmp_path, "test", image_size=16)
    assert second.names == first.names == ["a"]
    assert np.array_equal(second[0]["image"], first[0]["image"])
    assert len(cache_entries(tmp_path)) == 1


def test_cache_is_rebuilt_when_a_file_or_the_list_changes(tmp_path, monkeypatch):
    make_dataset(tmp_path, ["a", "b"])
    before = SimpleOxfordPetDataset(tmp_path, "test", image_size=16)[0]["image"]
    entries = cache_entries(tmp_path)
    decodes = count_decodes(monkeypatch)
    Image.fromarray(random_rgb(seed=1)).save(tmp_path / "images" / "a.jpg", format="PNG")
    after = SimpleOxfordPetDataset(tmp_path, "test", image_size=16)[0]["image"]
    assert len(decodes) == 2 and not np.array_equal(before, after)
    assert cache_entries(tmp_path) != entries and len(cache_entries(tmp_path)) == 1  # the stale one is deleted
    write_lists(tmp_path, test=["b"])
    assert SimpleOxfordPetDataset(tmp_path, "test", image_size=16).names == ["b"]
    assert len(decodes) == 3


def test_interrupted_cache_build_leaves_nothing_that_loads(tmp_path, monkeypatch):
    make_dataset(tmp_path, ["a", "b", "c"])
    resize = oxford_pet.resize_image
    calls = []

    def interrupted(image, size):
        calls.append(size)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return resize(image, size)

    monkeypatch.setattr(oxford_pet, "resize_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        SimpleOxfordPetDataset(tmp_path, "test", image_size=16)
    assert cache_entries(tmp_path) == []
    monkeypatch.setattr(oxford_pet, "resize_image", resize)
    decodes = count_decodes(monkeypatch)
    assert len(SimpleOxfordPetDataset(tmp_path, "test", image_size=16)) == 3 and len(decodes) == 3


def test_a_killed_build_is_not_mistaken_for_a_cache(tmp_path, monkeypatch):
    make_dataset(tmp_path, ["a", "b"])
    SimpleOxfordPetDataset(tmp_path, "test", image_size=16)
    entry = tmp_path / ".cache" / cache_entries(tmp_path)[0]
    entry.rename(entry.with_name(f".{entry.name}.killed.tmp"))  # everything written, but never renamed
    decodes = count_decodes(monkeypatch)
    SimpleOxfordPetDataset(tmp_path, "test", image_size=16)
    assert len(decodes) == 2


def test_damaged_cache_is_rebuilt(tmp_path, monkeypatch):
    make_dataset(tmp_path, ["a", "b"])
    good = SimpleOxfordPetDataset(tmp_path, "test", image_size=16)[1]["image"]
    images = tmp_path / ".cache" / cache_entries(tmp_path)[0] / "images.npy"
    images.write_bytes(images.read_bytes()[:-100])
    decodes = count_decodes(monkeypatch)
    with pytest.warns(UserWarning, match="rebuilding the damaged resize cache"):
        dataset = SimpleOxfordPetDataset(tmp_path, "test", image_size=16)
    assert len(decodes) == 2 and np.array_equal(dataset[1]["image"], good)


def test_cache_folder_falls_back_when_the_dataset_is_read_only(tmp_path, monkeypatch):
    root = make_dataset(tmp_path / "data", ["a"])
    explicit = SimpleOxfordPetDataset(root, "test", image_size=16, cache_dir=tmp_path / "mine")
    assert explicit.cache_entry.parent == tmp_path / "mine"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user"))
    root.chmod(0o555)
    try:
        dataset = SimpleOxfordPetDataset(root, "test", image_size=16)
    finally:
        root.chmod(0o755)
    assert dataset.cache_entry.parent.parent == tmp_path / "user" / "oxford-pet-seg"
    assert not (root / ".cache").exists() and len(dataset) == 1


def test_worker_copies_reopen_the_cache_instead_of_carrying_it(tmp_path):
    make_dataset(tmp_path, ["a", "b", "c"])
    dataset = SimpleOxfordPetDataset(tmp_path, "test", image_size=64)
    pickled = pickle.dumps(dataset)  # what a spawned DataLoader worker receives
    assert len(pickled) < dataset.arrays[0][0].nbytes
    assert np.array_equal(pickle.loads(pickled)[2]["image"], dataset[2]["image"])


# ---------------------------------------------------------------- the bundled sample

def test_bundled_sample_loads_every_split(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        splits = {mode: SimpleOxfordPetDataset(SAMPLE, mode, image_size=32, cache_dir=tmp_path) for mode in MODES}
    assert skip_warnings(caught) == []
    assert {mode: len(dataset) for mode, dataset in splits.items()} == {"train": 56, "valid": 7, "test": 30}
    train = splits["train"]
    assert any(name[0].isupper() for name in train.names) and any(name[0].islower() for name in train.names)
    assert train[train.names.index("Abyssinian_34")]["mask"].max() == 0  # a GIF whose trimap has no pet pixel
    test = OxfordPetDataset(SAMPLE, "test")
    assert test[test.names.index("Abyssinian_5")]["image"].shape == (150, 200, 3)  # a PNG with alpha


def test_missing_dataset_without_download_is_an_error(tmp_path):
    with pytest.raises(ProjectError, match="no images/ and no annotations/"):
        load_dataset(tmp_path, "train", download=False)
