"""The network both papers share: an input module (story -> facts), a question module, an episodic memory
and an answer module, given to `DynamicMemoryNetwork` as parts (`dmn.models.build_model` picks them).

Dimension letters: B batch, S facts, W words per sentence, Q question words, H hidden (= embedding) size,
P memory passes, T answer steps (1 for a class, S for tags), A answer classes, words or tags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from dmn.models.recurrence import stacked_gru


class QuestionEncoder(nn.Module):
    """Question module (both papers): a GRU over the question words, sharing the input's embedding;
    q is its state at the last real word."""

    def __init__(self, embedding: nn.Embedding, hidden_size: int):
        super().__init__()
        self.embedding = embedding
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True)

    def forward(self, question: torch.Tensor, question_mask: torch.Tensor) -> torch.Tensor:
        words = self.embedding(question)  # (B, Q, H)
        states = stacked_gru((self.gru,), (words,))[0]  # (B, Q, H); padding after the last word does not reach it
        last = (question_mask.sum(1) - 1).clamp(min=0)  # (B,)
        return states[torch.arange(states.size(0), device=states.device), last]  # (B, H)


@dataclass
class ModelOutput:
    logits: torch.Tensor  # (B, T, A): T = 1 for a class answer, the answer's words for a sequence, S for tags
    gates: torch.Tensor  # (B, P, S): attention of every pass over the facts, 0 on padded facts
    gate_scores: torch.Tensor  # (B, P, S): the gates before their softmax / sigmoid, -inf on padded facts


class DynamicMemoryNetwork(nn.Module):
    """Story + question -> answer logits and the gates of every pass, from the four modules it is given."""

    def __init__(
        self,
        embedding: nn.Embedding,
        input_module: nn.Module,
        question_module: nn.Module,
        memory: nn.Module,
        answer: nn.Module,
    ):
        super().__init__()
        self.embedding = embedding  # shared by the input and question modules; registered first
        self.input_module = input_module
        self.question_module = question_module
        self.memory = memory
        self.answer = answer
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier for weight matrices (the decoder's previous-word matrix too), zero biases, the word embedding
        uniform in [-sqrt(3), sqrt(3)] (DMN+ paper)."""
        for name, param in self.named_parameters():
            if name == "embedding.weight":
                nn.init.uniform_(param, -math.sqrt(3), math.sqrt(3))
            elif "bias" in name:
                nn.init.zeros_(param)
            elif param.dim() == 2:
                nn.init.xavier_uniform_(param)
        with torch.no_grad():
            self.embedding.weight[0].zero_()  # the padding word

    def forward(
        self,
        story: torch.Tensor,  # (B, S, W) word ids, 0 = padding
        word_mask: torch.Tensor,  # (B, S, W) bool
        fact_mask: torch.Tensor,  # (B, S) bool
        question: torch.Tensor,  # (B, Q) word ids
        question_mask: torch.Tensor,  # (B, Q) bool
        target: torch.Tensor | None = None,  # (B, T) answer ids: teacher forcing of a decoder while training
    ) -> ModelOutput:
        facts = self.input_module(story, word_mask, fact_mask)  # (B, S, H)
        q = self.question_module(question, question_mask)  # (B, H)
        memory, gates, scores = self.memory(facts, fact_mask, q)  # (B, H), (B, P, S), (B, P, S)
        logits = self.answer(memory, q, facts, target)  # (B, T, A)
        return ModelOutput(logits, gates, scores)
