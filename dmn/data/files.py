"""Ingest of a data set that is a set of named files (SST's trees, a treebank's files), from the copy bundled in
data/, a folder, an archive (tar or zip) or the URL of one.

Ingest ends with the files copied under `data_root/raw/<name>-<digest>/` (a local folder or an object-storage
URI, dmn/storage.py); the digest is a sha256 over the files' names and contents, so later steps cache on it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dmn import storage
from dmn.data.fetch import download, extract_archive, sha256_file
from dmn.errors import DataError

LISTING = "files.json"  # written last: the marker of a stored raw folder


@dataclass(frozen=True)
class RawFiles:
    path: str  # location (local folder or URI) of the files
    digest: str  # sha256 over the files' names and contents

    def is_stored(self) -> bool:
        """False once the files are gone (a cached ingest result outlives a deleted data root)."""
        return storage.published(self.path, LISTING)

    def files(self) -> dict[str, str]:
        """{file name: location}; DataError when they are gone."""
        if not self.is_stored():
            raise DataError(self.path, "the ingested files are gone (removed after ingest?): ingest the source again")
        names = json.loads(storage.read_text(storage.join(self.path, LISTING)))
        return {name: storage.join(self.path, name) for name in names}


def find_files(folder: Path, wanted: Callable[[str], bool]) -> dict[str, Path]:
    """{base name: path} of the wanted files under `folder` (any depth); DataError on two with one name."""
    found: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and wanted(path.name):
            if path.name in found:
                raise DataError(path, f"a second {path.name} (first: {found[path.name]}); point --source at one")
            found[path.name] = path
    return found


@contextmanager
def scratch_folder(data_root: str) -> Iterator[Path]:
    """A temporary folder for downloads and extractions: beside the data when the data root is local (same
    disk), else in /tmp. Opening the data root first makes one that cannot be opened fail before a download."""
    filesystem, root = storage.resolve(data_root)
    parent = Path(root) if filesystem is storage.LOCAL else None
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=parent, prefix=".ingest-") as scratch:
        yield Path(scratch)


def ingest_files(
    source: str,
    data_root: str,
    name: str,
    wanted: Callable[[str], bool],
    bundled: Path,
    sha256: str | None = None,
    check: Callable[[dict[str, Path]], None] | None = None,
) -> RawFiles:
    """Resolve `source` ('bundled', a folder, an archive path or URL) and store its wanted files under
    `data_root`; DataError when none is found. `check` sees the found files ({name: path}) before anything is
    stored, and raises DataError where the application cannot use them (nothing is then written)."""
    with scratch_folder(data_root) as scratch:
        if source == "bundled":
            if not bundled.is_file():
                raise DataError(bundled, "the bundled archive is missing; pass --source")
            folder = extract_archive(bundled, scratch / "extract", wanted, sha256)
        elif source.startswith(("http://", "https://")):
            archive = download(source, scratch / "download")
            folder = extract_archive(archive, scratch / "extract", wanted, sha256)
        elif Path(source).is_dir():
            folder = Path(source)
        elif Path(source).is_file():
            folder = extract_archive(Path(source), scratch / "extract", wanted, sha256)
        else:
            raise DataError(source, "--source is not 'bundled', a folder, an archive or a URL")
        files = find_files(folder, wanted)
        if not files:
            raise DataError(source, f"no {name} files found there")
        if check is not None:
            check(files)
        digest = content_digest(files)
        target = storage.join(data_root, "raw", f"{name}-{digest[:16]}")
        if not storage.published(target, LISTING):
            with storage.publishing(target, LISTING) as staging:
                for file_name, path in files.items():
                    shutil.copyfile(path, staging / file_name)
                (staging / LISTING).write_text(json.dumps(sorted(files)))
        return RawFiles(target, digest)


def files_fingerprint(source: str, wanted: Callable[[str], bool], bundled: Path, sha256: str | None) -> str | None:
    """A key for the content `source` would give, computed without ingesting it (None: a URL without an
    expected sha256, unknown until fetched)."""
    if source == "bundled":
        return f"archive:{sha256_file(bundled)}" if bundled.is_file() else None
    if source.startswith(("http://", "https://")):
        return f"archive:{sha256.lower()}" if sha256 else None
    path = Path(source)
    if path.is_dir():
        return f"folder:{content_digest(find_files(path, wanted))}"
    if path.is_file():
        return f"archive:{sha256_file(path)}:{sha256}"
    return None


def content_digest(files: dict[str, Path]) -> str:
    digest = hashlib.sha256()
    for file_name, path in sorted(files.items()):
        digest.update(f"{file_name}\n".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
