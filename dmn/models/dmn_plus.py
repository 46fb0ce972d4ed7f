"""The parts of DMN+ (Xiong, Merity & Socher 2016, "Dynamic Memory Networks for Visual and Textual Question
Answering"): the sentence reader with input fusion, the episodic memory with attention gates and an
attention GRU, and the one-step answer. Equation numbers refer to that paper.

Masks are data: every sum, softmax and recurrence takes `word_mask` / `fact_mask`, so a story gets the same
answer and the same gates whatever else is in its batch. Dimension letters: B batch, S facts, W words per
sentence, H hidden (= embedding) size, P memory passes, A answer classes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dmn.models.recurrence import AttentionGRU, fast_tanh, stacked_gru


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


class FusionInput(nn.Module):
    """Input module: positional encoder per sentence, then input fusion (bi-GRU over the sentences)."""

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
        return input_fusion(self.fusion_forward, self.fusion_backward, self.dropout(sentences), fact_mask)


def input_fusion(forward_gru: nn.GRU, backward_gru: nn.GRU, facts: torch.Tensor, fact_mask: torch.Tensor):
    """The input fusion layer (Eq. 3-5), shared by the text and the visual input modules: (B, S, H) -> (B, S, H),
    zero on padded facts. Padding sits after the real facts, so it cannot reach the forward outputs of real facts.

    f_i = GRU_fwd(f_i, f_fwd_{i-1}) + GRU_bwd(f_i, f_bwd_{i+1})
    """
    forward, backward = stacked_gru((forward_gru, backward_gru), (facts, reverse_within_length(facts, fact_mask)))
    backward = reverse_within_length(backward, fact_mask)  # (B, S, H)
    return (forward + backward) * fact_mask.unsqueeze(-1)  # (B, S, H)


class AttentionMemory(nn.Module):
    """P passes of soft attention over the facts, an attention GRU per pass, an untied ReLU memory update.

    Returns the final memory (B, H), the gates (B, P, S) and their scores before the softmax (B, P, S;
    -inf on padded facts), which gate supervision reads."""

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
        all_gates, all_scores = [], []
        for update in self.memory_updates:
            m = memory.unsqueeze(1)  # (B, 1, H)
            memory_term = self.gate_memory(torch.cat([facts * m, (facts - m).abs()], dim=-1))  # (B, S, H)
            # Z_i = W^(2) tanh(W^(1) z_i + b^(1)) (+ b^(2), which the softmax cancels)  (Eq. 7)
            scores = self.gate_out(fast_tanh(question_term + memory_term)).squeeze(-1)  # (B, S)
            scores = scores.masked_fill(~fact_mask, float("-inf"))  # (B, S)
            # g_i = softmax over the story's own facts (Eq. 8); padded facts get exactly 0
            gates = F.softmax(scores, dim=-1)  # (B, S)
            context = self.attention_gru(projected_facts, gates)  # c^t: the state at the last fact, (B, H)
            # m^t = ReLU(W^t [m^{t-1}; c^t; q] + b)  (untied update, Eq. 14)
            memory = F.relu(update(torch.cat([memory, context, question], dim=-1)))  # (B, H)
            all_gates.append(gates)
            all_scores.append(scores)
        return memory, torch.stack(all_gates, dim=1), torch.stack(all_scores, dim=1)  # (B, H), (B, P, S) x 2


class AnswerClassifier(nn.Module):
    """Answer module: one softmax over the answer classes from [m^P; q] (Sec. 3.3): logits (B, 1, A).

    With `interactions`, from [m^P; q; m^P o q; |m^P - q|] (the comparisons of Eq. 6, between memory and question)."""

    def __init__(self, hidden_size: int, answer_size: int, dropout: float, interactions: bool = False):
        super().__init__()
        self.interactions = interactions
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear((4 if interactions else 2) * hidden_size, answer_size)

    def forward(self, memory: torch.Tensor, question: torch.Tensor, facts: torch.Tensor, target=None):
        """`facts` and `target` are not read: one class of the whole story, no teacher forcing."""
        features = [memory, question]  # (B, H) each
        if self.interactions:
            features += [memory * question, (memory - question).abs()]
        return self.linear(self.dropout(torch.cat(features, dim=-1))).unsqueeze(1)  # (B, 1, A)
