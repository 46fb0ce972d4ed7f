"""The registered pyfunc as users call it, loaded by MLflow from the registry: batched answers equal to each
row's answer alone, the details output, stories read whole, the words its model never saw, and one-line
errors naming the column and the row."""

import mlflow
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from dmn.data.babi import parse_babi_file
from dmn.data.vocab import tokenize
from dmn.serving import UnknownWordsWarning

OTHERS = ["John", "Sandra", "Daniel"]
PLACES = ["office", "garden", "hallway", "bathroom", "bedroom", "kitchen"]


@pytest.fixture(scope="module")
def model(trained):
    _, config, _ = trained
    mlflow.set_tracking_uri(config.tracking_uri)
    return mlflow.pyfunc.load_model(f"models:/{config.model_name}/1")


def _long_story(length: int, mary_moves_at: int) -> str:
    """A task-1 story of `length` sentences where Mary moves once, to the kitchen, at `mary_moves_at`."""
    sentences = [f"{OTHERS[i % 3]} went to the {PLACES[i % 6]}." for i in range(length)]
    sentences[mary_moves_at] = "Mary journeyed to the kitchen."
    return "\n".join(sentences)


def test_tokens_keep_every_unicode_letter():
    assert tokenize("José went to the café.") == ["josé", "went", "to", "the", "café"]
    assert tokenize("Ame\u0301lie is naïve!") == ["amélie", "is", "naïve"]  # a combining accent: the same word


def test_a_batch_answers_as_each_row_alone_and_details_carry_probability_unit_and_facts(model, babi_en):
    questions = parse_babi_file(babi_en / "qa1_single-supporting-fact_test.txt")[:150]
    stories = ["\n".join(q.story) for q in questions] + [_long_story(90, 2), _long_story(120, 110)]
    frame = pd.DataFrame({"story": stories, "question": [q.question for q in questions] + ["Where is Mary?"] * 2})
    batched = model.predict(frame)
    alone = [model.predict(frame.iloc[[i]])[0] for i in range(len(frame))]
    assert batched == alone
    assert sum(a == q.answer for a, q in zip(batched, questions)) >= 0.9 * len(questions)

    details = model.predict(frame, params={"details": True})
    assert list(details.columns) == ["answer", "probability", "babi_task", "unknown_words", "facts"]
    assert details["answer"].tolist() == batched
    assert details["probability"].between(0, 1).all() and details["probability"].mean() > 0.5
    assert (details["babi_task"] == 1).all()
    # stories are read whole: the 90- and 120-sentence ones too, past the training cut of 70
    assert details["facts"].tolist() == [len(q.story) for q in questions] + [90, 120]


def test_words_the_model_never_saw_come_with_the_answer(model):
    frame = pd.DataFrame(
        {
            "story": ["Apple is red in color.", "José went to the café.", "Mary went to the kitchen."],
            "question": ["What color is the apple?", "Where is José?", "Where is Mary?"],
        }
    )
    with pytest.warns(UnknownWordsWarning, match="row 1: .*café, josé"):
        details = model.predict(frame, params={"details": True})
    # "apple" is a word of bAbI (tasks 2, 3...) but not of task 1, the task this model was trained on
    assert {"apple", "color", "red", "what"} <= set(details["unknown_words"][0])
    assert details["unknown_words"][1] == ["café", "josé"] and details["unknown_words"][2] == []


@pytest.mark.parametrize(
    "frame, message",
    [
        (pd.DataFrame({"story": ["Mary went home.", None], "question": ["Where is Mary?"] * 2}), "row 1: story: empty"),
        (pd.DataFrame({"story": ["Mary went home."], "question": ["?"]}), "row 0: question: no words"),
        (
            pd.DataFrame({"story": ["Mary went home."] * 2, "question": ["Where is Mary?"] * 2, "babi_task": [1, 7]}),
            "row 1: babi_task 7 is not in this version",
        ),  # fmt: skip
        (pd.DataFrame({"story": ["Mary went home."]}), r"missing inputs \['question'\]"),  # MLflow's schema check
        (
            pd.DataFrame({"story": [["Mary went home.", "John left."]], "question": ["Where is Mary?"]}),
            "row 0: story: a string is needed, got list",
        ),
        (
            pd.DataFrame(
                {
                    "story": ["Mary went home."] * 3,
                    "question": ["Where is Mary?"] * 3,
                    "babi_task": pd.Series([1, float("inf"), 1], dtype=object),
                }
            ),
            "row 1: babi_task inf is not",
        ),
        (
            pd.DataFrame({"story": ["Mary went home."], "question": ["Where is Mary?"], "babi_task": [True]}),
            "row 0: babi_task True is not in this version",
        ),
    ],
)
def test_a_bad_request_names_the_column_and_the_row(model, frame, message):
    with pytest.raises(MlflowException, match=message) as raised:
        model.predict(frame)
    assert "Traceback" not in str(raised.value)


def test_a_nullable_unit_column_is_read_as_no_unit(model):
    frame = pd.DataFrame(
        {
            "story": ["Mary went to the garden.", "John went to the office."],
            "question": ["Where is Mary?", "Where is John?"],
            "babi_task": pd.array([pd.NA, 1], dtype="Int64"),
        }
    )
    assert model.predict(frame) == ["garden", "office"]
