"""Ingest bAbI from a folder, the official tarball (local path or URL), or the Hugging Face hub.

Whatever the source, ingest ends with the same thing: the train and test files of each bAbI task of one
size, copied under `data_root/raw/babi-<size>-<digest>/` (a local folder or an object-storage URI, see
dmn/storage.py), where the digest is a sha256 over the files' contents (not their paths), so later steps can
cache on it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from dmn import storage
from dmn.data.babi import FILE_NAME, SIZE_FOLDERS, find_babi_files
from dmn.data.fetch import TransientSourceError, download, extract_archive, sha256_file
from dmn.data.files import scratch_folder
from dmn.errors import DataError

BUNDLED_TARBALL = Path(__file__).resolve().parents[2] / "data" / "babi-tasks-1-20-v1-2-en.tar.xz"
OFFICIAL_URL = "http://www.thespermwhale.com/jaseweston/babi/tasks_1-20_v1-2.tar.gz"
FALLBACKS = "fallbacks.json"  # written last: the marker of a stored raw folder


@dataclass(frozen=True)
class RawBabi:
    path: str  # location (local folder or URI) of the qaN_babi_{train,test}.txt files of one size
    digest: str  # sha256 over the files' contents
    size: str
    fallbacks: dict[int, str] = field(default_factory=dict)  # babi_task -> why its files differ

    def is_stored(self) -> bool:
        """False once the files are gone (a cached ingest result outlives a deleted data root)."""
        return storage.published(self.path, FALLBACKS)

    def files(self) -> dict[tuple[int, str], str]:
        """{(babi_task, split): location} of the stored files; DataError when they are gone."""
        if not self.is_stored():
            raise DataError(
                self.path,
                "the ingested files are gone (removed after ingest?): ingest the source again",
            )
        found = {}
        for name in storage.list_files(self.path):
            match = FILE_NAME.match(name)
            if match:
                found[(int(match.group(1)), match.group(3))] = storage.join(self.path, name)
        incomplete = sorted({t for t, _ in found if (t, "train") not in found or (t, "test") not in found})
        if incomplete:
            raise DataError(self.path, f"bAbI task(s) {incomplete} lack their train or test file")
        return found


def ingest_babi(
    source: str, size: str, data_root: str, sha256: str | None = None, babi_tasks: list[int] | None = None
) -> RawBabi:
    """Resolve `source` ('bundled', a folder, a tarball path or URL, or 'hf:NAME') into a RawBabi stored
    under `data_root` (a local folder or an object-storage URI). DataError, before anything is stored, where the
    source lacks one of `babi_tasks` (None: any tasks it has)."""
    with scratch_folder(data_root) as scratch:
        if source == "bundled":
            if not BUNDLED_TARBALL.is_file():
                raise DataError(BUNDLED_TARBALL, "the bundled bAbI tarball is missing; pass --source")
            folder = extract_babi(BUNDLED_TARBALL, scratch / "extract", sha256)
        elif source.startswith("hf:"):
            folder = download_from_hub(source[3:], size, scratch / "hub")
        elif source.startswith(("http://", "https://")):
            folder = extract_babi(download(source, scratch / "download.tar.gz"), scratch / "extract", sha256)
        elif Path(source).is_dir():
            folder = Path(source)
        elif Path(source).is_file():
            folder = extract_babi(Path(source), scratch / "extract", sha256)
        else:
            raise DataError(source, "--source is not 'bundled', a folder, a tarball, a URL or hf:NAME")
        files, fallbacks = find_babi_files(folder, size)
        missing = sorted(set(babi_tasks or ()) - {babi_task for babi_task, _ in files})
        if missing:
            present = sorted({babi_task for babi_task, _ in files})
            raise DataError(source, f"bAbI task(s) {missing} of --babi-tasks not there (it has {present})")
        return _store(files, fallbacks, size, data_root)


def source_fingerprint(source: str, size: str, sha256: str | None = None) -> str | None:
    """A key for the content `source` would give, computed without ingesting it (None: unknown until
    fetched, so not cacheable: a hub dataset, or a URL without an expected sha256)."""
    if source == "bundled":
        return f"tarball:{sha256_file(BUNDLED_TARBALL)}:{size}" if BUNDLED_TARBALL.is_file() else None
    if source.startswith(("http://", "https://")):
        return f"tarball:{sha256.lower()}:{size}" if sha256 else None
    path = Path(source)
    if path.is_dir():
        files, _ = find_babi_files(path, size)
        return f"folder:{_content_digest(files)}:{size}"
    if path.is_file():
        return f"tarball:{sha256_file(path)}:{size}:{sha256}"
    return None


def _content_digest(files: dict[tuple[int, str], Path]) -> str:
    digest = hashlib.sha256()
    for (babi_task, split), path in sorted(files.items()):
        digest.update(f"{babi_task}/{split}\n".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _store(files: dict[tuple[int, str], Path], fallbacks: dict[int, str], size: str, data_root: str) -> RawBabi:
    """Copy the files to a content-addressed folder, published whole (dmn/storage.py)."""
    hexdigest = _content_digest(files)
    target = storage.join(data_root, "raw", f"babi-{size}-{hexdigest[:16]}")
    if not storage.published(target, FALLBACKS):
        with storage.publishing(target, FALLBACKS) as staging:
            for (babi_task, split), path in files.items():
                shutil.copyfile(path, staging / f"qa{babi_task}_babi_{split}.txt")
            (staging / FALLBACKS).write_text(json.dumps(fallbacks))
    return RawBabi(target, hexdigest, size, fallbacks)


def extract_babi(tarball: Path, destination: Path, sha256: str | None = None) -> Path:
    """Extract the bAbI text files of `tarball` (dmn/data/fetch.py's checks)."""
    return extract_archive(tarball, destination, lambda name: bool(FILE_NAME.match(name)), sha256)


def download_from_hub(name: str, size: str, destination: Path) -> Path:
    """Write bAbI files from a `datasets` dataset in the `facebook/babi_qa` layout (configs `en-qa1`,
    `en-10k-qa1`, ...; rows with a `story` of id/type/text/answer/supporting_ids), so the same parser
    and the same checks apply to every source. `name` may be a hub id or a local dataset folder."""
    import datasets  # imported here: 0.5 s, and only this source needs it

    destination.mkdir(parents=True)
    for babi_task in range(1, 21):
        config = f"{SIZE_FOLDERS[size]}-qa{babi_task}"
        try:
            splits = datasets.load_dataset(name, config)
        except ValueError as error:  # a config the dataset does not have: that bAbI task is absent
            if "BuilderConfig" in str(error) or "not found" in str(error):
                continue
            raise DataError(f"hf:{name}", f"cannot load config {config}: {error}") from error
        except (ConnectionError, TimeoutError) as error:
            raise TransientSourceError(f"hf:{name}: {error}") from error
        except RuntimeError as error:  # datasets >= 4 no longer runs loading scripts (facebook/babi_qa has one)
            if "scripts are no longer supported" not in str(error):
                raise
            raise DataError(
                f"hf:{name}",
                f"the dataset has only a loading script, which the installed datasets {datasets.__version__} no "
                f"longer runs; use --source with a folder of bAbI files or the release tarball instead (path or URL, "
                f"e.g. {OFFICIAL_URL})",
            ) from None
        for split in ("train", "test"):
            with open(destination / f"qa{babi_task}_hub_{split}.txt", "w", encoding="utf-8") as out:
                for row in splits[split]:
                    out.writelines(_hub_story_lines(row["story"]))
    return destination


def _hub_story_lines(story: dict) -> list[str]:
    """One `facebook/babi_qa` story (columns of equal length) back to bAbI text lines."""
    lines = []
    for line_id, kind, text, answer, supporting in zip(
        story["id"], story["type"], story["text"], story["answer"], story["supporting_ids"]
    ):
        if kind == 0:  # context
            lines.append(f"{line_id} {text}\n")
        else:  # question
            lines.append(f"{line_id} {text}\t{answer}\t{' '.join(supporting)}\n")
    return lines
