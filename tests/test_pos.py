"""Part-of-speech tagging as a DMN application: the WSJ readers (.mrg, .pos) on the real NLTK sample, the
CoNLL-U reader, bad tag files that stop with their file and line, and the flow end to end (real Prefect API,
MLflow on SQLite) on a few real WSJ files, through to the registered pyfunc's tags."""

import re
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from dmn.apps.pos import BUNDLED, PosRunConfig
from dmn.config import ModelConfig, TrainConfig
from dmn.data.fetch import extract_archive
from dmn.data.treebank import is_tagged_file, read_tagged, split_files
from dmn.errors import DataError
from dmn.report import report_markdown
from flows.cli import main
from flows.pos import pos_flow

CONLLU = """# sent_id = 1
# text = Amélie's café isn't closed.
1-2\tAmélie's\t_\t_\t_\t_\t_\t_\t_\t_
1\tAmélie\tAmélie\tPROPN\tNNP\t_\t3\tnmod:poss\t_\t_
2\t's\t's\tPART\tPOS\t_\t1\tcase\t_\t_
3\tcafé\tcafé\tNOUN\tNN\t_\t5\tnsubj\t_\t_
4\tis\tbe\tAUX\tVBZ\t_\t5\tcop\t_\t_
4.1\tnot\t_\t_\t_\t_\t_\t_\t_\t_
5\tclosed\tclosed\tADJ\tJJ\t_\t0\troot\t_\tSpaceAfter=No
6\t.\t.\tPUNCT\t.\t_\t5\tpunct\t_\t_

"""


@pytest.fixture(scope="module")
def wsj_sample(tmp_path_factory) -> Path:
    """NLTK's real 10 % WSJ sample (combined/*.mrg, tagged/*.pos), extracted from the bundled archive."""
    return extract_archive(BUNDLED, tmp_path_factory.mktemp("ptb") / "release", is_tagged_file) / "treebank"


def test_sample_split_by_file_with_traces_dropped(wsj_sample):
    files = {path.name: path for path in wsj_sample.rglob("wsj_*")}
    splits = split_files(list(files))
    assert [len(splits[s]) for s in ("train", "dev", "test")] == [159, 20, 20]  # .mrg read, .pos left
    assert all(name.endswith(".mrg") for names in splits.values() for name in names)
    assert splits["dev"][0] == "wsj_0160.mrg" and splits["test"][-1] == "wsj_0199.mrg"
    sentences = [s for names in splits.values() for name in names for s in read_tagged(files[name])]
    assert len(sentences) == 3914 and sum(len(s.words) for s in sentences) == 100_676 - 6_592  # traces dropped
    assert all("-NONE-" not in s.tags and len(s.words) == len(s.tags) for s in sentences)
    tagset = {tag for s in sentences for tag in s.tags}
    assert len(tagset) == 45 and {"NNP", "VBZ", "-LRB-", "``"} <= tagset


def test_tagged_pos_files_agree_with_the_trees(wsj_sample):
    from_trees = read_tagged(wsj_sample / "combined" / "wsj_0003.mrg")
    from_tags = read_tagged(wsj_sample / "tagged" / "wsj_0003.pos")
    words, tags = [w for s in from_trees for w in s.words], [t for s in from_trees for t in s.tags]
    tagged_words, tagged_tags = [w for s in from_tags for w in s.words], [t for s in from_tags for t in s.tags]
    assert len(words) == 725 and tagged_words[:725] == words
    agree = sum(a == b for a, b in zip(tagged_tags, tags)) / len(tags)
    assert 0.97 < agree < 1.0  # the trees' tags were corrected after the tagged files (IN -> RP...)
    assert tagged_words[725:] == ["''"]  # the .pos file closes a quote the tree leaves out


def test_full_wsj_splits_by_section_and_conllu_by_name():
    names = ["wsj_0001.mrg", "wsj_1899.mrg", "wsj_1900.mrg", "wsj_2199.mrg", "wsj_2200.mrg", "wsj_2454.mrg"]
    assert split_files(names) == {
        "train": ["wsj_0001.mrg", "wsj_1899.mrg"],
        "dev": ["wsj_1900.mrg", "wsj_2199.mrg"],
        "test": ["wsj_2200.mrg", "wsj_2454.mrg"],
    }
    conllu = ["en_ewt-ud-dev.conllu", "en_ewt-ud-test.conllu", "en_ewt-ud-train.conllu"]
    assert split_files(conllu) == {"train": [conllu[2]], "dev": [conllu[0]], "test": [conllu[1]]}


def test_conllu_skips_multiword_tokens_and_empty_nodes(tmp_path):
    path = tmp_path / "x-ud-test.conllu"
    path.write_text(CONLLU, encoding="utf-8")
    (sentence,) = read_tagged(path)
    assert sentence.words == ("Amélie", "'s", "café", "is", "closed", ".")
    assert sentence.tags == ("NNP", "POS", "NN", "VBZ", "JJ", ".") and sentence.line == 4


def test_word_features_let_an_unseen_word_show_its_suffix_and_shape():
    from dmn.apps.pos import APPLICATION as POS
    from dmn.apps.pos import word_features
    from dmn.data.vocab import Vocabulary

    assert word_features("Vinken") == ["=vinken", "~ken", "^Xx"] and word_features("Amélie")[1:] == ["~lie", "^Xx"]
    assert word_features("1,000")[1:] == ["~000", "^d,d"] and word_features("co-founder")[1:] == ["~der", "^x-x"]
    vocab = Vocabulary.build([["Pierre", "walking", *word_features("Pierre"), *word_features("walking")]], ["NNP"])
    row = {"words": ["Zorro", "talking"], "tags": ["NNP", "VBG"]}
    with_features = POS.encode([row], vocab, {"word_features": True}, "tags")
    assert with_features.story.shape == (1, 2, 4)  # each word a fact of four tokens
    unknown = vocab.word_ids(["Zorro", "talking"])
    assert unknown == [1, 1] and with_features.story[0, :, 0].tolist() == unknown
    assert with_features.story[0, 1, 2] == vocab.word_ids(["~ing"])[0] != 1  # the unseen word's suffix is known
    assert with_features.story[0, 0, 3] == vocab.word_ids(["^Xx"])[0] != 1  # and its shape
    assert POS.encode([row], vocab, {"word_features": False}, "tags").story.shape == (1, 2, 1)
    assert with_features.target.tolist() == [[0, -1]]  # VBG never seen in training: always wrong


@pytest.mark.parametrize(
    "name, text, message, line",
    [
        ("wsj_0001.pos", "[ Pierre/NNP Vinken/NNP ]\n,/,\n61 years/NNS\n", "token '61' has no tag", 3),
        ("a-ud-train.conllu", CONLLU.replace("\tcafé\tNOUN", "\tcafé"), "9 tab-separated columns, CoNLL-U has 10", 6),
        ("a-ud-train.conllu", CONLLU.replace("\tVBZ\t", "\t_\t"), "'is' has no XPOS tag", 7),
        ("wsj_0001.mrg", "( (S (NP (NNP Pierre)) (VP (VBZ sleeps))\n", "'(' never closed", 1),
        ("wsj_0002.mrg", "( (S (-NONE- *T*-1)) )\n", "a sentence with no words", 1),
    ],
)
def test_bad_tag_files_are_refused_with_file_and_line(tmp_path, name, text, message, line):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=re.escape(message)) as caught:
        read_tagged(path)
    assert f"{path}:{line}:" in str(caught.value)


def test_bad_tag_file_exits_2_and_writes_nothing(prefect_api, tmp_path, capsys):
    source = tmp_path / "source"
    source.mkdir()
    for split in ("train", "dev", "test"):
        (source / f"a-ud-{split}.conllu").write_text(CONLLU, encoding="utf-8")
    (source / "a-ud-dev.conllu").write_text(CONLLU.replace("\tVBZ\t", "\t_\t"), encoding="utf-8")
    code = main(["run", "pos", "--source", str(source), "--data-root", str(tmp_path / "data"), "--epochs", "1"])
    error = capsys.readouterr().err
    assert code == 2 and "a-ud-dev.conllu:7: word 'is' has no XPOS tag" in error and "Traceback" not in error
    assert not (tmp_path / "data" / "tokens").exists() and not (tmp_path / "data" / "models").exists()

    beyond = tmp_path / "beyond"  # WSJ section 25, in no split: refused at ingest, before a file is stored
    beyond.mkdir()
    (beyond / "wsj_2501.pos").write_text("[ The/DT cat/NN ]\n", encoding="utf-8")
    code = main(["run", "pos", "--source", str(beyond), "--data-root", str(tmp_path / "data2"), "--epochs", "1"])
    error = capsys.readouterr().err
    assert code == 2 and f"{beyond}: no file of a train, dev or test split there" in error, error
    assert "Traceback" not in error and not any((tmp_path / "data2").iterdir())


def test_pos_flow_tags_registers_and_serves_tags_aligned_with_words(
    prefect_api, wsj_sample, tmp_path, monkeypatch, capsys
):
    source = tmp_path / "source"
    source.mkdir()
    for number in [*range(1, 25), 160, 161, 180, 181]:  # a few real files of each split
        name = f"wsj_{number:04d}.mrg"
        (source / name).write_bytes((wsj_sample / "combined" / name).read_bytes())
    config = PosRunConfig(
        source=str(source),
        data_root=str(tmp_path / "data"),
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        model=ModelConfig(hidden_size=32),
        train=TrainConfig(max_epochs=4, patience=4, batch_size=16, learning_rate=0.01, seed=0),
    )
    monkeypatch.chdir(tmp_path)
    outcome = pos_flow(config)
    report, version = outcome["report"], outcome["version"]
    (ptb,) = report["units"]
    assert version.name == "dmn-pos" and ptb["unit"] == "ptb" and ptb["tokens"] == 437
    assert ptb["accuracy"] > 0.5 and ptb["unknown_words"] > 0 and ptb["unknown_word_accuracy"] is not None
    right = sum(ptb["confusion"][i][i] for i in range(len(ptb["classes"])))
    assert right == round(ptb["accuracy"] * 437) and sum(map(sum, ptb["confusion"])) <= 437
    table = report_markdown(report)
    assert "unknown-word accuracy" in table and "Most frequent confusions" in table

    model = mlflow.pyfunc.load_model(version.uri)
    requests = pd.DataFrame({"sentence": ["The company said it expects higher sales.", None],
                             "tokens": [None, ["Mr.", "Vinken", "is", "chairman", "."]]})  # fmt: skip
    first, second = model.predict(requests)
    assert len(first) == 8 and len(second) == 5 and first[-1] == "." and second[-1] == "."
    assert set(first + second) <= set(model.unwrap_python_model().vocab.answers)

    code = main(["ask", version.uri, "--sentence", "It rose (sharply).", "--tracking-uri", config.tracking_uri])
    shown = capsys.readouterr().out.splitlines()
    assert (
        code == 0 and shown[0].startswith("answer: It/") and "-LRB-/" in shown[0] and "; tag set ptb model)" in shown[0]
    )

    code = main(["evaluate", version.uri, "--source", str(source), "--data-root", str(tmp_path / "data"),
                 "--tracking-uri", config.tracking_uri])  # fmt: skip
    again = capsys.readouterr().out
    assert code == 0 and f"| ptb | {ptb['accuracy']:.1%} |" in again  # the same models on the same test split

    web = tmp_path / "web"  # another domain's test file alone: read through the version's own vocabulary
    web.mkdir()
    (web / "x-ud-test.conllu").write_text(CONLLU, encoding="utf-8")
    code = main(["evaluate", version.uri, "--source", str(web), "--data-root", str(tmp_path / "data"),
                 "--tracking-uri", config.tracking_uri])  # fmt: skip
    shown = capsys.readouterr().out
    served = model.predict(pd.DataFrame({"tokens": [["Amélie", "'s", "café", "is", "closed", "."]]}))[0]
    right = sum(tag == gold for tag, gold in zip(served, ["NNP", "POS", "NN", "VBZ", "JJ", "."]))
    assert code == 0 and right > 0 and f"| ptb | {right / 6:.1%} |" in shown  # as the served model tags it
    unknown, tokens = map(int, re.search(r"the unknown word\): (\d+) of (\d+)", shown).groups())
    assert 2 <= unknown < tokens  # at least Amélie and café, never in the WSJ files
    assert "test answers (tagging: tags) it cannot give, scored wrong: 0." in shown
    code = main(["run", "pos", "--source", str(web), "--data-root", str(tmp_path / "data2"), "--epochs", "1"])
    error = capsys.readouterr().err
    assert code == 2 and f"{web}: no train examples of tag set(s) ['ptb'] there" in error and "Traceback" not in error
    assert not (tmp_path / "data2" / "models").exists()
