"""Longer training stories, for models that must read stories far longer than the training ones (a served
story is read whole): each training story also appears lengthened with sentences of other training stories.

An added sentence shares no word with the question except the words most questions have ("where", "is"):
"Where is Mary?" gets sentences about the others only. Where only sentences about the question's subject
decide the answer (bAbI task 1, "Where is X?") the answer stays right; where others do (task 2: John may
carry the football) it does not, so this is an option of a run, off by default.
"""

from __future__ import annotations

import random
from collections import Counter


def lengthen_stories(rows: list[dict], limit: int, seed: int) -> list[dict]:
    """`rows` (story, story_tokens, question_tokens, supporting, ...) and a lengthened copy of each: sentences
    of other stories inserted at random places, up to a length drawn uniformly from the story's own to `limit`;
    the story's sentences keep their order and `supporting` follows them (a copy as it is when no sentence
    qualifies). Returns the rows, then their copies in the same order."""
    rng = random.Random(seed)
    frequent = {w for w, n in Counter(w for r in rows for w in set(r["question_tokens"])).items() if n > len(rows) / 2}
    pool = sorted({(text, tuple(tokens)) for r in rows for text, tokens in zip(r["story"], r["story_tokens"])})
    lengthened = []
    for row in rows:
        subject = set(row["question_tokens"]) - frequent
        others = [(text, tokens) for text, tokens in pool if not subject & set(tokens)]
        length = rng.randint(len(row["story"]), max(limit, len(row["story"]))) if others else len(row["story"])
        places = set(rng.sample(range(length), len(row["story"])))  # the story's sentences, in their order
        story, tokens, moved_to = [], [], []
        for position in range(length):
            if position in places:
                k = len(moved_to)
                story.append(row["story"][k])
                tokens.append(row["story_tokens"][k])
                moved_to.append(position)
            else:
                text, filler = rng.choice(others)
                story.append(text)
                tokens.append(list(filler))
        supporting = [moved_to[i] for i in row.get("supporting") or []]
        lengthened.append({**row, "story": story, "story_tokens": tokens, "supporting": supporting})
    return rows + lengthened
