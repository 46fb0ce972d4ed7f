"""The parts of the original DMN (Kumar et al. 2016, "Ask Me Anything: Dynamic Memory Networks for Natural
Language Processing"): an input GRU over all the story's words, an episodic memory whose gates come from a
two-layer network over a feature vector of (fact, memory, question) and whose episodes are gated GRUs, a
GRU memory update, and a GRU answer decoder that emits words up to an end word; for sequence tagging, an
answer at every fact.

The equations were read from secondary transcriptions of the paper (../shared/docs/PAPERS.md marks them
unchecked), so they are named by module, not by the paper's equation numbers.

Dimension letters: B batch, S facts, W words per sentence, L words of a story, H hidden (= embedding) size,
P memory passes, T answer steps, A answer words (index 0 is the end word).
"""

from __future__ import annotations

import torch
from torch import nn

from dmn.models.recurrence import fast_tanh, stacked_gru

END = 0  # index of the end word in a sequence answer's vocabulary


class WordGRUInput(nn.Module):
    """Input module: one GRU reads all the words of the story in order; the fact of a sentence is the GRU's
    state at that sentence's last word (the paper's input module: the hidden states at the end-of-sentence
    tokens)."""

    def __init__(self, embedding: nn.Embedding, hidden_size: int, dropout: float):
        super().__init__()
        self.embedding = embedding
        self.gru = nn.GRU(hidden_size, hidden_size, batch_first=True)
        self.dropout = nn.Dropout(dropout)  # on the facts, as DMN+ drops its sentence encodings

    def forward(self, story: torch.Tensor, word_mask: torch.Tensor, fact_mask: torch.Tensor) -> torch.Tensor:
        # the real words of each story, left-aligned in reading order: padding only at the end, where the
        # GRU reaches it after every real word (a stable sort keeps the order of the real words)
        flat_mask = word_mask.flatten(1)  # (B, S*W)
        order = torch.sort((~flat_mask).to(torch.uint8), dim=1, stable=True).indices  # (B, S*W)
        length = int(flat_mask.sum(1).max())  # L
        words = story.flatten(1).gather(1, order[:, :length])  # (B, L) word ids
        # h_t = GRU(L[w_t], h_{t-1})  (input module)
        states = stacked_gru((self.gru,), (self.embedding(words),))[0]  # (B, L, H)
        # c_s = h at the last word of sentence s
        ends = (word_mask.sum(-1).cumsum(-1) - 1).clamp(min=0)  # (B, S)
        facts = states.gather(1, ends.unsqueeze(-1).expand(-1, -1, states.size(-1)))  # (B, S, H)
        return self.dropout(facts) * fact_mask.unsqueeze(-1)  # (B, S, H), zero on padded facts


class GatedMemory(nn.Module):
    """P passes over the facts: a sigmoid gate per fact, a gated GRU whose last state is the episode, and a
    GRU memory update shared by the passes.

    Returns the final memory (B, H), the gates (B, P, S; 0 on padded facts) and their scores before the
    sigmoid (B, P, S; -inf on padded facts), which gate supervision reads."""

    def __init__(self, hidden_size: int, passes: int):
        super().__init__()
        self.passes = passes
        self.bilinear = nn.Parameter(nn.init.xavier_uniform_(torch.empty(hidden_size, hidden_size)))  # W^(b)
        self.gate_hidden = nn.Linear(7 * hidden_size + 2, hidden_size)  # W^(1), b^(1)
        self.gate_out = nn.Linear(hidden_size, 1)  # W^(2), b^(2)
        self.episode_gru = nn.GRUCell(hidden_size, hidden_size)
        self.memory_gru = nn.GRUCell(hidden_size, hidden_size)

    def gate_scores(self, facts: torch.Tensor, memory: torch.Tensor, question: torch.Tensor) -> torch.Tensor:
        """W^(2) tanh(W^(1) z(c, m, q) + b^(1)) + b^(2) for every fact: (B, S, H), (B, H), (B, H) -> (B, S)."""
        c = facts  # (B, S, H)
        m, q = memory.unsqueeze(1).expand_as(c), question.unsqueeze(1).expand_as(c)  # (B, S, H) each
        # z(c, m, q) = [c, m, q, c o q, c o m, |c - q|, |c - m|, c^T W^(b) q, c^T W^(b) m]  (the gate's features)
        c_w = c @ self.bilinear  # (B, S, H)
        bilinear_q = (c_w * q).sum(-1, keepdim=True)  # (B, S, 1)
        bilinear_m = (c_w * m).sum(-1, keepdim=True)  # (B, S, 1)
        z = torch.cat([c, m, q, c * q, c * m, (c - q).abs(), (c - m).abs(), bilinear_q, bilinear_m], dim=-1)
        # G(c, m, q) = sigma(W^(2) tanh(W^(1) z + b^(1)) + b^(2))  (the sigmoid is applied by the caller)
        return self.gate_out(fast_tanh(self.gate_hidden(z))).squeeze(-1)  # (B, S)

    def forward(self, facts: torch.Tensor, fact_mask: torch.Tensor, question: torch.Tensor):
        memory = question  # m^0 = q, (B, H)
        all_gates, all_scores = [], []
        for _ in range(self.passes):
            scores = self.gate_scores(facts, memory, question).masked_fill(~fact_mask, float("-inf"))  # (B, S)
            gates = torch.sigmoid(scores)  # (B, S), exactly 0 on padded facts
            # h_t = g_t GRU(c_t, h_{t-1}) + (1 - g_t) h_{t-1}; e = h_T  (a padded fact, g = 0, leaves h as it is)
            h = torch.zeros_like(memory)  # (B, H)
            for c_t, g_t in zip(facts.unbind(1), gates.unsqueeze(-1).unbind(1)):
                h = torch.lerp(h, self.episode_gru(c_t, h), g_t)  # (B, H)
            # m^i = GRU(e^i, m^{i-1}), one GRU for every pass (the DMN+ paper calls this memory "tied")
            memory = self.memory_gru(h, memory)  # (B, H)
            all_gates.append(gates)
            all_scores.append(scores)
        return memory, torch.stack(all_gates, dim=1), torch.stack(all_scores, dim=1)  # (B, H), (B, P, S) x 2


class AnswerDecoder(nn.Module):
    """Answer module: a GRU decoder that emits answer words up to the end word.

    With `target` (B, T) (teacher forcing, training) it scores each step given the true previous word;
    without, it decodes greedily for `max_words` steps. Either way: logits (B, T, A)."""

    def __init__(self, hidden_size: int, answer_size: int, dropout: float, max_words: int):
        super().__init__()
        self.max_words = max_words
        self.dropout = nn.Dropout(dropout)
        # y_{t-1} enters as the embedding of the previous answer word (the one-hot of y_{t-1} times a
        # matrix); the last row is y_0, the start of every answer
        self.previous_word = nn.Embedding(answer_size + 1, hidden_size)
        self.gru = nn.GRUCell(2 * hidden_size, hidden_size)
        self.out = nn.Linear(hidden_size, answer_size)  # W^(a)

    def forward(self, memory: torch.Tensor, question: torch.Tensor, facts: torch.Tensor, target=None):
        """`facts` are not read: the answer comes from the memory and the question."""
        start = memory.new_full((memory.size(0),), self.previous_word.num_embeddings - 1, dtype=torch.long)  # (B,)
        if target is not None:  # teacher forcing: y_{t-1} is the true previous word (padding read as END)
            previous = torch.cat([start.unsqueeze(1), target[:, :-1].clamp(min=END)], dim=1)  # (B, T)
            steps = target.size(1)
        else:
            previous, steps = start.unsqueeze(1), self.max_words
        a = memory  # a_0 = m^P, (B, H)
        q = self.dropout(question)  # (B, H)
        logits = []
        for t in range(steps):
            # a_t = GRU([y_{t-1}; q], a_{t-1}), y_t = softmax(W^(a) a_t)
            a = self.gru(torch.cat([self.previous_word(previous[:, t]), q], dim=-1), a)  # (B, H)
            logits.append(self.out(self.dropout(a)))  # (B, A)
            if target is None and t + 1 < steps:
                previous = torch.cat([previous, logits[-1].argmax(-1, keepdim=True)], dim=1)  # greedy
        return torch.stack(logits, dim=1)  # (B, T, A)


class FactTagger(nn.Module):
    """Answer module for sequence tagging (Kumar et al. 2016, part-of-speech tagging): the answer is given at
    every fact (each word), from that fact and the final memory: y_s = softmax(W^(a) [c_s; m^P]).

    Logits (B, S, A): one row of tag scores per fact; a padded fact's row is never scored (its target is
    IGNORE)."""

    def __init__(self, hidden_size: int, answer_size: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(2 * hidden_size, answer_size)  # W^(a)

    def forward(self, memory: torch.Tensor, question: torch.Tensor, facts: torch.Tensor, target=None):
        """`question` and `target` are not read."""
        m = memory.unsqueeze(1).expand_as(facts)  # (B, S, H)
        return self.out(self.dropout(torch.cat([facts, m], dim=-1)))  # (B, S, A)
