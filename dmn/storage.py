"""Where the pipeline keeps its data: a local folder or an object store, through pyarrow filesystems.

A location is a local path (`data`, `/srv/dmn/data`) or a URI that `pyarrow.fs.FileSystem.from_uri` opens:
`s3://bucket/prefix`, `gs://bucket/prefix`, `abfs://container@account.dfs.core.windows.net/prefix`,
`hdfs://namenode:8020/path`, `file:///abs/path`. Options ride in the query string and are kept on every
location joined below it (`s3://dmn/data?endpoint_override=minio.internal:9000&scheme=http`); credentials
come from the environment as each store's SDK reads them (AWS_ACCESS_KEY_ID, GOOGLE_APPLICATION_CREDENTIALS...).

Nothing is seen half written. One file is written whole or not at all: on an object store (S3, GCS, Azure
blobs) by one upload, which shows nothing until it completes; on a filesystem (local, HDFS), where a file
is visible while it is written, as a temporary file renamed into place. A folder is published with a marker
file written last, and readers test `published(folder, marker)`: an object store has no atomic rename of a
folder, so a folder whose upload was cut short has no marker and counts as absent (a local folder is renamed
into place whole, and the same test holds).
"""

from __future__ import annotations

import functools
import io
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pyarrow.fs as pafs

from dmn.errors import ConfigError, display

LOCAL = pafs.LocalFileSystem()
SCHEMES = ("file", "s3", "gs", "gcs", "abfs", "abfss", "hdfs", "viewfs")  # what FileSystem.from_uri opens
OBJECT_STORES = ("s3", "gcs", "abfs")  # pyarrow type names of stores whose uploads appear whole
HALF_A_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:(?!//)")  # 's3:/bucket': a typo, not a local folder


def _is_uri(location: str) -> bool:
    return "://" in location


def check_location(location: str) -> str:
    """`location` itself, if it is a local path or a URI of a scheme pyarrow opens (nothing is contacted)."""
    scheme = urlsplit(location).scheme if _is_uri(location) else ""
    if (scheme and scheme not in SCHEMES) or (not scheme and HALF_A_URI.match(location)):
        raise ValueError(f"{location!r} is neither a local path nor a URI of {', '.join(SCHEMES)}")
    return location


def absolute(location: str | Path) -> str:
    """A local path made absolute (other processes and cache keys must not depend on the working directory);
    a URI as it is."""
    location = str(location)
    return location if _is_uri(location) else os.path.abspath(location)


def join(location: str | Path, *parts: str) -> str:
    """`location/part/...`, keeping a URI's query string at the end."""
    location = str(location)
    if not _is_uri(location):
        return os.path.join(location, *parts)
    base, separator, query = location.partition("?")
    return "/".join([base.rstrip("/"), *parts]) + separator + query


@functools.lru_cache(maxsize=32)
def _open_store(root: str) -> tuple[pafs.FileSystem, str]:
    # one filesystem per store and options: an S3 filesystem resolves the bucket's region over the network
    return pafs.FileSystem.from_uri(root)


def resolve(location: str | Path) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem holding `location`, and the path within it."""
    location = str(location)
    if not _is_uri(location):
        return LOCAL, os.path.abspath(location)
    parts = urlsplit(location)
    if parts.scheme == "file":
        return LOCAL, parts.path
    try:
        filesystem, root = _open_store(urlunsplit((parts.scheme, parts.netloc, "", parts.query, "")))
    except ValueError as error:  # an unknown scheme or option (a store that cannot be reached: OSError)
        raise ConfigError(f"{display(location)}: not a location pyarrow can open ({error})") from error
    return filesystem, root.rstrip("/") + parts.path.rstrip("/")


def exists(location: str | Path) -> bool:
    filesystem, path = resolve(location)
    return filesystem.get_file_info(path).type != pafs.FileType.NotFound


def list_files(location: str | Path) -> list[str]:
    """Names of the files directly in the folder `location` (none when it does not exist)."""
    filesystem, path = resolve(location)
    selector = pafs.FileSelector(path, allow_not_found=True)
    return sorted(info.base_name for info in filesystem.get_file_info(selector) if info.type == pafs.FileType.File)


def read_bytes(location: str | Path) -> bytes:
    filesystem, path = resolve(location)
    with filesystem.open_input_stream(path) as stream:
        return stream.read()


def read_text(location: str | Path) -> str:
    return read_bytes(location).decode("utf-8")


@contextmanager
def open_text(location: str | Path) -> Iterator[io.TextIOBase]:
    """Stream a UTF-8 text file line by line."""
    filesystem, path = resolve(location)
    with filesystem.open_input_stream(path) as stream, io.TextIOWrapper(stream, encoding="utf-8") as text:
        yield text


def write_bytes(location: str | Path, data: bytes) -> None:
    """Write one file whole or not at all."""
    _write(*resolve(location), data)


def _write(filesystem: pafs.FileSystem, path: str, data: bytes) -> None:
    if filesystem.type_name in OBJECT_STORES:
        _upload(filesystem, path, data)
        return
    parent, name = path.rsplit("/", 1)
    filesystem.create_dir(parent, recursive=True)
    temporary = f"{parent}/.{name}.{os.getpid()}.{threading.get_ident()}.tmp"  # one per writer
    try:
        _upload(filesystem, temporary, data)
        filesystem.move(temporary, path)
    except BaseException:
        if filesystem.get_file_info(temporary).type == pafs.FileType.File:
            filesystem.delete_file(temporary)
        raise


def _upload(filesystem: pafs.FileSystem, path: str, data: bytes) -> None:
    with filesystem.open_output_stream(path) as stream:  # opened once the data is in hand: never empty
        stream.write(data)


def delete(location: str | Path) -> None:
    """Remove one file; a missing one is not an error."""
    filesystem, path = resolve(location)
    if filesystem.get_file_info(path).type == pafs.FileType.File:
        filesystem.delete_file(path)


def save_torch(payload, location: str | Path) -> None:
    import torch  # imported here: the CLI and the config import this module, and torch costs 0.8 s

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    write_bytes(location, buffer.getvalue())


def load_torch(location: str | Path, map_location="cpu"):
    import torch

    return torch.load(io.BytesIO(read_bytes(location)), map_location=map_location, weights_only=True)


def local_file(location: str | Path, folder: str | Path) -> Path:
    """A local path with the contents of `location`: the file itself when local, else a copy in `folder`."""
    filesystem, path = resolve(location)
    if filesystem is LOCAL:
        return Path(path)
    target = Path(folder) / Path(path).name
    target.write_bytes(read_bytes(location))
    return target


def published(folder: str | Path, marker: str) -> bool:
    return exists(join(folder, marker))


@contextmanager
def publishing(folder: str | Path, marker: str) -> Iterator[Path]:
    """A local staging folder to fill; when the block ends without error its files appear at `folder`,
    `marker` among them and written last. A folder another writer published first is kept (callers publish
    content-addressed folders: theirs holds the same content)."""
    filesystem, path = resolve(folder)
    if filesystem is LOCAL:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=Path(path).parent, prefix=".staging-"))
    else:
        staging = Path(tempfile.mkdtemp(prefix="dmn-staging-"))
    try:
        yield staging
        if not (staging / marker).is_file():
            raise RuntimeError(f"publishing {folder}: the marker {marker} was not written")
        if filesystem is LOCAL:
            try:
                staging.rename(path)
            except OSError:
                if not published(folder, marker):
                    raise
            return
        if published(folder, marker):  # another writer was first: do not rewrite what it may be reading
            return
        files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
        for name in sorted(files, key=lambda name: name == marker):  # the marker last
            _write(filesystem, f"{path}/{name}", (staging / name).read_bytes())
    finally:
        shutil.rmtree(staging, ignore_errors=True)
