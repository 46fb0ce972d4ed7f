"""Ingest from a folder, a tarball (checksum, unsafe members) and a `datasets` dataset in the hub layout."""

import io
import tarfile

import pytest

from dmn.data.babi import parse_babi_file
from dmn.data.sources import BUNDLED_TARBALL, ingest_babi, sha256_file, source_fingerprint
from dmn.errors import DataError


def test_folder_and_tarball_give_the_same_content_digest(tmp_path, babi_root):
    from_folder = ingest_babi(str(babi_root), "1k", tmp_path / "a")
    from_tarball = ingest_babi(str(BUNDLED_TARBALL), "1k", tmp_path / "b", sha256=sha256_file(BUNDLED_TARBALL))
    assert from_folder.digest == from_tarball.digest
    assert len(list((tmp_path / "a").glob("raw/*/qa*_babi_*.txt"))) == 40


def test_fingerprint_follows_content_not_path(tmp_path, babi_en):
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in babi_en.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    assert source_fingerprint(str(copy), "1k") == source_fingerprint(str(babi_en), "1k")
    target = copy / "qa1_single-supporting-fact_test.txt"
    target.write_text(target.read_text().replace("hallway", "corridor"))
    assert source_fingerprint(str(copy), "1k") != source_fingerprint(str(babi_en), "1k")


def test_wrong_checksum_is_refused_and_nothing_written(tmp_path):
    with pytest.raises(DataError, match="sha256 is .* expected 0000"):
        ingest_babi(str(BUNDLED_TARBALL), "1k", tmp_path, sha256="0000")
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize("name", ["../evil/qa1_x_train.txt", "/etc/qa1_x_train.txt"])
def test_tarball_member_outside_its_root_is_refused(tmp_path, name):
    tarball = tmp_path / "evil.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        data = b"1 Mary went home.\n2 Where is Mary?\thome\t1\n"
        member = tarfile.TarInfo(name)
        member.size = len(data)
        archive.addfile(member, io.BytesIO(data))
    with pytest.raises(DataError, match="outside the archive root"):
        ingest_babi(str(tarball), "1k", tmp_path / "data")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "data" / "raw").exists()


def test_unknown_source_is_named(tmp_path):
    with pytest.raises(DataError, match="no/such/place"):
        ingest_babi("no/such/place", "1k", tmp_path)


def _write_hub_layout(root, babi_en, babi_tasks):
    """A local copy of bAbI in the `facebook/babi_qa` layout: one config per task, rows = stories."""
    import datasets

    configs = []
    for babi_task in babi_tasks:
        for split in ("train", "test"):
            (path,) = babi_en.glob(f"qa{babi_task}_*_{split}.txt")
            stories, current = [], None
            for line in path.read_text().splitlines():
                line_id, _, rest = line.partition(" ")
                if line_id == "1":
                    current = {"id": [], "type": [], "text": [], "supporting_ids": [], "answer": []}
                    stories.append({"story": current})
                text, answer, support = (rest.split("\t") + ["", ""])[:3]
                current["id"].append(line_id)
                current["type"].append(1 if answer else 0)
                current["text"].append(text.strip())
                current["supporting_ids"].append(support.split())
                current["answer"].append(answer)
            (root / f"en-qa{babi_task}").mkdir(parents=True, exist_ok=True)
            datasets.Dataset.from_list(stories).to_parquet(root / f"en-qa{babi_task}" / f"{split}.parquet")
        configs.append(
            f"- config_name: en-qa{babi_task}\n  data_files:\n"
            f"  - split: train\n    path: en-qa{babi_task}/train.parquet\n"
            f"  - split: test\n    path: en-qa{babi_task}/test.parquet\n"
        )
    (root / "README.md").write_text("---\nconfigs:\n" + "".join(configs) + "---\n")


def test_hub_source_reads_the_same_questions_as_the_files(tmp_path, babi_en):
    hub = tmp_path / "hub"
    _write_hub_layout(hub, babi_en, [1, 2])
    raw = ingest_babi(f"hf:{hub}", "1k", tmp_path / "data")
    for babi_task in (1, 2):
        for split in ("train", "test"):
            (original,) = babi_en.glob(f"qa{babi_task}_*_{split}.txt")
            (converted,) = (tmp_path / "data").glob(f"raw/*/qa{babi_task}_babi_{split}.txt")
            strip = [(q.story, q.question, q.answer, q.supporting) for q in parse_babi_file(original)]
            assert [(q.story, q.question, q.answer, q.supporting) for q in parse_babi_file(converted)] == strip
    assert raw.size == "1k"


def test_a_hub_dataset_with_only_a_loading_script_names_the_other_sources(tmp_path):
    hub = tmp_path / "babi_qa"
    hub.mkdir()
    (hub / "babi_qa.py").write_text("import datasets\n")  # as facebook/babi_qa on the hub: a script, no data files
    with pytest.raises(DataError, match="only a loading script.*a folder of bAbI files or the release tarball"):
        ingest_babi(f"hf:{hub}", "1k", tmp_path / "data")
    assert not (tmp_path / "data" / "raw").exists() or not any((tmp_path / "data" / "raw").iterdir())
