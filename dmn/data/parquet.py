"""Tokenised data in Parquet, for every application: one partition per unit (a bAbI task, say).

Layout of `data_root/tokens/<application>-<name>-<digest>-<code>/` (a local folder or an object-storage URI):
    <unit_name>=U/part-0.parquet   rows of unit U, every split (hive partitioning: read one unit alone)
    vocab.json                     words and answers of the training splits
    manifest.json                  raw digest, units, notes, row counts; written last (the marker)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from dmn import storage
from dmn.data.vocab import Vocabulary
from dmn.errors import DataError
from dmn.version import code_digest

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class TokenisedData:
    path: str  # location: a local folder or a URI
    digest: str  # the raw data's content digest
    unit_name: str  # the partition column, e.g. "babi_task"
    unit_title: str  # how messages name a unit, e.g. "bAbI task"
    units: tuple  # the units it holds
    notes: dict = field(default_factory=dict)  # unit -> a note every report repeats (e.g. a fallback file)

    @property
    def vocab_path(self) -> str:
        return storage.join(self.path, "vocab.json")

    def vocabulary(self) -> Vocabulary:
        return Vocabulary.load(self.vocab_path)

    def is_stored(self) -> bool:
        """False once the folder is gone (a cached tokenise result outlives a deleted data root)."""
        return storage.published(self.path, MANIFEST)

    def require(self, units) -> None:
        """Raise DataError naming the units this dataset lacks."""
        missing = sorted(set(units) - set(self.units))
        if missing:
            raise DataError(self.path, f"{self.unit_title}(s) {missing} not in this dataset (has {list(self.units)})")

    def require_examples(self, units, splits: tuple[str, ...], source: str) -> None:
        """Raise DataError naming `source` when a unit has no examples in one of `splits` (a source of test
        files alone can be evaluated, not trained on); reads each unit's split column once."""
        present = {unit: self._splits(unit) for unit in units}
        for split in splits:
            empty = [unit for unit in units if split not in present[unit]]
            if empty:
                alone = " (a source of test files alone can be evaluated: `dmn evaluate`)" if split == "train" else ""
                raise DataError(source, f"no {split} examples of {self.unit_title}(s) {empty} there{alone}")

    def read(self, unit, split: str) -> list[dict]:
        """Rows of one unit and split, reading that unit's partition only."""
        self.require([unit])
        filesystem, path = self._partition(unit)
        return pq.read_table(path, filesystem=filesystem, filters=[("split", "=", split)]).to_pylist()

    def _splits(self, unit) -> set[str]:
        filesystem, path = self._partition(unit)
        return set(pq.read_table(path, filesystem=filesystem, columns=["split"]).column("split").unique().to_pylist())

    def _partition(self, unit) -> tuple:
        """(filesystem, path) of one unit's partition."""
        return storage.resolve(storage.join(self.path, f"{self.unit_name}={unit}"))


def publish(target: str, unit_name: str, tables: dict, vocab: Vocabulary, manifest: dict) -> None:
    """Write the unit partitions, the vocabulary and the manifest as one folder, the manifest last."""
    with storage.publishing(target, MANIFEST) as staging:
        for unit, table in tables.items():
            (staging / f"{unit_name}={unit}").mkdir()
            pq.write_table(table, staging / f"{unit_name}={unit}" / "part-0.parquet")
        vocab.save(staging / "vocab.json")
        rows = {str(unit): table.num_rows for unit, table in tables.items()}
        (staging / MANIFEST).write_text(json.dumps({**manifest, "rows": rows}, indent=2))


def tokens_folder(data_root: str, name: str, digest: str, module: str) -> str:
    """Where an application's tokenised data goes: named by the raw data's digest and by the digest of the
    code that reads it (`module`, the application's), so a change to the reader re-tokenises."""
    return storage.join(data_root, "tokens", f"{name}-{digest[:16]}-{code_digest(module)[:8]}")


def is_published(target: str) -> bool:
    return storage.published(target, MANIFEST)


def train_rows(tables: dict[object, pa.Table]) -> list[pa.Table]:
    """The training split of every unit's table (the vocabulary is built from these alone)."""
    import pyarrow.compute as pc

    return [t.filter(pc.equal(t["split"], "train")) for t in tables.values()]
