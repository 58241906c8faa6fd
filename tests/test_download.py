import hashlib
import http.server
import os
import shutil
import tarfile
import threading

import pytest

import download
from conftest import make_dataset
from errors import ProjectError
from oxford_pet import load_dataset


@pytest.fixture
def archives(tmp_path, monkeypatch):
    """images.tar.gz and annotations.tar.gz of a two-sample dataset in tmp_path/server, with their MD5s in force."""
    source = make_dataset(tmp_path / "source", ["a", "b"])
    server = tmp_path / "server"
    server.mkdir()
    md5 = {}
    for folder in ("images", "annotations"):
        with tarfile.open(server / f"{folder}.tar.gz", "w:gz") as tar:
            tar.add(source / folder, arcname=folder)
        md5[f"{folder}.tar.gz"] = hashlib.md5((server / f"{folder}.tar.gz").read_bytes()).hexdigest()
    monkeypatch.setattr(download, "ARCHIVE_MD5", md5)
    return server


def leftovers(folder):
    return sorted(path.name for path in folder.iterdir()
                  if path.name.endswith(".part") or path.name.startswith(".extract"))


def test_download_falls_back_to_the_mirror_restarts_a_bad_partial_file_and_extracts(tmp_path, monkeypatch, archives):
    monkeypatch.setattr(download, "BASE_URLS", ["http://127.0.0.1:9/", archives.as_uri() + "/"])
    data = tmp_path / "data"
    data.mkdir()
    (data / "images.tar.gz.part").write_bytes(b"garbage from an interrupted download")
    dataset = load_dataset(data, "test", image_size=16)
    assert dataset.names == ["a", "b"]
    assert (data / "images.tar.gz").read_bytes() == (archives / "images.tar.gz").read_bytes()
    assert leftovers(data) == []


@pytest.fixture(params=["data filter", "checked members"])
def extraction(request, monkeypatch):
    """Run a test with tarfile's data filter and with the check that replaces it on Pythons without one."""
    if request.param == "data filter" and not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python's tarfile has no data filter")
    if request.param == "checked members":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)


def test_archives_put_there_by_hand_are_used_without_network(tmp_path, monkeypatch, archives, extraction):
    monkeypatch.setattr(download, "BASE_URLS", ["http://127.0.0.1:9/"])
    data = tmp_path / "data"
    shutil.copytree(archives, data)
    assert len(load_dataset(data, "test", image_size=16)) == 2


def test_complete_partial_download_is_finished_without_network(tmp_path, monkeypatch, archives):
    monkeypatch.setattr(download, "BASE_URLS", ["http://127.0.0.1:9/"])
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(archives / "annotations.tar.gz", data / "annotations.tar.gz")
    shutil.copy(archives / "images.tar.gz", data / "images.tar.gz.part")
    assert len(load_dataset(data, "test", image_size=16)) == 2


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with HTTP Range support and records the Range headers it was sent."""
    ranges = []

    def do_GET(self):
        data = (self.server.folder / self.path.lstrip("/")).read_bytes()
        requested = self.headers.get("Range")
        self.ranges.append(requested)
        start = int(requested[len("bytes="):-1]) if requested else 0
        self.send_response(206 if requested else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args):
        pass


def test_partial_download_is_resumed(tmp_path, monkeypatch, archives):
    server = http.server.HTTPServer(("127.0.0.1", 0), RangeHandler)
    server.folder = archives
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(download, "BASE_URLS", [f"http://127.0.0.1:{server.server_port}/"])
        data = tmp_path / "data"
        data.mkdir()
        whole = (archives / "images.tar.gz").read_bytes()
        (data / "images.tar.gz.part").write_bytes(whole[:100])
        assert len(load_dataset(data, "test", image_size=16)) == 2
    finally:
        server.shutdown()
        server.server_close()
    assert RangeHandler.ranges[0] == "bytes=100-"
    assert (data / "images.tar.gz").read_bytes() == whole


def test_bad_checksum_leaves_no_archive(tmp_path, monkeypatch, archives):
    monkeypatch.setattr(download, "BASE_URLS", [archives.as_uri() + "/"])
    monkeypatch.setitem(download.ARCHIVE_MD5, "images.tar.gz", "0" * 32)
    data = tmp_path / "data"
    with pytest.raises(ProjectError, match="MD5"):
        load_dataset(data, "test", image_size=16)
    assert not (data / "images.tar.gz").exists() and leftovers(data) == []
    assert not (data / "images").exists()


def test_hand_placed_archive_with_a_wrong_checksum_is_an_error(tmp_path, monkeypatch, archives):
    data = tmp_path / "data"
    data.mkdir()
    (data / "images.tar.gz").write_bytes(b"not the archive")
    with pytest.raises(ProjectError, match="has MD5"):
        load_dataset(data, "test", image_size=16)


def test_archive_member_outside_the_folder_is_refused(tmp_path, monkeypatch, archives, extraction):
    evil = tmp_path / "evil.txt"
    evil.write_text("x")
    data = tmp_path / "data"
    data.mkdir()
    with tarfile.open(data / "images.tar.gz", "w:gz") as tar:
        tar.add(evil, arcname="images/../../evil_copy.txt")
    monkeypatch.setitem(download.ARCHIVE_MD5, "images.tar.gz",
                        hashlib.md5((data / "images.tar.gz").read_bytes()).hexdigest())
    shutil.copy(archives / "annotations.tar.gz", data)
    with pytest.raises(ProjectError, match="extracted safely"):
        load_dataset(data, "test", image_size=16)
    assert not (tmp_path / "evil_copy.txt").exists() and not (data / "evil_copy.txt").exists()
    assert not (data / "images").exists() and leftovers(data) == []


def test_offline_error_names_the_official_urls_and_where_to_put_the_files(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "BASE_URLS", ["http://127.0.0.1:9/", "http://127.0.0.1:9/mirror/"])
    data = tmp_path / "data"
    with pytest.raises(ProjectError) as error:
        load_dataset(data, "train")
    message = str(error.value)
    assert all(url in message for url in download.OFFICIAL_URLS)
    assert str(data) in message and "images/ and annotations/" in message and "127.0.0.1:9" in message
    assert not os.listdir(data)
