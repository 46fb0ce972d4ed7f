"""The bAbI reader on the real files, and its errors on malformed ones."""

import pytest

from dmn.data.babi import find_babi_files, parse_babi_file
from dmn.errors import DataError


def test_parses_real_task_2_with_supporting_facts_as_story_indices(babi_en):
    questions = parse_babi_file(babi_en / "qa2_two-supporting-facts_train.txt")
    assert len(questions) == 1000
    first = questions[0]
    # file lines 1-7: six statements, then "Where is the football? \tgarden\t3 6"
    assert first.story[2] == "Mary got the football there."
    assert first.question == "Where is the football?"
    assert first.answer == "garden"
    assert first.supporting == (2, 5)
    assert first.line == 7
    # the second question of the story sees the statements before it, not the first question
    second = questions[1]
    assert len(second.story) == 12 and "Where" not in " ".join(second.story)
    assert [second.story[i] for i in second.supporting] == [
        "Mary dropped the football.",
        "Mary went back to the garden.",
    ]


def test_list_answers_of_task_19_are_one_class(babi_en):
    questions = parse_babi_file(babi_en / "qa19_path-finding_test.txt")
    assert all("," in q.answer for q in questions[:20])


def test_finds_all_twenty_tasks_in_a_release_folder(babi_root):
    files, fallbacks = find_babi_files(babi_root, "1k")
    assert sorted({t for t, _ in files}) == list(range(1, 21)) and fallbacks == {}


def test_falls_back_to_1k_training_file_when_10k_one_is_missing(tmp_path, babi_en):
    for size_folder in ("en", "en-10k"):
        (tmp_path / size_folder).mkdir()
    for name in ("qa3_three-supporting-facts_train.txt", "qa3_three-supporting-facts_test.txt"):
        (tmp_path / "en" / name).write_bytes((babi_en / name).read_bytes())
    (tmp_path / "en-10k" / "qa3_three-supporting-facts_test.txt").write_bytes(
        (babi_en / "qa3_three-supporting-facts_test.txt").read_bytes()
    )
    files, fallbacks = find_babi_files(tmp_path, "10k")
    assert files[(3, "train")] == tmp_path / "en" / "qa3_three-supporting-facts_train.txt"
    assert "missing" in fallbacks[3]


@pytest.mark.parametrize(
    "lines, line, reason",
    [
        (["1 Mary went home.", "oops no id", "3 Where is Mary?\thome\t1"], 2, "expected 'ID text'"),
        (["1 Mary went home.", "2 Where is Mary?\t\t1"], 2, "has no answer"),
        (["1 Mary went home.", "2 Where is Mary?"], 2, "has no answer"),
        (["1 Mary went home.", "2 Where is Mary?\thome\t7"], 2, "supporting fact '7'"),
        (["1 Mary went home.", "2 Where is Mary?\thome\t2"], 2, "supporting fact '2'"),
        (["1 Mary went home.", "3 Where is Mary?\thome\t1"], 2, "does not follow"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, lines, line, reason):
    path = tmp_path / "qa1_bad_train.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=reason) as caught:
        parse_babi_file(path)
    assert caught.value.path == str(path) and caught.value.line == line
    assert str(caught.value).startswith(f"{path}:{line}: ")


def test_missing_test_file_is_named(tmp_path, babi_en):
    name = "qa1_single-supporting-fact_train.txt"
    (tmp_path / name).write_bytes((babi_en / name).read_bytes())
    with pytest.raises(DataError, match="bAbI task 1: the test file is missing"):
        find_babi_files(tmp_path, "1k")


def test_lengthened_stories_keep_their_sentences_in_order_and_add_none_about_the_question(babi_en):
    from dmn.apps.babi import _task_table
    from dmn.data.babi import find_babi_files
    from dmn.data.lengthen import lengthen_stories

    files, _ = find_babi_files(babi_en, "1k")
    rows = [r for r in _task_table(files, 1).to_pylist() if r["split"] == "train"][:300]
    out = lengthen_stories(rows, 70, seed=0)
    assert out[:300] == rows and len(out) == 600
    for original, longer in zip(rows, out[300:]):
        assert longer["question"] == original["question"] and longer["answer"] == original["answer"]
        assert len(original["story"]) <= len(longer["story"]) <= 70
        kept = iter(longer["story"])
        assert all(sentence in kept for sentence in original["story"])  # a subsequence: the order is kept
        assert [longer["story"][i] for i in longer["supporting"]] == [
            original["story"][i] for i in original["supporting"]
        ]
        subject = original["question_tokens"][-1]  # "where is mary" -> mary
        added = sum(subject in tokens for tokens in longer["story_tokens"]) - sum(
            subject in tokens for tokens in original["story_tokens"]
        )
        assert added == 0
