"""The bench scripts that make claims: the README's bAbI table is what the committed results files give
(bench/babi_table.py); a relabelled bAbI trains as the original (bench/relabel_babi.py); the other-domain
tagging bench reads the bundled web text by genre and scores what it should (bench/pos_other_domain.py)."""

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from babi_table import table  # noqa: E402
from emit import emit  # noqa: E402


def _row(babi_task, accuracy):
    failed = accuracy < 0.95
    return {"unit": babi_task, "accuracy": accuracy, "failed": failed, "best_epoch": 3, "epochs": 9}


def test_the_readme_table_matches_the_committed_results():
    done = subprocess.run([sys.executable, "bench/babi_table.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_the_table_has_every_task_the_mean_error_and_the_failed_tasks():
    rows = [_row(t, 1.0) for t in range(1, 21)]
    rows[2] = _row(3, 0.5)
    results = {
        "units": rows,
        "mean_error": 0.025,
        "failed_units": [3],
        "code_version": "git abc",
        "recorded": {"command": "dmn run babi --babi-tasks all", "wall_seconds": 600, "cores": 2},
    }
    supervised = {**results, "units": [_row(t, 1.0) for t in range(1, 21)], "mean_error": 0.0, "failed_units": []}
    supervised["recorded"] = {**results["recorded"], "command": "dmn run babi --babi-tasks all --supervise-gates"}
    some = {**results, "units": [_row(17, 0.9), _row(18, 1.0)], "mean_error": 0.05, "failed_units": [17]}  # 2 tasks
    text = table({"babi-1k": results, "babi-1k-supervised": supervised, "babi-10k-tasks-7-14-17-18": some})
    assert "| 3 | 50.0 % (failed) (3 / 9) | 100.0 % (3 / 9) | — | 98.9 % |" in text
    assert "| 17 | 100.0 % (3 / 9) | 100.0 % (3 / 9) | 90.0 % (failed) (3 / 9) | 95.8 % |" in text
    assert "**2.5 %; 1** (3) | **0.0 %; 0** (none) | **5.0 % of 2 tasks; 1** (17)" in text
    assert "`python bench/record_run.py --name babi-1k -- run babi --babi-tasks all`, 10.0 min" in text
    assert "--name babi-1k-supervised -- run babi --babi-tasks all --supervise-gates`" in text
    assert "1k, a model per task, gates supervised: test accuracy" in text.splitlines()[0]
    assert "10k:" not in text.splitlines()[0]  # no column for a run without its file


def test_a_bench_figure_names_the_cpu_and_its_vector_instructions(tmp_path, capsys):
    # machines of one kind differ several-fold in speed: a figure must say which one it was
    results = tmp_path / "figures.json"
    emit({"examples_per_s": 1.0}, results)
    line = json.loads(capsys.readouterr().out)
    assert json.loads(results.read_text()) == line
    assert f"{os.cpu_count()} cores, {torch.backends.cpu.get_cpu_capability()}" in line["machine"]
    assert line["command"].startswith("python ")


def test_a_relabelled_babi_trains_and_answers_exactly_as_the_original(tmp_path, babi_en):
    """Every word replaced by an invented one (bench/relabel_babi.py): the same steps, the same answers."""
    from relabel_babi import relabel_folder

    from dmn.apps.babi import APPLICATION as BABI
    from dmn.checkpoint import load_checkpoint
    from dmn.config import ModelConfig, TrainConfig
    from dmn.data.sources import ingest_babi
    from dmn.pipeline import evaluate_unit, train_unit

    mapping = relabel_folder(babi_en, tmp_path / "relabelled")
    assert mapping["mary"] != "mary" and len(set(mapping.values())) == len(mapping)
    story = (tmp_path / "relabelled" / "qa1_single-supporting-fact_train.txt").read_text().splitlines()[0]
    assert story.startswith("1 ") and story.endswith(".") and "Mary" not in story
    results, weights = [], []
    for source, root in ((babi_en, tmp_path / "original"), (tmp_path / "relabelled", tmp_path / "copy")):
        dataset = BABI.tokenise(ingest_babi(str(source), "1k", str(root)), str(root))
        train = TrainConfig(max_epochs=8, patience=8, batch_size=32, seed=1)
        settings = {"sentence_limit": 70, "entity_copies": 1}  # renamed copies too: the entities come from the data
        path = train_unit(BABI, dataset, 1, settings, ModelConfig(hidden_size=32), train, root / "m")
        results.append(evaluate_unit(BABI, dataset, 1, path))
        weights.append(load_checkpoint(path)[0].state_dict())
    original, relabelled = results
    assert original["accuracy"] > 0.5  # chance is 1/6: it learned, and the copy the same
    for key in ("accuracy", "support_hit_rate", "best_epoch"):
        assert relabelled[key] == original[key]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def test_the_bundled_web_text_reads_by_genre_and_an_ambiguous_archive_is_refused(tmp_path):
    from pos_other_domain import EWT, conllu_file, read_genres

    from dmn.errors import DataError

    path = conllu_file(EWT, tmp_path / "ewt")
    sentences = read_genres(path)
    sent_ids = [line.split(" = ")[1] for line in path.read_text(encoding="utf-8").splitlines() if "# sent_id" in line]
    assert len(sentences) == len(sent_ids) == 2077  # as UD's README gives the test split
    assert [s["genre"] for s in sentences] == [sent_id.split("-")[0] for sent_id in sent_ids]
    assert {s["genre"] for s in sentences} == {"answers", "email", "newsgroup", "reviews", "weblog"}
    # a sentence's own sent_id, never the one of the sentence before; multiword tokens are not its first word
    word = "{}\t{}\t_\t_\t{}\t_\t_\t_\t_\t_\n"
    text = (
        "# sent_id = email-1\n# text = Mail it\n" + word.format(1, "Mail", "VB") + word.format(2, "it", "PRP") + "\n"
        "# text = no id\n1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n" + word.format(1, "do", "VBP")
        + word.format(2, "n't", "RB") + "\n# sent_id = weblog-9\n# newpar\n" + word.format(1, "Hi", "UH")
    )  # fmt: skip
    (tmp_path / "mixed-test.conllu").write_text(text, encoding="utf-8")
    mixed = read_genres(tmp_path / "mixed-test.conllu")
    assert [(s["words"], s["genre"]) for s in mixed] == [(["Mail", "it"], "email"), (["do", "n't"], ""),
                                                         (["Hi"], "weblog")]  # fmt: skip
    archive = tmp_path / "two.tar"
    with tarfile.open(archive, "w") as tar:
        for name in ("a-test.conllu", "b-test.conllu"):
            member = tarfile.TarInfo(name)
            member.size = 1
            tar.addfile(member, io.BytesIO(b"\n"))
    with pytest.raises(DataError, match=r"two\.tar.*2 \.conllu files"):
        conllu_file(archive, tmp_path / "out")


def test_other_domain_scores_count_unknown_words_unseen_tags_and_genres():
    from pos_other_domain import score

    sentences = [
        {"words": ["The", "e-mail", "-", "works"], "tags": ["DT", "NN", "HYPH", "VBZ"], "genre": "email"},
        {"words": ["lol", "ok"], "tags": ["UH", "UH"], "genre": "answers"},
    ]
    predicted = [["DT", "NN", ":", "NNS"], ["NN", "UH"]]
    figures = score(predicted, sentences, known={"The", "works", "ok"}, tagset={"DT", "NN", "VBZ", "UH", ":"})
    assert figures["accuracy"] == 3 / 6 and figures["accuracy_on_training_tags"] == 3 / 5
    assert figures["unknown_words"] == 3 and figures["unknown_word_accuracy"] == 1 / 3  # e-mail, -, lol
    assert figures["accuracy_by_genre"] == {"answers": 1 / 2, "email": 2 / 4}
