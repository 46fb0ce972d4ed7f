"""Entity renaming: more training stories from each one, found in the data alone (no list of names).

An *entity* of a unit (a bAbI task) is a word that is, alone, the answer of one of its training examples and
occurs in that example's story (a place, a person, an object, a colour). Such an answer is found by matching
the question against the story, not by knowing the word, so renaming an example's entities consistently
(story, question and answer alike, a bijection of the unit's entities) gives an example whose answer is as
right as the original's, with the same structure and other names. A copy renames an example by a random
permutation; the model then cannot tie an answer to a name it memorised, which is how it overfits 900
stories. Where an entity also carries a meaning beyond its identity (bAbI task 20: "tired" sends a person to
the bedroom), the renamed copies contradict the data: the validation set, which is never renamed, shows it.

Nothing here names a word: a relabelled copy of bAbI gets the same entities, in the same order, and the
same copies (bench/relabel_babi.py).
"""

from __future__ import annotations

import random

from dmn.data.vocab import tokenize


def entities(rows: list[dict]) -> list[str]:
    """The unit's entities (lower case, sorted): one-word answers that occur in their own example's story."""
    found = set()
    for row in rows:
        answer = row["answer"].lower()
        if any(answer in sentence for sentence in row["story_tokens"]):
            found.add(answer)
    return sorted(found)


def rename_entities(rows: list[dict], copies: int, seed: int) -> list[dict]:
    """`rows` followed by `copies` renamed copies of each (story_tokens, question_tokens, answer changed;
    the raw story and question text are not). The answer keeps its case ("Bill" -> "Fred"): answer classes
    are written as the data writes them. An example whose answer holds an entity without being one (a list,
    "apple,football") is not copied. Fewer than two entities: `rows` alone."""
    names = entities(rows)
    if copies == 0 or len(names) < 2:
        return list(rows)
    known = set(names)
    rng = random.Random(seed)
    renamed = list(rows)
    for _ in range(copies):
        for row in rows:
            whole = row["answer"].lower()
            if whole not in known and known.intersection(tokenize(whole)):
                continue
            mapping = dict(zip(names, rng.sample(names, len(names))))
            answer = mapping.get(whole, row["answer"])
            renamed.append(
                {
                    **row,
                    "story_tokens": [[mapping.get(w, w) for w in sentence] for sentence in row["story_tokens"]],
                    "question_tokens": [mapping.get(w, w) for w in row["question_tokens"]],
                    "answer": answer.capitalize() if whole in known and row["answer"][:1].isupper() else answer,
                }
            )
    return renamed
