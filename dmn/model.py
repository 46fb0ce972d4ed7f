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
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from dmn.config import ModelConfig


def positional_encoding(word_mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Weights l_jd of the positional sentence encoder, zero on padded words.

    l_jd = (1 - j/M) - (d/D)(1 - 2j/M), j = 1..M the word position, d = 1..D the embedding index,
    M the sentence's own length (not the padded width: padding must not change a sentence's encoding).
    """
    mask = word_mask.to(torch.float32)  # (B, S, W)
    length = mask.sum(-1, keepdim=True).clamp(min=1.0)  # (B, S, 1)
    j = torch.arange(1, mask.size(-1) + 1, device=mask.device, dtype=mask.dtype)  # (W,)
    j_over_m = (j / length).unsqueeze(-1)  # (B, S, W, 1)
    d_over_dim = torch.arange(1, dim + 1, device=mask.device, dtype=mask.dtype) / dim  # (H,)
    weights = (1 - j_over_m) - d_over_dim * (1 - 2 * j_over_m)  # (B, S, W, H)
    return weights * mask.unsqueeze(-1)  # (B, S, W, H)


def run_gru(gru: nn.GRU, inputs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `gru` over the first `lengths[b]` steps of each sequence only (a backward GRU starts at the last
    real step, not at the padding). Returns outputs (B, T, dirs*H), zero past the end, and h_n (dirs, B, H)."""
    packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
    outputs, h_n = gru(packed)
    outputs, _ = pad_packed_sequence(outputs, batch_first=True, total_length=inputs.size(1))
    return outputs, h_n


class TextFactEncoder(nn.Module):
    """Input module for text: positional encoder per sentence, then input fusion (bi-GRU over sentences)."""

    def __init__(self, embedding: nn.Embedding, hidden_size: int, dropout: float):
        super().__init__()
        self.embedding = embedding
        self.dropout = nn.Dropout(dropout)
        self.fusion = nn.GRU(hidden_size, hidden_size, batch_first=True, bidirectional=True)

    def forward(self, story: torch.Tensor, word_mask: torch.Tensor, fact_mask: torch.Tensor) -> torch.Tensor:
        words = self.embedding(story)  # (B, S, W, H)
        # f_i = sum_j l_j * w_j^i  (positional encoding, Sec. 3.1)
        sentences = (positional_encoding(word_mask, words.size(-1)) * words).sum(2)  # (B, S, H)
        sentences = self.dropout(sentences)
        # f_i = GRU_fwd(f_i, f_fwd_{i-1}) + GRU_bwd(f_i, f_bwd_{i+1})  (input fusion layer, Eq. 3-5)
        fused, _ = run_gru(self.fusion, sentences, fact_mask.sum(1))  # (B, S, 2H)
        forward, backward = fused.chunk(2, dim=-1)  # (B, S, H) each
        return forward + backward  # (B, S, H), zero on padded facts


class QuestionEncoder(nn.Module):
    """Question module: a GRU over the question words; q is its state at the last real word."""

    def __init__(self, embedding: nn.Embedding, hidden_size: int):
        super().__init__()
        self.embedding = embedding
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True)

    def forward(self, question: torch.Tensor, question_mask: torch.Tensor) -> torch.Tensor:
        words = self.embedding(question)  # (B, Q, H)
        _, h_n = run_gru(self.gru, words, question_mask.sum(1))  # h_n: (1, B, H)
        return h_n[0]  # (B, H)


class AttentionGRU(nn.Module):
    """A GRU whose update gate is the attention gate g_i (Eq. 12-13)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.input_proj = nn.Linear(hidden_size, 2 * hidden_size)  # [W^(r); W^(h)] f_i + [b^(r); 0]
        self.hidden_proj = nn.Linear(hidden_size, 2 * hidden_size)  # [U^(r); U] h_{i-1} + [0; b^(h)]

    def forward(self, facts: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        hidden = facts.size(-1)
        # unbind once: indexing step i inside the loop would make autograd build a (B, S, H) gradient per step
        steps = self.input_proj(facts).unbind(1)  # S x (B, 2H)
        step_gates = gates.unsqueeze(-1).unbind(1)  # S x (B, 1)
        h = facts.new_zeros(facts.size(0), hidden)  # (B, H)
        for x, g in zip(steps, step_gates):
            x_reset, x_candidate = x.split(hidden, dim=-1)  # (B, H) each
            h_reset, h_candidate = self.hidden_proj(h).split(hidden, dim=-1)  # (B, H) each
            # r_i = sigma(W^(r) f_i + U^(r) h_{i-1} + b^(r))
            reset = torch.sigmoid(x_reset + h_reset)  # (B, H)
            # h~_i = tanh(W f_i + r_i o (U h_{i-1} + b^(h)))
            candidate = torch.tanh(x_candidate + reset * h_candidate)  # (B, H)
            # h_i = g_i o h~_i + (1 - g_i) o h_{i-1}; a padded fact has g_i = 0 and leaves h unchanged
            h = h + g * (candidate - h)  # (B, H)
        return h  # context c^t = h at the last fact, (B, H)


class EpisodicMemory(nn.Module):
    """P passes of attention over the facts with an untied ReLU memory update."""

    def __init__(self, hidden_size: int, passes: int):
        super().__init__()
        self.gate_hidden = nn.Linear(4 * hidden_size, hidden_size)  # W^(1), b^(1)
        self.gate_out = nn.Linear(hidden_size, 1)  # W^(2), b^(2)
        self.attention_gru = AttentionGRU(hidden_size)
        self.memory_updates = nn.ModuleList(nn.Linear(3 * hidden_size, hidden_size) for _ in range(passes))

    def gates(self, facts: torch.Tensor, fact_mask: torch.Tensor, question: torch.Tensor, memory: torch.Tensor):
        q, m = question.unsqueeze(1), memory.unsqueeze(1)  # (B, 1, H)
        # z_i = [f_i o q; f_i o m; |f_i - q|; |f_i - m|]  (Eq. 6)
        z = torch.cat([facts * q, facts * m, (facts - q).abs(), (facts - m).abs()], dim=-1)  # (B, S, 4H)
        # Z_i = W^(2) tanh(W^(1) z_i + b^(1)) + b^(2)  (Eq. 7)
        scores = self.gate_out(torch.tanh(self.gate_hidden(z))).squeeze(-1)  # (B, S)
        # g_i = softmax over the story's own facts (Eq. 8); padded facts get exactly 0
        return F.softmax(scores.masked_fill(~fact_mask, float("-inf")), dim=-1)  # (B, S)

    def forward(self, facts: torch.Tensor, fact_mask: torch.Tensor, question: torch.Tensor):
        memory = question  # m^0 = q, (B, H)
        all_gates = []
        for update in self.memory_updates:
            gates = self.gates(facts, fact_mask, question, memory)  # (B, S)
            context = self.attention_gru(facts, gates)  # (B, H)
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
