"""Token rows -> padded id tensors, and batches that carry their masks.

A dataset is encoded once into tensors padded to its own largest story; each batch is then a slice
trimmed to the largest story, sentence and question in that batch. Masks are derived from the ids
(id 0 is padding), so they travel with the data into every module of the model.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from dmn.data.vocab import Vocabulary


@dataclass
class EncodedStories:
    story: torch.Tensor  # (N, S, W) word ids, 0 = padding; facts are left-aligned
    question: torch.Tensor  # (N, Q) word ids
    answer: torch.Tensor  # (N,) answer ids, -1 for an answer never seen in training
    supporting: torch.Tensor  # (N, K) indices of supporting facts in the cut story, -1 = none

    def __len__(self) -> int:
        return self.answer.size(0)

    def select(self, index: torch.Tensor) -> EncodedStories:
        return EncodedStories(*(getattr(self, f.name)[index] for f in fields(self)))


@dataclass
class Batch:
    story: torch.Tensor  # (B, S, W)
    word_mask: torch.Tensor  # (B, S, W) bool
    fact_mask: torch.Tensor  # (B, S) bool
    question: torch.Tensor  # (B, Q)
    question_mask: torch.Tensor  # (B, Q) bool
    answer: torch.Tensor  # (B,)
    supporting: torch.Tensor  # (B, K)

    def model_inputs(self) -> tuple[torch.Tensor, ...]:
        return self.story, self.word_mask, self.fact_mask, self.question, self.question_mask


def encode_stories(rows: list[dict], vocab: Vocabulary, sentence_limit: int) -> EncodedStories:
    """Encode rows (`story_tokens`, `question_tokens`, `answer`, `supporting`) with `vocab`.

    Stories longer than `sentence_limit` keep their last `sentence_limit` sentences (the paper's cut);
    supporting facts cut away are dropped from `supporting`.
    """
    stories, supports = [], []
    for row in rows:
        sentences = row["story_tokens"] or [[]]
        cut = max(0, len(sentences) - sentence_limit)
        stories.append([vocab.word_ids(s) for s in sentences[cut:]])
        supports.append([i - cut for i in row.get("supporting") or [] if i >= cut])
    n = len(rows)
    max_facts = max(len(s) for s in stories)
    max_words = max((len(w) for s in stories for w in s), default=1) or 1
    max_question = max(len(r["question_tokens"]) for r in rows) or 1
    max_support = max((len(s) for s in supports), default=0) or 1
    story = torch.zeros(n, max_facts, max_words, dtype=torch.long)
    question = torch.zeros(n, max_question, dtype=torch.long)
    supporting = torch.full((n, max_support), -1, dtype=torch.long)
    for b, (sentences, row, support) in enumerate(zip(stories, rows, supports)):
        for s, ids in enumerate(sentences):
            story[b, s, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        q = vocab.word_ids(row["question_tokens"])
        question[b, : len(q)] = torch.tensor(q, dtype=torch.long)
        supporting[b, : len(support)] = torch.tensor(support, dtype=torch.long)
    answer = torch.tensor([vocab.answer_id(r.get("answer", "")) for r in rows], dtype=torch.long)
    return EncodedStories(story, question, answer, supporting)


def make_batch(data: EncodedStories, device: torch.device | str = "cpu") -> Batch:
    """Trim `data` (a selection of a few examples) to its own largest sizes and build the masks."""
    word_mask = data.story != 0  # (B, S, W)
    fact_mask = word_mask.any(-1)  # (B, S): a fact has at least one word
    question_mask = data.question != 0  # (B, Q)
    n_facts = int(fact_mask.sum(1).max())
    n_words = int(word_mask.sum(-1).max())
    n_question = int(question_mask.sum(1).max())
    batch = Batch(
        story=data.story[:, :n_facts, :n_words],
        word_mask=word_mask[:, :n_facts, :n_words],
        fact_mask=fact_mask[:, :n_facts],
        question=data.question[:, :n_question],
        question_mask=question_mask[:, :n_question],
        answer=data.answer,
        supporting=data.supporting,
    )
    return Batch(*(getattr(batch, f.name).to(device) for f in fields(batch)))
