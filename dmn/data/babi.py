"""Reader of the bAbI QA tasks v1.2 (Weston et al. 2015) in their original text format.

A file holds numbered lines; the numbering restarts at 1 where a new story begins. A statement line is
`ID text`; a question line is `ID question<TAB>answer<TAB>supporting line IDs`. A question sees the
statements of its story before it (never the earlier questions).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dmn import storage
from dmn.errors import DataError

SPLITS = ("train", "test")
SIZE_FOLDERS = {"1k": "en", "10k": "en-10k"}
FILE_NAME = re.compile(r"^qa(\d+)_([a-z-]+)_(train|test)\.txt$")


@dataclass(frozen=True)
class BabiQuestion:
    story: tuple[str, ...]  # the story's statements before the question, in order
    question: str
    answer: str  # tasks 8 and 19 answer with a comma-separated list, kept as one class ("n,w")
    supporting: tuple[int, ...]  # indices into `story` of the supporting facts
    line: int  # line number of the question in its file (1-based)


def parse_babi_file(path: str | Path) -> list[BabiQuestion]:
    """All questions of one bAbI file (a local path or a URI, see dmn/storage.py); a malformed line raises
    DataError naming the file and line."""
    questions: list[BabiQuestion] = []
    story: list[str] = []
    fact_index: dict[int, int] = {}  # line ID -> index into `story`, for the current story
    previous_id = 0
    with storage.open_text(path) as lines:
        for line_number, raw in enumerate(lines, start=1):
            text = raw.rstrip("\n").rstrip("\r")
            if not text.strip():
                continue
            head, _, rest = text.partition(" ")
            if not head.isdigit() or not rest.strip():
                raise DataError(path, f"expected 'ID text', got {text[:60]!r}", line_number)
            line_id = int(head)
            if line_id == 1:
                story, fact_index = [], {}
            elif line_id != previous_id + 1:
                raise DataError(path, f"line ID {line_id} does not follow {previous_id}", line_number)
            previous_id = line_id
            if "\t" not in rest and rest.rstrip().endswith("?"):
                raise DataError(
                    path, f"question {rest.strip()!r} has no answer (expected a tab, then the answer)", line_number
                )
            if "\t" not in rest:
                fact_index[line_id] = len(story)
                story.append(rest.strip())
                continue
            questions.append(_parse_question(path, line_number, rest, story, fact_index))
    if not questions:
        raise DataError(path, "no questions found")
    return questions


def _parse_question(path: str | Path, line_number: int, rest: str, story: list[str], fact_index: dict[int, int]):
    fields = rest.split("\t")
    question, answer = fields[0].strip(), fields[1].strip() if len(fields) > 1 else ""
    if not answer:
        raise DataError(path, f"question {question!r} has no answer", line_number)
    supporting_ids = fields[2].split() if len(fields) > 2 else []
    supporting = []
    for item in supporting_ids:
        if not item.isdigit() or int(item) not in fact_index:
            raise DataError(path, f"supporting fact {item!r} is not a statement of this story", line_number)
        supporting.append(fact_index[int(item)])
    return BabiQuestion(tuple(story), question, answer, tuple(supporting), line_number)


def find_babi_files(folder: Path, size: str) -> tuple[dict[tuple[int, str], Path], dict[int, str]]:
    """The train and test file of every bAbI task for `size` under `folder`.

    `folder` is either the release root (holding `en/` and `en-10k/`, as the official tarball) or a flat
    folder of `qaN_*_{train,test}.txt` files. Returns ({(babi_task, split): path}, fallbacks): where the
    10k training file of a task is missing but the 1k one exists (task 3 in some copies), the 1k file is
    used and `fallbacks[babi_task]` says so.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "not a folder")
    size_folder = folder / SIZE_FOLDERS[size]
    if not size_folder.is_dir():
        nested = [p for p in folder.iterdir() if p.is_dir() and (p / SIZE_FOLDERS[size]).is_dir()]
        size_folder = nested[0] / SIZE_FOLDERS[size] if len(nested) == 1 else folder
    files = _index_folder(size_folder)
    fallbacks: dict[int, str] = {}
    if size == "10k":
        one_k = _index_folder(size_folder.parent / SIZE_FOLDERS["1k"]) if size_folder != folder else {}
        for (babi_task, split), path in one_k.items():
            if split == "train" and (babi_task, "train") not in files and (babi_task, "test") in files:
                files[(babi_task, "train")] = path
                fallbacks[babi_task] = f"the 10k training file of bAbI task {babi_task} is missing: trained on 1k"
    tasks = sorted({babi_task for babi_task, _ in files})
    if not tasks:
        raise DataError(size_folder, f"no bAbI files (qaN_*_train.txt / qaN_*_test.txt) for size {size}")
    for babi_task in tasks:
        for split in SPLITS:
            if (babi_task, split) not in files:
                raise DataError(size_folder, f"bAbI task {babi_task}: the {split} file is missing")
    return files, fallbacks


def _index_folder(folder: Path) -> dict[tuple[int, str], Path]:
    if not folder.is_dir():
        return {}
    found = {}
    for path in sorted(folder.iterdir()):
        match = FILE_NAME.match(path.name)
        if match:
            found[(int(match.group(1)), match.group(3))] = path
    return found
