"""Accuracy of a registered bAbI model on stories far longer than its training stories, read whole.

Each long story is a story of the bAbI test file with sentences of other test stories added before it (the
answer's facts near the end) or after it (near the start) until it has 75-120 sentences. Added sentences
never hold the question's last word (its subject: "Where is Mary?" -> mary), so the answer stays the
file's. Prints one JSON line (and writes it with --results): accuracy near the end and near the start.

    python bench/long_stories.py --model-uri models:/dmn-babi/1 --tracking-uri sqlite:///mlflow.db \
        --babi-file data/raw/.../qa1_babi_test.txt --stories 200
"""

from __future__ import annotations

import random
import warnings
from pathlib import Path

import mlflow
import pandas as pd
from emit import emit, model_parser

from dmn.data.babi import parse_babi_file
from dmn.data.vocab import tokenize


def long_stories(babi_file: Path, count: int, seed: int = 0) -> tuple[pd.DataFrame, list[str], list[str]]:
    """(requests, answers, where: 'end' or 'start') of `count` long stories, half of each kind."""
    questions = parse_babi_file(babi_file)
    sentences = sorted({s for q in questions for s in q.story})
    rng = random.Random(seed)
    rows, answers, where = [], [], []
    for i, q in enumerate(rng.sample(questions, count)):
        subject = tokenize(q.question)[-1]
        others = [s for s in sentences if subject not in tokenize(s)]
        extra = rng.choices(others, k=rng.randint(75, 120) - len(q.story))
        near = "end" if i % 2 == 0 else "start"
        story = [*extra, *q.story] if near == "end" else [*q.story, *extra]
        rows.append({"story": "\n".join(story), "question": q.question})
        answers.append(q.answer)
        where.append(near)
    return pd.DataFrame(rows), answers, where


def main() -> None:
    parser = model_parser(__doc__)
    parser.add_argument("--stories", type=int, default=200)
    args = parser.parse_args()

    mlflow.set_tracking_uri(args.tracking_uri)
    model = mlflow.pyfunc.load_model(args.model_uri)
    requests, answers, where = long_stories(args.babi_file, args.stories)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        details = model.predict(requests, params={"details": True})
    right = [a == b for a, b in zip(details["answer"], answers)]
    result = {
        "model_uri": args.model_uri,
        "stories": len(right),
        "facts_read": [int(details["facts"].min()), int(details["facts"].max())],
        **{
            f"accuracy_answer_near_{near}": round(
                sum(r for r, w in zip(right, where) if w == near) / where.count(near), 4
            )
            for near in ("end", "start")
        },
    }
    emit(result, args.results)


if __name__ == "__main__":
    main()
