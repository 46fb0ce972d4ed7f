"""Reader of SHAPES (Andreas et al. 2016, "Neural Module Networks"): 30x30 images of a 3x3 grid of coloured
shapes, with yes/no questions.

A split `<name>` is four aligned files: `<name>.input.npy` (N, 30, 30, 3) uint8 images, `<name>.query_str.txt`
(a question a line), `<name>.query` (the question as a module layout, e.g. `(is green (left_of red))`) and
`<name>.output` (`true` or `false` a line).

The arrays hold their channels as blue, green, red (OpenCV's order), although the data's README says RGB: read
that way, a question's colour words match the shapes' colours on every colour-only relation question of
train.small, val and test ("is a green shape left of a red shape": 512 of 512), and as RGB on about half
(262; tests/test_vqa.py::test_reader_gives_rgb_the_colour_words_agree_with_the_pixels). The reader hands out
RGB, as every other image here is.
"""

from __future__ import annotations

import io

import numpy as np

from dmn import storage
from dmn.data.vocab import tokenize
from dmn.errors import DataError

ANSWERS = ("true", "false")
SUFFIXES = (".input.npy", ".query_str.txt", ".query", ".output")


def read_shapes_split(files: dict[str, str], name: str) -> list[dict]:
    """The examples of split `name` from `files` ({file name: path}): rows of `line` (1-based, the same line in
    each text file), `question`, `question_tokens`, `layout`, `question_type` (the layout's first word), `answer`
    and the image as an (H, W, 3) uint8 RGB array (`image_array`).

    DataError naming the file (and line) on a missing file, images that are not (N, H, W, 3) uint8, files of
    different lengths, or an answer other than true/false."""
    paths = {suffix: files.get(name + suffix) for suffix in SUFFIXES}
    for suffix, path in paths.items():
        if path is None:
            raise DataError(name + suffix, f"SHAPES split {name} lacks this file")
    images = _images(paths[".input.npy"])
    texts = {suffix: _lines(paths[suffix]) for suffix in SUFFIXES[1:]}
    for suffix, lines in texts.items():
        if len(lines) != len(images):
            raise DataError(paths[suffix], f"{len(lines)} lines, but {len(images)} images in {name}.input.npy")
    rows = []
    for i, (question, layout, answer) in enumerate(zip(*texts.values())):
        if answer not in ANSWERS:
            raise DataError(paths[".output"], f"answer {answer!r} is not one of {', '.join(ANSWERS)}", line=i + 1)
        if not tokenize(question):
            raise DataError(paths[".query_str.txt"], "empty question", line=i + 1)
        rows.append(
            {
                "line": i + 1,
                "question": question,
                "question_tokens": tokenize(question),
                "layout": layout,
                "question_type": layout.strip("( ").split(" ")[0],
                "answer": answer,
                "image_array": np.ascontiguousarray(images[i, ..., ::-1]),  # BGR -> RGB: the module's docstring
            }
        )
    return rows


def _images(path: str) -> np.ndarray:
    try:
        images = np.load(io.BytesIO(storage.read_bytes(path)), allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DataError(path, f"not a readable .npy array ({error})") from None
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise DataError(path, f"images of shape {images.shape} and dtype {images.dtype}; (N, H, W, 3) uint8 needed")
    return images


def _lines(path: str) -> list[str]:
    try:
        return storage.read_bytes(path).decode("utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise DataError(path, f"not UTF-8 text ({error.reason})") from None
