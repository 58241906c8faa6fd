"""Oxford-IIIT Pet for binary pet/background segmentation: splits, loading and a resize cache (download.py fetches it).

A dataset folder has the release's layout: images/<name>.jpg, annotations/trimaps/<name>.png,
annotations/trainval.txt and annotations/test.txt (first column the name; lines starting with # are comments; UTF-8,
or UTF-16 with a byte-order mark).
Splits: the i-th name of trainval.txt (0-based) is "valid" when i % 10 == 0 and "train" otherwise; test.txt is
"test" (3,312 / 368 / 3,669 on the full release). Masks: trimap 1 (pet) and 3 (border) -> 1, 2 (background) -> 0.

Files that are not what their names say: every image is decoded by Pillow, whatever its real format (the release
has a PNG with alpha and a GIF named .jpg, grayscale and CMYK JPEGs), and converted to 3-channel RGB of its true
size, 16-bit images scaled to 8 bits. Truncated files are never padded. When a dataset is built, a listed sample
whose image or trimap is missing, unreadable or truncated, whose trimap is not the image's size or holds values
other than 1, 2 and 3, is skipped, with one warning that counts the skipped samples and names each file and why;
a split with nothing usable left is a ProjectError.

Resize cache (SimpleOxfordPetDataset, use_cache=True): the first use of a split at a size decodes, checks and
resizes every sample into <cache folder>/<mode>-<size>-<key>/ (images.npy, trimaps.npy, index.json), where the
key hashes the listed names and the size and modification time of each of their files, so a changed list or
file gives a new cache (the old one is deleted). The folder is built under a temporary name and renamed in one
step, so an interrupted build never leaves a folder that opens as a cache. Later datasets and DataLoader
workers only memory-map it. The cache folder is cache_dir when given, else <root>/.cache when the dataset
folder is writable (os.access allows it and it has a write permission bit, so a folder marked read-only is left
alone even by root), else $XDG_CACHE_HOME (default ~/.cache)/oxford-pet-seg/<hash of the dataset folder's path>.
"""
import codecs
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from tqdm import tqdm

from device import is_main_process
from download import download_dataset
from errors import ProjectError

MODES = ("train", "valid", "test")
TRIMAP_VALUES = (1, 2, 3)
CACHE_FORMAT = 2  # bump when what the cache holds or how it is resized changes
IMAGE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


# ---------------------------------------------------------------- reading one sample

def split_lines(root, mode):
    """The list lines of a split, in list order, each as its fields (name, class id, species, breed id)."""
    if mode not in MODES:
        raise ProjectError(f"unknown split {mode!r}; the splits are {', '.join(MODES)}.")
    list_path = Path(root) / "annotations" / ("test.txt" if mode == "test" else "trainval.txt")
    if not list_path.is_file():
        raise ProjectError(f"{list_path} not found; a dataset folder needs the Oxford-IIIT Pet layout: images/, "
                           f"annotations/trimaps/, annotations/trainval.txt and annotations/test.txt.")
    lines = (line.strip() for line in read_list_text(list_path).splitlines())
    fields = [line.split() for line in lines if line and not line.startswith("#")]
    if mode != "test":
        fields = [row for i, row in enumerate(fields) if (i % 10 == 0) == (mode == "valid")]
    if not fields:
        raise ProjectError(f"{list_path} lists no {mode} sample.")
    return fields


def read_list_text(path):
    """The text of a split list saved as UTF-8 (with or without a byte-order mark) or as UTF-16 with a byte-order
    mark; ProjectError naming the file when it is neither."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ProjectError(f"{path} could not be read ({error}).") from None
    encoding = "utf-16" if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        raise ProjectError(f"{path} is not text in UTF-8, or in UTF-16 with a byte-order mark ({error}); save it "
                           "as UTF-8.") from None
    if "\x00" in text:  # UTF-16 without a byte-order mark decodes as UTF-8 with a NUL beside every letter
        raise ProjectError(f"{path} holds NUL characters, so it is not a list of names in UTF-8 (UTF-16 without a "
                           "byte-order mark?); save it as UTF-8.")
    return text


def read_split(root, mode):
    """The names of a split, in list order."""
    return [row[0] for row in split_lines(root, mode)]


def split_labels(root, mode):
    """{name: (species, breed)} of a split. The species is the list's third column (1 cat, 2 dog), or, where a
    list has no such column, the release's naming rule (cat breeds are capitalised); the breed is the name
    without its trailing number."""
    labels = {}
    for row in split_lines(root, mode):
        name = row[0]
        cat = row[2] == "1" if len(row) > 2 else name[:1].isupper()
        labels[name] = ("cat" if cat else "dog", name.rpartition("_")[0] or name)
    return labels


def sample_paths(root, name):
    return Path(root) / "images" / f"{name}.jpg", Path(root) / "annotations" / "trimaps" / f"{name}.png"


def read_image(path, upright=False):
    """Any image Pillow reads, whatever its name says, as H x W x 3 uint8 RGB of its true size.

    upright applies the EXIF orientation (for photos; the dataset's trimaps match the stored pixels, so not there).
    A missing, unreadable or truncated file, or one whose pixel values have no known range, raises ProjectError.
    """
    path = Path(path)
    if not path.is_file():
        raise ProjectError(f"{path}: no such file.")
    try:
        with Image.open(path) as file:
            return rgb_array(ImageOps.exif_transpose(file) if upright else file, path)
    except IMAGE_ERRORS as error:
        raise ProjectError(f"{path} could not be read as an image ({error}).") from None


def rgb_array(image, path):
    """An opened image as H x W x 3 uint8 RGB.

    Pillow opens 16-bit RGB and 16-bit grayscale with alpha as 8-bit RGB and RGBA, keeping the high byte of each
    value, but 16-bit grayscale as "I;16" (older versions: "I"), which its own conversion to RGB clips to white;
    those keep their high byte here too. An "I" image with values beyond 16 bits and a floating-point "F" image
    have no known black and white, so they are refused.
    """
    if image.mode == "F":
        raise ProjectError(f"{path} is a floating-point (mode F) image, whose values have no known black and white; "
                           "save it with 8 or 16 bits per channel.")
    if image.mode == "I" or image.mode.startswith("I;16"):
        values = np.array(image)
        if values.min() < 0 or values.max() > 65535:
            raise ProjectError(f"{path} is a mode {image.mode} image with values from {values.min()} to "
                               f"{values.max()}, beyond 16 bits, so they have no known black and white; save it "
                               "with 8 or 16 bits per channel.")
        return np.repeat((values >> 8).astype(np.uint8)[..., None], 3, axis=2)
    return np.array(image.convert("RGB"))


def read_trimap(path, shape):
    """A trimap as an H x W uint8 array; ProjectError unless readable, of the given shape, and holding only 1, 2, 3."""
    path = Path(path)
    if not path.is_file():
        raise ProjectError(f"{path}: no such file.")
    try:
        with Image.open(path) as file:
            trimap = np.array(file)
    except IMAGE_ERRORS as error:
        raise ProjectError(f"{path} could not be read as a trimap ({error}).") from None
    if trimap.shape != shape:
        raise ProjectError(f"{path} has shape {trimap.shape}, but a trimap must be one channel of its image's "
                           f"size {shape}.")
    if not np.isin(trimap, TRIMAP_VALUES).all():
        raise ProjectError(f"{path} holds values other than 1, 2 and 3, so it is not a trimap.")
    return trimap.astype(np.uint8, copy=False)


def read_sample(root, name):
    """(image, trimap) of a listed name at true size; ProjectError naming the file that cannot be used."""
    image_path, trimap_path = sample_paths(root, name)
    image = read_image(image_path)
    return image, read_trimap(trimap_path, image.shape[:2])


def mask_from_trimap(trimap):
    return ((trimap == 1) | (trimap == 3)).astype(np.uint8)


def resize_image(image, size):
    """H x W x 3 uint8 -> size x size x 3, bilinear."""
    return np.array(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def resize_trimap(trimap, size):
    """H x W uint8 -> size x size, nearest neighbour, so no new class values appear."""
    return np.array(Image.fromarray(trimap).resize((size, size), Image.NEAREST))


def progress(items, description):
    return tqdm(items, desc=description, unit="img", leave=False, disable=not is_main_process())


def keep_usable(names, problems, mode):
    """The names without a problem; warn once about the skipped ones, naming each file; error when none is left."""
    if problems:
        warnings.warn(f"skipped {len(problems)} of {len(names)} {mode} samples: " + " ".join(problems.values()))
    usable = [name for name in names if name not in problems]
    if not usable:
        raise ProjectError(f"none of the {len(names)} {mode} samples could be used (every image or trimap is "
                           f"missing or unreadable; see the warning above).")
    return usable


# ---------------------------------------------------------------- datasets

class OxfordPetDataset(torch.utils.data.Dataset):
    """Samples at true size: {"image": H x W x 3 uint8 RGB, "mask": H x W uint8 0/1, "trimap": H x W uint8, "name"}.

    transform, when given, is called as image, mask, trimap = transform(image, mask, trimap).
    """

    def __init__(self, root, mode="train", transform=None):
        self.root = Path(root)
        self.mode = mode
        self.transform = transform
        listed = read_split(self.root, mode)
        self.names = keep_usable(listed, self.find_problems(listed), mode)

    def find_problems(self, names):
        """{name: why} for the samples that cannot be used; decodes every file once."""
        problems = {}
        for name in progress(names, f"checking {self.mode} files"):
            try:
                read_sample(self.root, name)
            except ProjectError as error:
                problems[name] = str(error)
        return problems

    def load(self, index):
        return read_sample(self.root, self.names[index])

    def __len__(self):
        return len(self.names)

    def __getitem__(self, key):
        """key: an index, or (index, seed) as data.SeededSampler yields, to augment the sample from that seed."""
        index, seed = key if isinstance(key, tuple) else (key, None)
        image, trimap = self.load(index)
        mask = mask_from_trimap(trimap)
        if self.transform is not None:
            if seed is not None:
                self.transform.set_random_seed(seed)
            image, mask, trimap = self.transform(image, mask, trimap)
        return {"image": np.ascontiguousarray(image), "mask": np.ascontiguousarray(mask),
                "trimap": np.ascontiguousarray(trimap), "name": self.names[index]}


class SimpleOxfordPetDataset(OxfordPetDataset):
    """Samples resized to S x S (S = image_size): {"image": 3 x S x S uint8, "mask": S x S uint8 0/1, "trimap", "name"}.

    The transform runs on the resized S x S x 3 image before it becomes channels-first. With use_cache the resized
    samples come from the resize cache (see the module docstring), built here, in the constructor.
    """

    def __init__(self, root, mode="train", transform=None, image_size=256, use_cache=True, cache_dir=None):
        self.image_size = image_size
        self.cache_folder = resolve_cache_folder(Path(root), cache_dir) if use_cache else None
        self.cache_entry = None
        self.arrays = None
        super().__init__(root, mode, transform)

    def find_problems(self, names):
        if self.cache_folder is None:
            return super().find_problems(names)
        self.cache_entry, problems, self.arrays = open_or_build_cache(
            self.root, self.mode, self.image_size, names, self.cache_folder)
        return problems

    def load(self, index):
        if self.cache_folder is None:
            image, trimap = super().load(index)
            return resize_image(image, self.image_size), resize_trimap(trimap, self.image_size)
        if self.arrays is None:
            self.arrays = open_cache(self.cache_entry, self.image_size)[1]
        images, trimaps = self.arrays
        return np.array(images[index]), np.array(trimaps[index])

    def __getitem__(self, key):
        item = super().__getitem__(key)
        item["image"] = np.ascontiguousarray(item["image"].transpose(2, 0, 1))
        return item

    def __getstate__(self):
        # Workers started by spawn reopen the memory map rather than receive a pickled copy of the whole cache.
        return dict(self.__dict__, arrays=None)


def load_dataset(data_path, mode, transform=None, image_size=256, use_cache=True, download=True):
    """SimpleOxfordPetDataset of data_path, downloading the dataset first when images/ or annotations/ is missing."""
    data_path = Path(data_path)
    missing = [folder for folder in ("images", "annotations") if not (data_path / folder).is_dir()]
    if missing and not download:
        raise ProjectError(f"{data_path} has no {' and no '.join(f'{folder}/' for folder in missing)} folder; put the "
                           f"Oxford-IIIT Pet images/ and annotations/ folders (or images.tar.gz and "
                           f"annotations.tar.gz) there.")
    if missing:
        download_dataset(data_path, missing)
    return SimpleOxfordPetDataset(data_path, mode, transform, image_size, use_cache)


# ---------------------------------------------------------------- resize cache

def resolve_cache_folder(root, cache_dir=None):
    if cache_dir is not None:
        return Path(cache_dir)
    local = root / ".cache"
    if is_writable(local if local.exists() else root):
        return local
    user_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return user_cache / "oxford-pet-seg" / hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]


def is_writable(path):
    # Root passes os.access everywhere; a folder with no write permission bit is read-only by intent.
    return os.access(path, os.W_OK) and bool(path.stat().st_mode & 0o222)


def cache_key(root, names):
    """A hash of the cache format, the listed names and the size and modification time of each of their files."""
    digest = hashlib.sha256(f"format {CACHE_FORMAT}".encode())
    for name in names:
        digest.update(f"\n{name}".encode())
        for path in sample_paths(root, name):
            try:
                stat = path.stat()
                digest.update(f" {stat.st_size} {stat.st_mtime_ns}".encode())
            except FileNotFoundError:
                digest.update(b" missing")
    return digest.hexdigest()[:16]


def open_cache(entry, size):
    """(problems, (images, trimaps)) of a built cache folder, memory-mapped read-only."""
    index = json.loads((entry / "index.json").read_text())
    images = np.load(entry / "images.npy", mmap_mode="r")
    trimaps = np.load(entry / "trimaps.npy", mmap_mode="r")
    rows = index["rows"]
    if images.shape[1:] != (size, size, 3) or trimaps.shape != images.shape[:3] or len(images) < rows:
        raise ValueError(f"arrays of shape {images.shape} and {trimaps.shape} do not hold {rows} samples at {size} px")
    return index["problems"], (images[:rows], trimaps[:rows])


def open_or_build_cache(root, mode, size, names, folder):
    """(entry folder, problems, arrays) of the cache of these names at this size; built first if missing or damaged."""
    entry = folder / f"{mode}-{size}-{cache_key(root, names)}"
    if entry.is_dir():
        try:
            return entry, *open_cache(entry, size)
        except (OSError, ValueError, KeyError) as error:
            warnings.warn(f"rebuilding the damaged resize cache {entry} ({error})")
            shutil.rmtree(entry, ignore_errors=True)
    try:
        build_cache(root, mode, size, names, entry)
    except OSError as error:
        raise ProjectError(f"could not write the resize cache in {folder} ({error}); free some space there, make it "
                           f"writable, pass another cache folder, or run with --no_cache.") from None
    remove_stale_caches(folder, mode, size, entry)
    return entry, *open_cache(entry, size)


def build_cache(root, mode, size, names, entry):
    """Decode, check and resize every listed sample into a temporary folder, then rename it to entry in one step."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}.", suffix=".tmp"))
    try:
        tmp.chmod(0o755)  # mkdtemp's 0o700 would hide a cache in a shared dataset folder from other users
        rows, problems = write_cache_arrays(root, mode, size, names, tmp)
        (tmp / "index.json").write_text(json.dumps({"rows": rows, "problems": problems}))
        try:
            os.replace(tmp, entry)
        except OSError:
            if not entry.is_dir():  # else another process finished the same cache first, from the same files
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_cache_arrays(root, mode, size, names, folder):
    """Write images.npy and trimaps.npy with one row per listed name, usable samples first; return (rows, problems).

    Plain writes, not a memory map, so a full disk raises OSError instead of killing the process.
    """
    problems, rows = {}, 0
    with open(folder / "images.npy", "wb") as images, open(folder / "trimaps.npy", "wb") as trimaps:
        write_npy_header(images, (len(names), size, size, 3))
        write_npy_header(trimaps, (len(names), size, size))
        for name in progress(names, f"caching {mode} samples at {size} px"):
            try:
                image, trimap = read_sample(root, name)
            except ProjectError as error:
                problems[name] = str(error)
                continue
            images.write(resize_image(image, size).tobytes())
            trimaps.write(resize_trimap(trimap, size).tobytes())
            rows += 1
        # The rows of skipped samples stay zeros at the end, so each file holds as many rows as its header says.
        images.write(bytes(len(problems) * size * size * 3))
        trimaps.write(bytes(len(problems) * size * size))
    return rows, problems


def write_npy_header(file, shape):
    np.lib.format.write_array_header_1_0(file, {"descr": "|u1", "fortran_order": False, "shape": shape})


def remove_stale_caches(folder, mode, size, keep):
    """Delete this split's caches at this size built from other files, and folders of builds killed over an hour ago."""
    for path in folder.glob(f"{mode}-{size}-*"):
        if path != keep:
            shutil.rmtree(path, ignore_errors=True)
    for path in folder.glob(f".{mode}-{size}-*.tmp"):
        if time.time() - path.stat().st_mtime > 3600:
            shutil.rmtree(path, ignore_errors=True)
