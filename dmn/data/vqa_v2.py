"""VQA v2 style data (Goyal et al. 2017; Antol et al. 2015): a questions JSON and an annotations JSON per split,
and a folder of images, read through `datasets`; and VQA's accuracy.

Files of a split `<name>` (e.g. train2014, val2014), anywhere under the source folder:
`*<name>_questions.json` ({"questions": [{"question_id", "image_id", "question"}]}),
`*<name>_annotations.json` ({"annotations": [{"question_id", "question_type", "multiple_choice_answer",
"answers": [{"answer"}, ...]}]}) and the images `*<name>_<image_id as 12 digits>.jpg` (or .png), the COCO names.

Scoring (the official evaluation, github.com/GT-Vision-Lab/VQA, vqaEval.py): an answer scores
min(#humans who gave it / 3, 1), averaged over the ten leave-one-out subsets of the ten human answers (one match
of ten scores 0.3), after the official normalisation (punctuation, number words to digits, articles dropped,
contractions). Unlike that script, the humans' answers are normalised as the prediction is, always: the script
normalises them only where they differ, and its number mapping turns a normalised "none" into "0", so a right
"none" could score 0 against humans' "none".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from dmn.data.images import resized
from dmn.data.vocab import tokenize
from dmn.errors import DataError

NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
           "seven": "7", "eight": "8", "nine": "9", "ten": "10"}  # fmt: skip
ARTICLES = {"a", "an", "the"}
CONTRACTIONS = {  # the official list's entries without an apostrophe, as people type them
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldnt": "couldn't", "didnt": "didn't",
    "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't", "hasnt": "hasn't", "havent": "haven't",
    "hes": "he's", "im": "i'm", "ive": "i've", "isnt": "isn't", "itd": "it'd", "itll": "it'll", "lets": "let's",
    "shes": "she's", "shouldnt": "shouldn't", "thats": "that's", "theres": "there's", "theyre": "they're",
    "theyve": "they've", "wasnt": "wasn't", "werent": "weren't", "whats": "what's", "wheres": "where's",
    "whos": "who's", "wont": "won't", "wouldnt": "wouldn't", "youre": "you're", "youve": "you've",
}  # fmt: skip
PUNCTUATION = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")  # as the official script: a full stop not followed by a digit
COMMA_IN_NUMBER = re.compile(r"(\d)(,)(\d)")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def normalize_answer(text: str) -> str:
    """The official normalisation of an answer: whitespace, punctuation, number words, articles, contractions."""
    given = text.replace("\n", " ").replace("\t", " ").strip().lower()
    text = given
    for mark in PUNCTUATION:  # the official processPunctuation: its tests read the answer as given
        if (mark + " " in given or " " + mark in given) or COMMA_IN_NUMBER.search(given):
            text = text.replace(mark, "")
        else:
            text = text.replace(mark, " ")
    text = PERIOD.sub("", text)
    words = [CONTRACTIONS.get(w, w) for w in (NUMBERS.get(w, w) for w in text.split()) if w not in ARTICLES]
    return " ".join(words)


def vqa_accuracy(predicted: str, human_answers: list[str]) -> float:
    """VQA's accuracy of one answer against the humans' (usually ten): the mean over the leave-one-out subsets
    of min(matches in the subset / 3, 1)."""
    answer = normalize_answer(predicted)
    humans = [normalize_answer(h) for h in human_answers]
    scores = [min(1.0, sum(h == answer for j, h in enumerate(humans) if j != i) / 3) for i in range(len(humans))]
    return sum(scores) / len(scores) if scores else 0.0


def split_names(files: Iterable[str]) -> list[str]:
    """The splits that have a questions file: 'train2014' of 'v2_OpenEnded_mscoco_train2014_questions.json',
    'test-dev2015' of '..._test-dev2015_questions.json'."""
    return sorted(
        re.sub(r"^.*?((?:test-)?[A-Za-z]+\d*)_questions\.json$", r"\1", n)
        for n in files
        if n.endswith("_questions.json")
    )


def read_vqa_split(files: dict[str, str], name: str, image_shape: tuple[int, int, int]) -> list[dict]:
    """The examples of split `name`: rows of `line` (the question's place in the questions file, from 1),
    `question`, `question_tokens`, `question_type`, `answer` (the humans' most common, normalised), `answers`
    (the humans', as given) and the image resized to `image_shape` (H, W, 3) as `image_array`.

    DataError naming the file (and the question's place) on a missing or malformed file, a question without
    annotation, or a missing or unreadable image."""
    from datasets import load_dataset

    questions_file = _one(files, f"{name}_questions.json")
    annotations_file = _one(files, f"{name}_annotations.json")
    questions = _records(load_dataset, questions_file, "questions", ("question_id", "image_id", "question"))
    annotations = _records(load_dataset, annotations_file, "annotations", ("question_id", "answers"))
    by_question = {a["question_id"]: a for a in annotations}
    images = {_image_id(n): path for n, path in files.items() if n.lower().endswith(IMAGE_SUFFIXES) and name in n}
    rows = []
    for line, question in enumerate(questions, start=1):
        annotation = by_question.get(question["question_id"])
        if annotation is None:
            raise DataError(annotations_file, f"no annotation of question_id {question['question_id']}", line=line)
        answers = [a.get("answer") if isinstance(a, dict) else None for a in annotation["answers"]]
        if not all(isinstance(a, str) for a in answers):
            raise DataError(annotations_file, f"answers of question_id {question['question_id']}: each needs an "
                            "'answer' string", line=line)  # fmt: skip
        if not answers or not tokenize(question["question"]):
            raise DataError(questions_file, "a question needs words and human answers", line=line)
        if question["image_id"] not in images:
            raise DataError(questions_file, f"image {question['image_id']} is not in the {name} images", line=line)
        rows.append(
            {
                "line": line,
                "question": question["question"],
                "question_tokens": tokenize(question["question"]),
                "layout": "",
                "question_type": annotation.get("question_type") or question["question"].split()[0].lower(),
                "answer": Counter(normalize_answer(a) for a in answers).most_common(1)[0][0],
                "answers": answers,
                "image_array": _image(images[question["image_id"]], image_shape),
            }
        )
    return rows


def _one(files: dict[str, str], ending: str) -> str:
    found = [path for name, path in sorted(files.items()) if name.endswith(ending)]
    if len(found) != 1:
        raise DataError(ending, f"{len(found)} files named *{ending} in the source; one is needed")
    return found[0]


def _records(load_dataset, path: str, field: str, keys: tuple[str, ...]) -> list[dict]:
    """The list under `field` of a JSON file, through `datasets`; DataError naming the file and a missing key."""
    try:
        records = load_dataset("json", data_files=path, field=field, split="train").to_list()
    except Exception as error:  # datasets wraps a malformed file or a missing field in several error types
        raise DataError(path, f"not a JSON object with a {field!r} list ({type(error).__name__})") from None
    for line, record in enumerate(records, start=1):
        missing = [key for key in keys if record.get(key) is None]
        if missing:
            raise DataError(path, f"{field}[{line - 1}] lacks {', '.join(missing)}", line=line)
    return records


def _image_id(file_name: str) -> int:
    digits = re.findall(r"\d+", Path(file_name).stem)
    return int(digits[-1]) if digits else -1


def _image(path: str, shape: tuple[int, int, int]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return resized(np.asarray(image.convert("RGB")), shape)
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError) as error:
        raise DataError(path, f"unreadable image ({error})") from None
