"""Getting a data set's files, for every application: checksums, downloads and the extraction of archives
(tar in any compression, or zip), refusing members that would land outside the destination."""

from __future__ import annotations

import hashlib
import lzma
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from dmn.errors import DataError


class TransientSourceError(OSError):
    """A network failure while fetching a source: worth a retry (bad data never is)."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract_archive(archive: Path, destination: Path, wanted: Callable[[str], bool], sha256: str | None = None) -> Path:
    """Extract the files of `archive` (tar or zip) whose base name `wanted` accepts, keeping their folders;
    DataError on a wrong checksum, an unreadable archive, or a member outside its root or a link."""
    if sha256 is not None and sha256_file(archive) != sha256.lower():
        raise DataError(archive, f"sha256 is {sha256_file(archive)}, expected {sha256}")
    destination.mkdir(parents=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            names = [info.filename for info in zipped.infolist() if not info.is_dir()]
            _refuse_outside(archive, names)
            zipped.extractall(destination, members=[n for n in names if wanted(PurePosixPath(n).name)])
        return destination
    try:
        with tarfile.open(archive) as tarred:
            members = tarred.getmembers()
            _refuse_outside(archive, [m.name for m in members])
            for member in members:
                if member.issym() or member.islnk() or member.isdev():
                    raise DataError(archive, f"member {member.name!r} is a link or device, refused")
            chosen = [m for m in members if m.isfile() and wanted(PurePosixPath(m.name).name)]
            tarred.extractall(destination, members=chosen, filter="data")
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as error:  # not an archive, or cut short
        raise DataError(archive, f"not a readable tar or zip archive ({error or type(error).__name__})") from None
    return destination


def _refuse_outside(archive: Path, names: list[str]) -> None:
    for name in names:
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts:
            raise DataError(archive, f"member {name!r} points outside the archive root")


def download(url: str, destination: Path) -> Path:
    """Fetch `url` to `destination`; network failures raise TransientSourceError (retried by the flow)."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(destination, "wb") as out:
            shutil.copyfileobj(response, out)
    except urllib.error.HTTPError as error:
        if error.code >= 500:
            raise TransientSourceError(f"{url}: HTTP {error.code}") from error
        raise DataError(url, f"HTTP {error.code}") from error
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        raise TransientSourceError(f"{url}: {error}") from error
    return destination
