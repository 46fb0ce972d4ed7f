"""Tagging text of another domain than the training files': a registered dmn-pos version beside the baselines of
bench/pos_baselines.py (trained on the same WSJ training files) on the XPOS tags of a CoNLL-U file. By default
the test file of the English Web Treebank (UD English-EWT v2.16, bundled in data/): Yahoo! Answers, email,
newsgroups, reviews and weblogs, 2,077 sentences.

    python bench/pos_other_domain.py --model-uri models:/dmn-pos/1 --tracking-uri sqlite:///mlflow.db \\
        --results results/pos-ewt.json

Per tagger: token accuracy; the same on the tokens whose gold tag is one of the training files' tags (EWT adds
ADD, AFX, GW, HYPH, NFP and XX to the Penn Treebank's: no tagger trained on the WSJ gives them); unknown-word
accuracy (words absent from the training files); token accuracy per genre (the prefix of the `# sent_id`).
Needs nltk (the dev extra); prints one JSON line.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import warnings
from pathlib import Path

from emit import emit
from pos_baselines import accuracy, averaged_perceptron, most_frequent_tagger, tagged_splits

from dmn.data.fetch import extract_archive, sha256_file
from dmn.data.treebank import read_tagged
from dmn.errors import DataError
from dmn.serving import UnknownWordsWarning
from dmn.version import code_version

ROOT = Path(__file__).resolve().parents[1]
EWT = ROOT / "data" / "ud-english-ewt-test.tar.xz"
SENT_ID = re.compile(r"^# sent_id = ([^-\s]+)")


def read_genres(path: Path) -> list[dict]:
    """The sentences of a CoNLL-U file, {"words", "tags", "genre"}; the genre is the prefix of the sentence's own
    `# sent_id` (EWT: answers-..., email-...), '' where it has none."""
    genre_at = {}  # line of a sentence's first word (where read_tagged says it starts) -> its genre
    genre, started = "", False
    with open(path, encoding="utf-8") as lines:
        for number, text in enumerate(lines, start=1):
            if not text.strip():
                genre, started = "", False
            elif text.startswith("#"):
                match = SENT_ID.match(text)
                genre = match.group(1) if match else genre
            elif not started and not re.match(r"^\d+[-.]", text):  # a word, not a multiword token or empty node
                genre_at[number], started = genre, True
    return [
        {"words": list(sentence.words), "tags": list(sentence.tags), "genre": genre_at[sentence.line]}
        for sentence in read_tagged(path)
    ]


def conllu_file(location: Path, folder: Path) -> Path:
    """A CoNLL-U file as given, or the one inside a tar or zip archive (extracted under `folder`); DataError
    naming the archive when it holds none or several, or is not one."""
    if location.suffix == ".conllu":
        return location
    found = sorted(extract_archive(location, folder, lambda name: name.endswith(".conllu")).rglob("*.conllu"))
    if len(found) != 1:
        raise DataError(location, f"{len(found)} .conllu files in the archive; give one")
    return found[0]


def score(predicted: list[list[str]], sentences: list[dict], known: set[str], tagset: set[str]) -> dict:
    """pos_baselines.accuracy (overall, unknown words), and the token accuracy on the tokens of training tags
    (`tagset`) and per genre (None for a group without tokens). ValueError when a sentence's tags do not align
    with its words."""
    tokens = []  # (right, gold tag, genre)
    for number, (tags, sentence) in enumerate(zip(predicted, sentences, strict=True), start=1):
        if len(tags) != len(sentence["words"]):
            raise ValueError(f"sentence {number}: {len(tags)} tags for {len(sentence['words'])} words")
        tokens += [(p == g, g, sentence["genre"]) for p, g in zip(tags, sentence["tags"])]

    def share(group: list[tuple]) -> float | None:
        return sum(right for right, _, _ in group) / len(group) if group else None

    genres = sorted({genre for _, _, genre in tokens})
    return {
        **accuracy(predicted, sentences, known),
        "accuracy_on_training_tags": share([t for t in tokens if t[1] in tagset]),
        "accuracy_by_genre": {genre: share([t for t in tokens if t[2] == genre]) for genre in genres},
    }


def main() -> None:
    """Score the model and the baselines on the file; one JSON line (and --results)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-uri", required=True, help="a dmn-pos version: models:/dmn-pos/VERSION or @ALIAS")
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--conllu", type=Path, default=EWT, help="a CoNLL-U file, or a tar archive holding one")
    parser.add_argument("--source", default="bundled", help="the WSJ files the baselines train on (`dmn run pos`)")
    parser.add_argument("--results", type=Path, default=None, help="also write the JSON line here")
    args = parser.parse_args()

    import mlflow
    import pandas as pd

    try:
        with tempfile.TemporaryDirectory() as folder:
            sentences = read_genres(conllu_file(args.conllu, Path(folder) / "conllu"))
    except DataError as error:
        sys.exit(f"error: {error}")
    train, _, digest = tagged_splits(args.source)
    known = {word for sentence in train for word in sentence["words"]}
    tagset = {tag for sentence in train for tag in sentence["tags"]}
    frequent = most_frequent_tagger(train)
    perceptron, _ = averaged_perceptron(train)
    mlflow.set_tracking_uri(args.tracking_uri)
    model = mlflow.pyfunc.load_model(args.model_uri)
    warnings.simplefilter("ignore", UnknownWordsWarning)  # a fifth of the words are new in another domain: expected
    dmn = list(model.predict(pd.DataFrame({"tokens": [s["words"] for s in sentences]})))
    run = mlflow.get_run(model.metadata.run_id)
    emit(
        {
            "data": f"{args.conllu.name} (sha256 {sha256_file(args.conllu)[:16]})",
            "sentences": len(sentences),
            "training_files": f"{args.source} ({digest[:16]}), {len(train)} sentences",
            "dmn": {
                "model_uri": args.model_uri,
                "run_id": run.info.run_id,
                "params": {k: v for k, v in run.data.params.items() if k.startswith(("model.", "train."))},
                "its_test_metrics": {k: v for k, v in run.data.metrics.items() if ".test_" in k},  # on the WSJ
                **score(dmn, sentences, known, tagset),
            },
            "averaged_perceptron": score([perceptron(s["words"]) for s in sentences], sentences, known, tagset),
            "most_frequent_tag": score([frequent(s["words"]) for s in sentences], sentences, known, tagset),
            "code": code_version(),
        },
        args.results,
    )


if __name__ == "__main__":
    main()
