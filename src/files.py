"""Files that survive a crash, a kill or a full disk: whole files replaced atomically, with the permissions the
umask gives; CSV rows appended the same way under a lock; temporaries of killed writers removed (no torch)."""
import csv
import errno
import hashlib
import io
import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from errors import ProjectError

try:
    import fcntl
except ImportError:  # Windows: appends stay atomic, but two processes appending at once may lose a row
    fcntl = None

FULL_DISK = (errno.ENOSPC, errno.EDQUOT)
LEGACY_TMP_AGE = 3600  # seconds; temporaries named before the writer's pid was part of the name


def check_folder(path, flag):
    """ProjectError unless path is a folder or does not exist yet (it is created when first written)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ProjectError(f"{flag} {path} is an existing file, not a folder; give a folder (it is created if "
                           "missing), or move the file away.")


def make_folder(folder):
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ProjectError(f"cannot write into {folder}: it, or a folder above it, is an existing file.") from None


def file_identity(path):
    """{"bytes", "sha256"} of a file: what tells a later reader that the file is still the one that was used."""
    with open(path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    return {"bytes": Path(path).stat().st_size, "sha256": digest}


def new_file_mode(path):
    """An existing file's own permissions, else what the umask gives a new file (mkstemp's are 0600)."""
    if path.exists():
        return path.stat().st_mode & 0o7777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def writer_is_gone(tmp):
    """Whether a temporary .NAME.PID.XXXXXXXX.tmp was left by a process that no longer runs."""
    pid = tmp.name.split(".")[-3]
    if not pid.isdigit():
        return time.time() - tmp.stat().st_mtime > LEGACY_TMP_AGE
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # a live process of another user
        return False
    return False


def remove_stale_temporaries(path):
    """Delete the temporaries of path that killed writers left behind (never another program's files)."""
    for tmp in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
        try:
            if writer_is_gone(tmp):
                tmp.unlink()
        except OSError:  # removed by another process meanwhile, or not ours to remove
            pass


def glob_escape(name):
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def atomic_write(path, write):
    """Call write(tmp_path), then rename over path, so a crash, a kill or a full disk leaves the previous file
    intact; a full disk is a ProjectError naming the folder."""
    path = Path(path)
    make_folder(path.parent)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, new_file_mode(path))
        os.replace(tmp, path)
    except OSError as error:
        if error.errno in FULL_DISK:
            raise ProjectError(f"could not write {path}: the disk that holds {path.parent} is full (or over its "
                               f"quota). Free some space there, or write elsewhere, and run the same command "
                               f"again; the earlier {path.name}, if there was one, is unchanged.") from None
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_synced(tmp, text):
    """Write text to tmp and flush it to the disk, so a full disk fails here, not later."""
    with open(tmp, "w", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def save_json(data, path):
    atomic_write(path, lambda tmp: write_synced(tmp, json.dumps(data, indent=2)))


def csv_cells(row):
    """A row's values as CSV cells: floats to 6 decimals, everything else as it is."""
    return {key: f"{value:.6f}" if isinstance(value, float) else value for key, value in row.items()}


def csv_text(columns, rows, header=True):
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns)
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_csv(path, rows):
    """Write dicts as a whole CSV file (the first row's keys are the header), atomically."""
    atomic_write(path, lambda tmp: write_synced(tmp, csv_text(list(rows[0]), rows)))


@contextmanager
def locked(folder):
    """Hold an exclusive lock on a folder (not on a file in it, which atomic_write replaces), leaving no file."""
    if fcntl is None:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def append_csv_row(path, row):
    """Append a dict as a CSV row, with the header only when the file is new, by replacing the whole file
    atomically under a lock: a crash or a full disk leaves the file as it was, and two processes never both write
    a header. Earlier rows keep their bytes; columns an older file's header lacks are added at its end, so older
    rows read as empty there. A torn last line (left by an older version killed mid-append) is dropped."""
    path = Path(path)
    make_folder(path.parent)
    with locked(path.parent):
        header, body = split_csv(path)
        columns = header + [column for column in row if column not in header]
        text = csv_text(columns, [], header=True) + body + csv_text(columns, [row], header=False)
        atomic_write(path, lambda tmp: write_synced(tmp, text))


def split_csv(path):
    """(header columns, the rest of the file's text with complete lines only); ([], "") for a missing or empty file."""
    if not path.exists():
        return [], ""
    with open(path, newline="") as f:
        header = next(csv.reader([f.readline()]), [])
        body = f.read()
    if body and not body.endswith("\n"):
        body = body[: body.rfind("\n") + 1]
    return header, body
