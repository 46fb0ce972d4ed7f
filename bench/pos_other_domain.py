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
import bisect
import re
import tarfile
import tempfile
import warnings
from pathlib import Path

from emit import emit
from pos_baselines import averaged_perceptron, most_frequent_tagger, wsj_splits

from dmn.data.treebank import read_tagged
from dmn.errors import DataError
from dmn.serving import UnknownWordsWarning
from dmn.version import code_version

ROOT = Path(__file__).resolve().parents[1]
EWT = ROOT / "data" / "ud-english-ewt-test.tar.xz"
SENT_ID = re.compile(r"^# sent_id = ([^-\s]+)")


def read_genres(path: Path) -> list[dict]:
    """The sentences of a CoNLL-U file, {"words", "tags", "genre"}; the genre is the prefix of the sentence's
    `# sent_id` (EWT: answers-..., email-...), '' where it has none."""
    starts = {}  # line of a sentence's sent_id comment -> its genre
    with open(path, encoding="utf-8") as lines:
        for number, text in enumerate(lines, start=1):
            match = SENT_ID.match(text)
            if match:
                starts[number] = match.group(1)
    sentences, comments = [], sorted(starts)
    for sentence in read_tagged(path):
        before = bisect.bisect_left(comments, sentence.line)  # the sent_id comments above the sentence's first word
        genre = starts[comments[before - 1]] if before else ""
        sentences.append({"words": list(sentence.words), "tags": list(sentence.tags), "genre": genre})
    return sentences


def conllu_file(location: Path, folder: str) -> Path:
    """A CoNLL-U file as given, or the one inside a tar archive (extracted into `folder`)."""
    if location.suffix == ".conllu":
        return location
    with tarfile.open(location) as archive:
        members = [m for m in archive.getmembers() if m.isfile() and m.name.endswith(".conllu")]
        if len(members) != 1:
            raise DataError(location, f"{len(members)} .conllu files in the archive; give one")
        archive.extractall(folder, members=members, filter="data")
    return Path(folder) / members[0].name


def score(predicted: list[list[str]], sentences: list[dict], known: set[str], tagset: set[str]) -> dict:
    """Token accuracy overall, on the tokens of training tags, on unknown words, and per genre."""
    tokens = []  # (right, gold tag, word, genre)
    for tags, sentence in zip(predicted, sentences, strict=True):
        assert len(tags) == len(sentence["words"]), (tags, sentence["words"])
        tokens += [(p == g, g, w, sentence["genre"]) for p, g, w in zip(tags, sentence["tags"], sentence["words"])]

    def share(rows: list[tuple]) -> float:
        return sum(right for right, *_ in rows) / len(rows)

    unknown = [t for t in tokens if t[2] not in known]
    return {
        "accuracy": share(tokens),
        "accuracy_on_training_tags": share([t for t in tokens if t[1] in tagset]),
        "unknown_word_accuracy": share(unknown),
        "tokens": len(tokens),
        "unknown_words": len(unknown),
        "accuracy_by_genre": {
            genre: share([t for t in tokens if t[3] == genre]) for genre in sorted({t[3] for t in tokens})
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-uri", required=True, help="a dmn-pos version: models:/dmn-pos/VERSION or @ALIAS")
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--conllu", type=Path, default=EWT, help="a CoNLL-U file, or a tar archive holding one")
    parser.add_argument("--source", default="bundled", help="the WSJ files the baselines train on (`dmn run pos`)")
    parser.add_argument("--results", type=Path, default=None, help="also write the JSON line here")
    args = parser.parse_args()

    import mlflow
    import pandas as pd

    with tempfile.TemporaryDirectory() as folder:
        sentences = read_genres(conllu_file(args.conllu, folder))
    train, _, digest = wsj_splits(args.source)
    known = {word for sentence in train for word in sentence["words"]}
    tagset = {tag for sentence in train for tag in sentence["tags"]}
    frequent = most_frequent_tagger(train)
    perceptron, _ = averaged_perceptron(train, iterations=5)
    mlflow.set_tracking_uri(args.tracking_uri)
    model = mlflow.pyfunc.load_model(args.model_uri)
    warnings.simplefilter("ignore", UnknownWordsWarning)  # a fifth of the words are new in another domain: expected
    dmn = list(model.predict(pd.DataFrame({"tokens": [s["words"] for s in sentences]})))
    run = mlflow.get_run(model.metadata.run_id)
    emit(
        {
            "data": args.conllu.name,
            "sentences": len(sentences),
            "training_files": f"{args.source} ({digest[:16]}), {len(train)} sentences",
            "dmn": {
                "model_uri": args.model_uri,
                "run_id": run.info.run_id,
                "params": {k: v for k, v in run.data.params.items() if k.startswith(("model.", "train."))},
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
