"""Token rows -> padded id tensors, and batches that carry their masks.

A dataset is encoded once into tensors padded to its own largest story; each batch is then a slice
trimmed to the largest story, sentence, question and answer in that batch. Masks are derived from the ids
(id 0 is padding), so they travel with the data into every module of the model.

Targets are one shape for every answer kind: (N, T) ids, T = 1 for a class, the answer's words and the end
word for a sequence; positions past an answer hold IGNORE (not scored, not in the loss), and an answer (word)
never seen in training holds UNKNOWN (always scored wrong). So one loss and one exact-match accuracy serve
every application and both answer modules.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from dmn.data.vocab import Vocabulary

IGNORE = -100  # target padding: the default ignore_index of torch's cross-entropy
UNKNOWN = -1  # an answer never seen in training


@dataclass
class Examples:
    story: torch.Tensor  # (N, S, W) word ids, 0 = padding, facts left-aligned; images: (N, R, C, h, w) uint8 regions
    question: torch.Tensor  # (N, Q) word ids
    target: torch.Tensor  # (N, T) answer ids, IGNORE past the answer, UNKNOWN for an unseen one
    supporting: torch.Tensor  # (N, K) supporting facts in the (cut) story, in the data's order; -1 = none

    def __len__(self) -> int:
        return self.target.size(0)

    def select(self, index: torch.Tensor) -> Examples:
        return Examples(*(getattr(self, f.name)[index] for f in fields(self)))

    @property
    def is_images(self) -> bool:
        """The stories are image regions (pixels), not word ids."""
        return self.story.dtype == torch.uint8

    def fact_counts(self) -> torch.Tensor:
        """(N,) facts per example: its sentences, or its regions (every region is a fact)."""
        if self.is_images:
            return torch.full((len(self),), self.story.size(1))
        return (self.story != 0).any(-1).sum(-1)


# what pads each field of Examples when sets of different sizes are joined (concat_examples)
FILL = {"story": 0, "question": 0, "target": IGNORE, "supporting": -1}


def concat_examples(parts: list[Examples]) -> Examples:
    """Several example sets (of different stories' shapes: bAbI tasks encoded with their own cuts) -> one, each
    field padded to the largest size of every dimension with its padding value (FILL), so that the masks read
    from the ids stay those of each set."""
    joined = []
    for field in fields(Examples):
        tensors = [getattr(part, field.name) for part in parts]
        sizes = [max(t.size(d) for t in tensors) for d in range(1, tensors[0].dim())]
        padded = []
        for t in tensors:
            pad = [amount for d in reversed(range(1, t.dim())) for amount in (0, sizes[d - 1] - t.size(d))]
            padded.append(torch.nn.functional.pad(t, pad, value=FILL[field.name]))
        joined.append(torch.cat(padded))
    return Examples(*joined)


@dataclass
class Batch:
    story: torch.Tensor  # (B, S, W)
    word_mask: torch.Tensor  # (B, S, W) bool
    fact_mask: torch.Tensor  # (B, S) bool
    question: torch.Tensor  # (B, Q)
    question_mask: torch.Tensor  # (B, Q) bool
    target: torch.Tensor  # (B, T)
    supporting: torch.Tensor  # (B, K)

    def model_inputs(self) -> tuple[torch.Tensor, ...]:
        return self.story, self.word_mask, self.fact_mask, self.question, self.question_mask


def _padded(rows: list[list[int]], fill: int) -> torch.Tensor:
    """Ragged id lists -> (N, longest) long tensor, `fill` after each row's end (at least one column)."""
    width = max((len(r) for r in rows), default=0) or 1
    padded = [list(row) + [fill] * (width - len(row)) for row in rows]
    return torch.tensor(padded, dtype=torch.long).reshape(len(rows), width)


def encode_stories(
    rows: list[dict], vocab: Vocabulary, sentence_limit: int | None, targets: list[list[int]] | None = None
) -> Examples:
    """Encode rows (`story_tokens`, `question_tokens`, `supporting`) with `vocab`; `targets` are the answer ids
    of each row (None: unknown, as at serving time).

    Stories longer than `sentence_limit` keep their last `sentence_limit` sentences (the DMN+ paper's cut;
    None: stories are read whole);
    a supporting fact cut away becomes -1 in place, so the others keep their order (gate supervision
    pairs the k-th supporting fact with the k-th pass).
    """
    stories, supports = [], []
    for row in rows:
        sentences = row["story_tokens"] or [[]]
        cut = max(0, len(sentences) - sentence_limit) if sentence_limit is not None else 0
        stories.append([vocab.word_ids(s) for s in sentences[cut:]])
        supports.append([i - cut if i >= cut else -1 for i in row.get("supporting") or []])
    max_facts = max(len(s) for s in stories)
    max_words = max((len(w) for s in stories for w in s), default=1) or 1
    empty_fact = [0] * max_words
    story = torch.tensor(  # one conversion of padded lists: a tensor per sentence costs more than the model
        [
            [ids + [0] * (max_words - len(ids)) for ids in sentences] + [empty_fact] * (max_facts - len(sentences))
            for sentences in stories
        ],
        dtype=torch.long,
    )
    question = _padded([vocab.word_ids(r["question_tokens"]) for r in rows], 0)
    target = _padded(targets if targets is not None else [[UNKNOWN]] * len(rows), IGNORE)
    return Examples(story, question, target, _padded(supports, -1))


def encode_facts(
    facts: list[list[list[str]]], question: tuple[str, ...], vocab: Vocabulary, targets: list[list[int]] | None
) -> Examples:
    """Sentence tasks (sentiment, tagging; Kumar et al. 2016): each word is a fact (its tokens: the word, and
    any feature tokens of it), and every sentence is asked the same fixed `question`."""
    stories = [{"story_tokens": sentence, "question_tokens": question} for sentence in facts]
    return encode_stories(stories, vocab, max((len(sentence) for sentence in facts), default=1), targets)


def encode_images(
    regions: torch.Tensor, questions: list[list[str]], vocab: Vocabulary, targets: list[list[int]] | None
) -> Examples:
    """Visual QA: image regions (N, R, C, h, w) uint8 as the stories, the questions' tokens with `vocab`."""
    question = _padded([vocab.word_ids(tokens) for tokens in questions], 0)
    target = _padded(targets if targets is not None else [[UNKNOWN]] * len(questions), IGNORE)
    return Examples(regions, question, target, torch.full((len(questions), 1), -1))


def make_batch(data: Examples, device: torch.device | str = "cpu") -> Batch:
    """Trim `data` (a selection of a few examples) to its own largest sizes and build the masks.

    Image regions are all facts and are not trimmed; their word mask (B, R, 1) says each region is one."""
    if data.is_images:
        fact_mask = torch.ones(data.story.shape[:2], dtype=torch.bool)  # (B, R)
        word_mask = fact_mask.unsqueeze(-1)  # (B, R, 1)
    else:
        word_mask = data.story != 0  # (B, S, W)
        fact_mask = word_mask.any(-1)  # (B, S): a fact has at least one word
    question_mask = data.question != 0  # (B, Q)
    n_facts = int(fact_mask.sum(1).max())
    n_words = int(word_mask.sum(-1).max())
    n_question = int(question_mask.sum(1).max())
    n_target = max(1, int((data.target != IGNORE).sum(1).max()))
    batch = Batch(
        story=data.story if data.is_images else data.story[:, :n_facts, :n_words],
        word_mask=word_mask[:, :n_facts, :n_words],
        fact_mask=fact_mask[:, :n_facts],
        question=data.question[:, :n_question],
        question_mask=question_mask[:, :n_question],
        target=data.target[:, :n_target],
        supporting=data.supporting,
    )
    return Batch(*(getattr(batch, f.name).to(device) for f in fields(batch)))
