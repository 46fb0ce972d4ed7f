"""Tokenise ingested bAbI files into Parquet: one row per question, one partition per bAbI task.

Layout of `data_root/tokens/babi-<size>-<digest>-<code>/` (a local folder or an object-storage URI):
    babi_task=N/part-0.parquet   rows of bAbI task N, both splits (hive partitioning: read one task alone)
    vocab.json                   words and answers of the training splits of every task
    manifest.json                raw digest, size, tasks, fallbacks, row counts; written last (the marker)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from dmn import storage
from dmn.data.babi import SPLITS, parse_babi_file
from dmn.data.sources import RawBabi
from dmn.data.vocab import Vocabulary, tokenize
from dmn.errors import DataError
from dmn.version import code_digest

MANIFEST = "manifest.json"
SCHEMA = pa.schema(
    [
        ("split", pa.string()),
        ("line", pa.int32()),  # line of the question in its raw file
        ("story", pa.list_(pa.string())),  # sentences as written
        ("story_tokens", pa.list_(pa.list_(pa.string()))),
        ("question", pa.string()),
        ("question_tokens", pa.list_(pa.string())),
        ("answer", pa.string()),
        ("supporting", pa.list_(pa.int32())),  # indices into `story`
    ]
)


@dataclass(frozen=True)
class TokenisedBabi:
    path: str  # location: a local folder or a URI
    digest: str  # the raw data's content digest
    size: str
    babi_tasks: tuple[int, ...]
    fallbacks: dict[int, str] = field(default_factory=dict)

    @property
    def vocab_path(self) -> str:
        return storage.join(self.path, "vocab.json")

    def is_stored(self) -> bool:
        """False once the folder is gone (a cached tokenise result outlives a deleted data root)."""
        return storage.published(self.path, MANIFEST)

    def require(self, babi_tasks) -> None:
        """Raise DataError naming the bAbI tasks this dataset lacks."""
        missing = sorted(set(babi_tasks) - set(self.babi_tasks))
        if missing:
            raise DataError(self.path, f"bAbI task(s) {missing} not in this dataset (has {list(self.babi_tasks)})")

    def read(self, babi_task: int, split: str) -> list[dict]:
        """Rows of one bAbI task and split, reading that task's partition only."""
        self.require([babi_task])
        filesystem, path = storage.resolve(storage.join(self.path, f"babi_task={babi_task}"))
        table = pq.read_table(path, filesystem=filesystem, filters=[("split", "=", split)])
        return table.to_pylist()


def tokenise_babi(raw: RawBabi, data_root: str) -> TokenisedBabi:
    """Parse and tokenise every file of `raw`; publish Parquet, vocabulary and manifest as one folder."""
    # the reader's and tokeniser's code is part of the name: a change to them re-tokenises
    target = storage.join(data_root, "tokens", f"babi-{raw.size}-{raw.digest[:16]}-{code_digest()[:8]}")
    files = raw.files()
    tasks = tuple(sorted({babi_task for babi_task, _ in files}))
    if not storage.published(target, MANIFEST):
        tables = {babi_task: _task_table(files, babi_task) for babi_task in tasks}
        train = [t.filter(pc.equal(t["split"], "train")) for t in tables.values()]
        vocab = Vocabulary.build(
            [
                *(sentence for t in train for story in t["story_tokens"].to_pylist() for sentence in story),
                *(question for t in train for question in t["question_tokens"].to_pylist()),
            ],
            [answer for t in train for answer in t["answer"].to_pylist()],
        )
        _write(target, tables, vocab, raw, tasks)
    return TokenisedBabi(target, raw.digest, raw.size, tasks, dict(raw.fallbacks))


def _task_table(files: dict, babi_task: int) -> pa.Table:
    rows = []
    for split in SPLITS:
        for q in parse_babi_file(files[(babi_task, split)]):
            rows.append(
                {
                    "split": split,
                    "line": q.line,
                    "story": list(q.story),
                    "story_tokens": [tokenize(s) for s in q.story],
                    "question": q.question,
                    "question_tokens": tokenize(q.question),
                    "answer": q.answer,
                    "supporting": list(q.supporting),
                }
            )
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def _write(target: str, tables: dict[int, pa.Table], vocab: Vocabulary, raw: RawBabi, tasks) -> None:
    with storage.publishing(target, MANIFEST) as staging:
        for babi_task, table in tables.items():
            (staging / f"babi_task={babi_task}").mkdir()
            pq.write_table(table, staging / f"babi_task={babi_task}" / "part-0.parquet")
        vocab.save(staging / "vocab.json")
        manifest = {
            "digest": raw.digest,
            "size": raw.size,
            "babi_tasks": list(tasks),
            "fallbacks": {str(k): v for k, v in raw.fallbacks.items()},
            "rows": {str(k): t.num_rows for k, t in tables.items()},
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
