"""Entity renaming: more training stories from each one, found in the data alone (no list of names).

An *entity* of a unit (a bAbI task) is a word that is, alone, the answer of one of its training examples and
occurs in that example's story (a place, a person, an object, a colour). Such an answer is found by matching
the question against the story, not by knowing the word, so renaming an example's entities consistently
(story, question and answer alike, a bijection of the unit's entities) gives an example whose answer is as
right as the original's, with the same structure and other names. A copy renames an example by a random
permutation; the model then cannot tie an answer to a name it memorised, which is how it overfits 900
stories.

That holds only where the unit's answers are copied from its stories. Where a word the stories use is the
answer of an example whose story lacks it, answers are inferred, and renaming would contradict the inference:
in bAbI task 15, "wolf" answers "what is gertrude afraid of" from "gertrude is a mouse" and "mice are afraid
of wolves" (a plural the renaming cannot see), and the story holds "wolf" only when someone is one; in task
20, "kitchen" answers "where will antoine go" from "antoine is hungry". Such a unit has no entities. (A word
no story uses, "nothing" or "yes", is no entity and no evidence either.)

Nothing here names a word: a copy of bAbI relabelled in the words' order (bench/relabel_babi.py) gets the
same entities, in the same order, and the same copies (tests/test_bench.py trains on both with renamed
copies).
"""

from __future__ import annotations

import random

from dmn.data.vocab import tokenize


def entities(rows: list[dict]) -> list[str]:
    """The unit's entities (lower case, sorted): one-word answers that occur in their own example's story; none
    when a word of the stories answers an example whose story lacks it (the answers are inferred, not copied)."""
    return sorted(_written(rows))


def _written(rows: list[dict]) -> dict[str, str]:
    """Entity (lower case) -> its answer as the data writes it ("bill" -> "Bill"); {} for a unit whose answers
    are inferred."""
    found, missing = {}, set()
    for row in rows:
        answer = row["answer"].lower()
        if any(answer in sentence for sentence in row["story_tokens"]):
            found.setdefault(answer, row["answer"])
        else:
            missing.add(answer)
    story_words = {word for row in rows for sentence in row["story_tokens"] for word in sentence}
    return {} if missing & story_words else found


def _groups(written: dict[str, str]) -> list[list[str]]:
    """The entities that may take each other's place: those written alike as answers, in groups of two or more."""
    groups = [sorted(e for e in written if written[e][:1].isupper() == upper) for upper in (True, False)]
    return [group for group in groups if len(group) > 1]


def renameable(rows: list[dict]) -> bool:
    """The rows have entities to rename: a renamed copy can differ from its story."""
    return bool(_groups(_written(rows)))


def rename_entities(rows: list[dict], copies: int, seed: int) -> list[dict]:
    """`rows` followed by `copies` renamed copies of each (story_tokens, question_tokens, answer changed;
    the raw story and question text are not). Entities are permuted among those the data writes alike as
    answers (capitalised with capitalised: people with people in bAbI task 5, objects with objects), so a
    renamed answer is always one of the data's answers. An example whose answer holds an entity without being
    one (a list, "apple,football") is not copied. No group of two entities: `rows` alone."""
    written = _written(rows)
    groups = _groups(written)
    if copies == 0 or not groups:
        return list(rows)
    rng = random.Random(seed)
    renamed = list(rows)
    for _ in range(copies):
        for row in rows:
            whole = row["answer"].lower()
            if written.get(whole, row["answer"]) != row["answer"] or (
                whole not in written and set(written).intersection(tokenize(whole))
            ):
                continue  # an answer written otherwise than its entity, or a list of entities
            mapping = {e: new for group in groups for e, new in zip(group, rng.sample(group, len(group)))}
            renamed.append(
                {
                    **row,
                    "story_tokens": [[mapping.get(w, w) for w in sentence] for sentence in row["story_tokens"]],
                    "question_tokens": [mapping.get(w, w) for w in row["question_tokens"]],
                    "answer": written[mapping[whole]] if whole in mapping else row["answer"],
                }
            )
    return renamed
