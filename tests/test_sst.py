"""Sentiment (SST) as a DMN application: the reader on the real trees, the PTB tokeniser, bad trees that stop
the flow with their file and line, and the flow end to end (real Prefect API, MLflow on SQLite) on a small
slice of the real treebank, through to the registered pyfunc."""

from pathlib import Path

import mlflow
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from mlflow.tracking import MlflowClient

from dmn.apps.sst import BUNDLED, SstRunConfig
from dmn.config import ModelConfig, TrainConfig
from dmn.data.fetch import extract_archive
from dmn.data.ptb import ptb_tokenize
from dmn.data.sst import phrases, read_sentiment_trees
from dmn.errors import DataError
from dmn.report import report_markdown
from flows.cli import main
from flows.sst import sst_flow


@pytest.fixture(scope="module")
def sst_trees(tmp_path_factory) -> Path:
    """The real SST trees (train.txt, dev.txt, test.txt), extracted from the bundled archive."""
    folder = extract_archive(BUNDLED, tmp_path_factory.mktemp("sst") / "release", lambda name: name.endswith(".txt"))
    return folder / "trees"


def test_published_split_sizes_and_phrase_level_training_data(sst_trees):
    trees = {split: read_sentiment_trees(sst_trees / f"{split}.txt") for split in ("train", "dev", "test")}
    assert [len(trees[s]) for s in ("train", "dev", "test")] == [8544, 1101, 2210]
    binary = [len(phrases(trees[s], "binary", all_phrases=False)) for s in ("train", "dev", "test")]
    assert binary == [6920, 872, 1821]  # neutral sentences dropped: the published binary splits
    every_phrase = phrases(trees["train"], "fine", all_phrases=True)
    distinct = {p.tokens for p in every_phrase if not p.root}
    assert len(distinct) == sum(not p.root for p in every_phrase) > 100_000
    assert sum(p.root for p in every_phrase) == 8544
    tokens = {t for p in every_phrase for t in p.tokens}
    assert "8\xa01\\/2" in tokens  # the token with a no-break space stays one token
    assert {"cliché", "clichéd", "soufflé"} <= tokens  # Unicode letters kept as written


def test_ptb_tokenisation_of_plain_text_matches_the_trees():
    assert ptb_tokenize("It's (truly) a lovely film, isn't it?") == [
        "It", "'s", "-LRB-", "truly", "-RRB-", "a", "lovely", "film", ",", "is", "n't", "it", "?",
    ]  # fmt: skip
    assert ptb_tokenize('"Amélie" is naïve... and the café\'s good.') == [
        "``", "Amélie", "''", "is", "naïve", "...", "and", "the", "café", "'s", "good", ".",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "tree, message",
    [
        ("(3 (2 A) (4 good) film)", r"malformed node"),
        ("(3 (2 A) (4 good)", r"unbalanced brackets"),
        ("(3 (2 A) (7 good))", r"label '7' outside 0-4"),
        ("(3 )", r"malformed node"),
    ],
)
def test_malformed_trees_are_refused_with_file_and_line(tmp_path, tree, message):
    path = tmp_path / "train.txt"
    path.write_text("(3 (2 Fine) (2 .))\n" + tree + "\n")
    with pytest.raises(DataError, match=message) as caught:
        read_sentiment_trees(path)
    assert f"{path}:2" in str(caught.value)


def _slice(sst_trees: Path, folder: Path, sizes: dict[str, int]) -> Path:
    """The first trees of each real file: a small but real SST."""
    folder.mkdir()
    for split, n in sizes.items():
        lines = (sst_trees / f"{split}.txt").read_text(encoding="utf-8").splitlines()[:n]
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_bad_tree_exits_2_naming_file_and_line_and_writes_nothing(prefect_api, sst_trees, tmp_path, capsys):
    source = _slice(sst_trees, tmp_path / "source", {"train": 30, "dev": 5, "test": 5})
    lines = (source / "dev.txt").read_text().splitlines()
    lines[2] = lines[2][:-1]  # one ')' short
    (source / "dev.txt").write_text("\n".join(lines) + "\n")
    code = main(["run", "sst", "--source", str(source), "--data-root", str(tmp_path / "data"), "--epochs", "1"])
    assert code == 2
    error = capsys.readouterr().err
    assert "dev.txt:3: unbalanced brackets" in error and "Traceback" not in error
    assert not (tmp_path / "data" / "tokens").exists() and not (tmp_path / "data" / "models").exists()

    (source / "test.txt").unlink()  # refused at ingest, before a file is stored
    code = main(["run", "sst", "--source", str(source), "--data-root", str(tmp_path / "data2"), "--epochs", "1"])
    error = capsys.readouterr().err
    assert code == 2 and f"{source}: SST source lacks test.txt" in error and "Traceback" not in error
    assert not any((tmp_path / "data2").iterdir())


def test_sst_flow_trains_both_granularities_registers_and_serves(prefect_api, sst_trees, tmp_path, monkeypatch, capsys):
    source = _slice(sst_trees, tmp_path / "source", {"train": 120, "dev": 20, "test": 40})
    config = SstRunConfig(
        source=str(source),
        data_root=str(tmp_path / "data"),
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        model=ModelConfig(architecture="dmn", hidden_size=24, passes=2),
        train=TrainConfig(max_epochs=2, patience=2, batch_size=64, seed=1),
    )
    assert config.model.answer_kind == "class" and config.model.input_kind == "words"  # Kumar's sentiment DMN
    monkeypatch.chdir(tmp_path)  # MLflow writes artifacts under the working directory
    outcome = sst_flow(config)
    report, version = outcome["report"], outcome["version"]
    assert version.name == "dmn-sst" and version.version == "1"
    assert report["architecture"] == "dmn" and [r["unit"] for r in report["units"]] == ["fine", "binary"]
    fine, binary = report["units"]
    assert fine["examples"] == 40 and binary["examples"] < 40  # neutral test sentences are not binary examples
    assert 0.0 <= fine["dev_accuracy"] <= 1.0 and binary["accuracy"] > 0.3
    assert sum(map(sum, fine["confusion"])) == 40 and fine["classes"] == ["0", "1", "2", "3", "4"]
    right = sum(fine["confusion"][i][i] for i in range(5))
    assert right == round(fine["accuracy"] * 40)  # the matrix and the accuracy count the same answers
    table = report_markdown(report)
    assert "### SST binary: per class" in table and "Confusion matrix" in table
    assert "| SST | accuracy | dev accuracy | error | best epoch / epochs |" in table and "failed" not in table

    parts = sorted((tmp_path / "data" / "tokens").glob("sst-*/granularity=binary/*.parquet"))
    labels = pq.read_table(parts[0]).column("label").to_pylist()
    assert set(labels) == {"0", "1"}  # binary: neutral phrases dropped

    model = mlflow.pyfunc.load_model(version.uri)
    requests = pd.DataFrame(
        {
            "sentence": ["A gorgeous, witty film (truly).", None],
            "tokens": [None, ["a", "dull", "and", "tedious", "mess", "."]],
            "granularity": ["fine", "binary"],
        }
    )
    answers = model.predict(requests)
    assert answers[0] in {"0", "1", "2", "3", "4"} and answers[1] in {"0", "1"}
    registered = MlflowClient(config.tracking_uri).get_model_version("dmn-sst", "1")
    assert registered.tags["training_digest"] == report["training_digest"]

    code = main(["ask", version.uri, "--sentence", "A (truly) witty film.", "--granularity", "binary",
                 "--tracking-uri", config.tracking_uri])  # fmt: skip
    shown = capsys.readouterr().out.splitlines()
    assert code == 0 and shown[0].split()[:2] in (["answer:", "0"], ["answer:", "1"])
    assert "; SST binary model)" in shown[0] and "(probability 0." in shown[0] and "pass 2" in shown[2]
    assert [line.split()[-1] for line in shown[3:]] == ["A", "-LRB-", "truly", "-RRB-", "witty", "film", "."]


def test_glove_vectors_start_the_embedding_of_the_words_glove_has(sst_trees):
    from dmn.apps.sst import APPLICATION as SST
    from dmn.data.vectors import glove_vectors
    from dmn.data.vocab import Vocabulary
    from dmn.models import ModelSizes
    from dmn.train import train_dmn

    vocab = Vocabulary.build([["the", "clichéd", "qzxwv", "what", "is", "sentiment"]], ["0", "1"])
    vectors, found = glove_vectors(vocab.words)
    assert [w for w, f in zip(vocab.words, found) if not f] == ["<pad>", "<unk>", "qzxwv"]
    the = vocab.words.index("the")
    assert vectors[the, :4].tolist() == pytest.approx([0.418, 0.24968, -0.41242, 0.1217], abs=1e-5)
    rows = [{"tokens": ["the", "clichéd", "qzxwv"], "label": "0"}, {"tokens": ["the"], "label": "1"}]
    data = SST.encode(rows, vocab, {"phrases": True}, "class")
    model = ModelConfig(hidden_size=64, answer="class", word_vectors="glove-6b-50d")
    still = TrainConfig(max_epochs=1, learning_rate=1e-9, l2=0.0)  # one step that moves nothing
    result = train_dmn(data, data, model, still, ModelSizes(len(vocab.words), 2), word_vectors=(vectors, found))
    embedding = result.state_dict["embedding.weight"]  # (V, 64): GloVe in the first 50 dimensions
    assert torch.allclose(embedding[found, :50], vectors[found], atol=1e-4)
    assert not torch.allclose(embedding[~found][2:, :50], torch.zeros(50))  # the others stay random
