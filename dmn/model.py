"""DMN+ (Xiong, Merity & Socher 2016, "Dynamic Memory Networks for Visual and Textual Question Answering").

The network reads a story as a set of facts, reads the question, attends over the facts in several passes
(episodic memory) and answers from the final memory and the question. Equation numbers refer to the DMN+
paper. Masks are data: the caller passes `word_mask`, `fact_mask` and `question_mask`, and every sum,
softmax and recurrence takes them, so a story gets the same answer and the same gates whatever else is
in its batch.

Dimension letters used in the shape comments:
    B batch, S facts (sentences) per story, W words per sentence, Q question words,
    H hidden (= embedding) size, P memory passes, A answer classes.

Seams for the other applications: the input module is `TextFactEncoder` (words -> facts); a word-level
encoder (sentiment, tagging) or an image-region encoder (visual QA) returns the same `(facts, fact_mask)`
pair, and `EpisodicMemory` and the answer module do not change.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dmn.config import ModelConfig
from dmn.recurrence import AttentionGRU


def positional_encoding(words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
    """Sentence encodings f = sum_j l_j o w_j of the words (B, S, W, H) -> (B, S, H), padded words excluded.

    l_jd = (1 - j/M) - (d/D)(1 - 2j/M), j = 1..M the word position, d = 1..D the embedding index, M the
    sentence's own length (not the padded width: padding must not change a sentence's encoding).
    Split as l_jd = a_j + (d/D) b_j with a_j = 1 - j/M and b_j = 2j/M - 1, the sum is two weighted sums
    over the words, and the (B, S, W, H) tensor of weights is never built.
    """
    mask = word_mask.to(words.dtype)  # (B, S, W)
    length = mask.sum(-1, keepdim=True).clamp(min=1.0)  # (B, S, 1)
    j_over_m = torch.arange(1, mask.size(-1) + 1, device=words.device, dtype=words.dtype) / length  # (B, S, W)
    weights = torch.stack([(1 - j_over_m) * mask, (2 * j_over_m - 1) * mask], dim=-2)  # (B, S, 2, W)
    sums = weights @ words  # (B, S, 2, H): sum_j a_j w_j and sum_j b_j w_j
    d_over_dim = torch.arange(1, words.size(-1) + 1, device=words.device, dtype=words.dtype) / words.size(-1)  # (H,)
    return sums[..., 0, :] + d_over_dim * sums[..., 1, :]  # (B, S, H)


def reverse_within_length(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence's real steps in place, padding staying at the end: (B, T, H) -> (B, T, H).

    A GRU run over the result is the backward direction started at the last real step, not at the
    padding. (Packed sequences do the same on CPU several times slower.)
    """
    lengths = mask.sum(1, keepdim=True)  # (B, 1)
    steps = torch.arange(x.size(1), device=x.device).unsqueeze(0)  # (1, T)
    source = torch.where(steps < lengths, lengths - 1 - steps, steps)  # (B, T)
    return x.gather(1, source.unsqueeze(-1).expand_as(x))  # (B, T, H)


class TextFactEncoder(nn.Module):
    """Input module for text: positional encoder per sentence, then input fusion (bi-GRU over sentences)."""

    def __init__(self, embedding: nn.Embedding, hidden_size: int, dropout: float):
        super().__init__()
        self.embedding = embedding
        self.dropout = nn.Dropout(dropout)
        self.fusion_forward = nn.GRU(hidden_size, hidden_size, batch_first=True)
        self.fusion_backward = nn.GRU(hidden_size, hidden_size, batch_first=True)

    def forward(self, story: torch.Tensor, word_mask: torch.Tensor, fact_mask: torch.Tensor) -> torch.Tensor:
        words = self.embedding(story)  # (B, S, W, H)
        # f_i = sum_j l_j * w_j^i  (positional encoding, Sec. 3.1)
        sentences = positional_encoding(words, word_mask)  # (B, S, H)
        sentences = self.dropout(sentences)
        # f_i = GRU_fwd(f_i, f_fwd_{i-1}) + GRU_bwd(f_i, f_bwd_{i+1})  (input fusion layer, Eq. 3-5)
        # padding sits after the real facts, so it cannot reach the forward outputs of real facts
        forward, _ = self.fusion_forward(sentences)  # (B, S, H)
        backward, _ = self.fusion_backward(reverse_within_length(sentences, fact_mask))  # (B, S, H)
        backward = reverse_within_length(backward, fact_mask)  # (B, S, H)
        return (forward + backward) * fact_mask.unsqueeze(-1)  # (B, S, H), zero on padded facts


class QuestionEncoder(nn.Module):
    """Question module: a GRU over the question words; q is its state at the last real word."""

    def __init__(self, embedding: nn.Embedding, hidden_size: int):
        super().__init__()
        self.embedding = embedding
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True)

    def forward(self, question: torch.Tensor, question_mask: torch.Tensor) -> torch.Tensor:
        words = self.embedding(question)  # (B, Q, H)
        states, _ = self.gru(words)  # (B, Q, H); padding after the last word does not reach it
        last = (question_mask.sum(1) - 1).clamp(min=0)  # (B,)
        return states[torch.arange(states.size(0), device=states.device), last]  # (B, H)


class EpisodicMemory(nn.Module):
    """P passes of attention over the facts with an untied ReLU memory update."""

    def __init__(self, hidden_size: int, passes: int):
        super().__init__()
        # W^(1) split by columns: the question half of z is the same in every pass, so it is computed once
        self.gate_question = nn.Linear(2 * hidden_size, hidden_size)  # W^(1)_q, b^(1)
        self.gate_memory = nn.Linear(2 * hidden_size, hidden_size, bias=False)  # W^(1)_m
        # W^(2); b^(2) adds the same number to every score and cancels in the softmax: left out, as its
        # gradient is exactly zero and Adam would turn rounding noise into steps
        self.gate_out = nn.Linear(hidden_size, 1, bias=False)
        # attention GRU (Eq. 12-13), shared by the passes; a padded fact has g_i = 0 and leaves h unchanged
        self.attention_gru = AttentionGRU(hidden_size)
        self.memory_updates = nn.ModuleList(nn.Linear(3 * hidden_size, hidden_size) for _ in range(passes))

    def forward(self, facts: torch.Tensor, fact_mask: torch.Tensor, question: torch.Tensor):
        q = question.unsqueeze(1)  # (B, 1, H)
        # z_i = [f_i o q; f_i o m; |f_i - q|; |f_i - m|]  (Eq. 6), and W^(1) z_i + b^(1) =
        #       W^(1)_q [f_i o q; |f_i - q|] + b^(1) + W^(1)_m [f_i o m; |f_i - m|]
        question_term = self.gate_question(torch.cat([facts * q, (facts - q).abs()], dim=-1))  # (B, S, H)
        projected_facts = self.attention_gru.input_proj(facts)  # (B, S, 2H), the same in every pass
        memory = question  # m^0 = q, (B, H)
        all_gates = []
        for update in self.memory_updates:
            m = memory.unsqueeze(1)  # (B, 1, H)
            memory_term = self.gate_memory(torch.cat([facts * m, (facts - m).abs()], dim=-1))  # (B, S, H)
            # Z_i = W^(2) tanh(W^(1) z_i + b^(1)) (+ b^(2), which the softmax cancels)  (Eq. 7)
            scores = self.gate_out(torch.tanh(question_term + memory_term)).squeeze(-1)  # (B, S)
            # g_i = softmax over the story's own facts (Eq. 8); padded facts get exactly 0
            gates = F.softmax(scores.masked_fill(~fact_mask, float("-inf")), dim=-1)  # (B, S)
            context = self.attention_gru(projected_facts, gates)[:, -1]  # c^t: state at the last fact, (B, H)
            # m^t = ReLU(W^t [m^{t-1}; c^t; q] + b)  (untied update, Eq. 14)
            memory = F.relu(update(torch.cat([memory, context, question], dim=-1)))  # (B, H)
            all_gates.append(gates)
        return memory, torch.stack(all_gates, dim=1)  # (B, H), (B, P, S)


class DMNPlus(nn.Module):
    """Story + question -> answer logits (B, A) and the attention gates of every pass (B, P, S)."""

    def __init__(self, config: ModelConfig, vocab_size: int, answer_size: int):
        super().__init__()
        self.config = config
        hidden = config.hidden_size
        self.embedding = nn.Embedding(vocab_size, hidden, padding_idx=0)  # shared by story and question
        self.input_module = TextFactEncoder(self.embedding, hidden, config.dropout)
        self.question_module = QuestionEncoder(self.embedding, hidden)
        self.memory = EpisodicMemory(hidden, config.passes)
        self.answer_dropout = nn.Dropout(config.dropout)
        self.answer = nn.Linear(2 * hidden, answer_size)  # softmax over answers from [m^P; q]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier for weight matrices, zero biases, embeddings uniform in [-sqrt(3), sqrt(3)] (the paper)."""
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
    ) -> tuple[torch.Tensor, torch.Tensor]:
        facts = self.input_module(story, word_mask, fact_mask)  # (B, S, H)
        q = self.question_module(question, question_mask)  # (B, H)
        memory, gates = self.memory(facts, fact_mask, q)  # (B, H), (B, P, S)
        logits = self.answer(self.answer_dropout(torch.cat([memory, q], dim=-1)))  # (B, A)
        return logits, gates
