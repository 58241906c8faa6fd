"""Fetch the Oxford-IIIT Pet release into a dataset folder: images.tar.gz and annotations.tar.gz, MD5-checked, then
extracted safely.

torchvision checks the MD5s (torchvision.datasets.utils). Its download_url is not used: it writes straight to the
archive's own name (a broken download looks like a finished one), has no timeout, no resuming and no second
server, and reports a network failure as a corrupted file; its extract_archive extracts without a member filter.
Here a download goes to <archive>.part, resumes where a connection broke off, falls back to the mirror, and only a
file with the right MD5 is renamed to the archive's name; extraction refuses members that would land outside the
dataset folder, and a machine without internet gets a message that says where to put the files.
"""
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from torchvision.datasets.utils import calculate_md5, check_integrity
from tqdm import tqdm

from errors import ProjectError

OFFICIAL_URLS = ("https://www.robots.ox.ac.uk/~vgg/data/pets/data/", "https://thor.robots.ox.ac.uk/datasets/pets/")
# Where downloads are tried, in order (tests point it at local files).
BASE_URLS = list(OFFICIAL_URLS)
ARCHIVE_MD5 = {"images.tar.gz": "5c4f3ee8e5d25df40f4fd59a7f44e54c",
               "annotations.tar.gz": "95a8c909bbe2e81eed6a22bccdf3f68f"}
DOWNLOAD_TIMEOUT_S = 30


def download_dataset(data_path, folders=("images", "annotations")):
    """Fetch (or take the hand-placed) <folder>.tar.gz of each folder, check its MD5, and extract it into data_path."""
    data_path = Path(data_path)
    data_path.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        archive = data_path / f"{folder}.tar.gz"
        if archive.is_file():
            check_md5(archive)
        else:
            fetch_archive(archive)
    for folder in folders:
        extract_archive(data_path / f"{folder}.tar.gz", data_path, folder)


def check_md5(archive):
    expected = ARCHIVE_MD5[archive.name]
    if not check_integrity(archive, expected):
        raise ProjectError(f"{archive} has MD5 {calculate_md5(archive)}, not the release's {expected}: it is "
                           f"incomplete or another file. Delete it to have it downloaded again, or replace it with "
                           f"the right file.")


def fetch_archive(archive):
    """Download archive from the first of BASE_URLS that serves it with the right MD5."""
    failures = []
    for base in BASE_URLS:
        url = base + archive.name
        try:
            return fetch(url, archive)
        except (OSError, ValueError, http.client.HTTPException) as error:
            failures.append(f"{url} ({error})")
    urls = " or ".join(url + archive.name for url in OFFICIAL_URLS)
    raise ProjectError(
        f"could not download {archive.name} into {archive.parent}: {'; '.join(failures)}. The Oxford-IIIT Pet "
        f"dataset is published at {urls} (and annotations.tar.gz beside it). Without internet access, download "
        f"images.tar.gz and annotations.tar.gz elsewhere and put them in {archive.parent} (they are checked and "
        f"extracted on the next run), or put their extracted images/ and annotations/ folders there.")


def fetch(url, archive):
    """Download url to <archive>.part, resuming a previous partial download where the server allows, check the MD5,
    then rename to archive; a wrong MD5 deletes the partial file."""
    part = archive.with_name(archive.name + ".part")
    expected = ARCHIVE_MD5[archive.name]
    if check_integrity(part, expected):
        return os.replace(part, archive)
    offset = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code == 416:  # the partial file is longer than the archive: start over next time
            part.unlink()
        raise
    with response:
        if offset and response.status != 206:  # the server sends the whole file: start over
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length else None
        with open(part, "ab" if offset else "wb") as file, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=archive.name) as bar:
            while chunk := response.read(1 << 20):
                file.write(chunk)
                bar.update(len(chunk))
    if not check_integrity(part, expected):
        found = calculate_md5(part)
        part.unlink()
        raise ValueError(f"MD5 {found}, expected {expected}")
    os.replace(part, archive)


def checked_members(tar, staging):
    """The members, when all are plain files or folders that land inside staging: tarfile's "data" filter for
    Pythons older than 3.10.12 / 3.11.4, which lack it."""
    root = staging.resolve()
    members = tar.getmembers()
    for member in members:
        if not (member.isfile() or member.isdir()) or not (root / member.name).resolve().is_relative_to(root):
            raise tarfile.TarError(f"member {member.name!r} is not a plain file or folder inside the archive")
    return members


def extract_archive(archive, data_path, folder):
    """Extract archive into a temporary folder, refusing members that would land outside it, then move folder/ into
    data_path, so an interrupted extraction leaves no half-filled folder."""
    staging = Path(tempfile.mkdtemp(dir=data_path, prefix=".extract-"))
    try:
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(staging, filter="data")
            else:
                tar.extractall(staging, members=checked_members(tar, staging))
        if not (staging / folder).is_dir():
            raise ProjectError(f"{archive} holds no {folder}/ folder, so it is not the Oxford-IIIT Pet {archive.name}.")
        os.replace(staging / folder, data_path / folder)
    except (tarfile.TarError, EOFError) as error:
        raise ProjectError(f"{archive} could not be extracted safely ({error}); delete it and run again, or put "
                           f"the extracted {folder}/ folder in {data_path}.") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
