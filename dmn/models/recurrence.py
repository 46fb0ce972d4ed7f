"""The recurrences of the DMN with hand-written backward passes: the attention GRU of DMN+'s episodic memory
(DMN+ Eq. 12-13), and the plain GRUs of the input fusion layer (Eq. 3-5; both directions in one scan), of
the question module and of the original DMN's input module.

Why by hand: they run once per fact (and per pass), on small (B, H) tensors, so on a CPU their cost is
the number of operations rather than their size. Autograd records ~11 operations a GRU step and replays
~20 with its bookkeeping. Here every factor of a step's backward that does not depend on the incoming
gradient is computed for all steps at once, before the loop; the loop keeps 4-5 operations a step, forward
and backward; the gradients of the inputs and of the hidden weights are then computed for all steps in a
few large operations. The fusion GRU's two directions step together as a batch of two (`torch.baddbmm`).
Measured on the 2-core CPU (bench/train_speed.py, bAbI task 3 at 70 sentences, batches bucketed by
length): 579 examples/s with torch's nn.GRU and the first attention scan, 808 with the fusion scan, and the
figure in bench/results/train_speed.json with both scans as they are now.
`tests/test_recurrence.py` checks both against autograd on a plain loop, and the GRU scan against nn.GRU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class AttentionGRUScan(torch.autograd.Function):
    """The final state (B, H) of the attention GRU (DMN+ Eq. 12-13), the episode's context c^t:

    r_i  = sigma(W^(r) f_i + U^(r) h_{i-1} + b^(r))
    h~_i = tanh(W f_i + r_i o (U h_{i-1} + b^(h)))
    h_i  = g_i o h~_i + (1 - g_i) o h_{i-1}          (g_i: the attention gate of fact i)
    """

    @staticmethod
    def forward(ctx, inputs, gates, weight, bias):
        # inputs (B, S, 2H) = [W^(r) f_i + b^(r); W f_i]; gates (B, S); weight (2H, H) = [U^(r); U];
        # bias (2H,) = [b'^(r); b^(h)], the hidden projection's (b'^(r) adds to the input projection's b^(r):
        # redundant, as in torch's GRU, and harmless)
        hidden = weight.size(1)
        # [W^(r) f_i + b^(r); b^(h)]: the addmm of a step then yields [pre-sigmoid r_i; U h_{i-1} + b^(h)]
        added = torch.cat([inputs[..., :hidden] + bias[:hidden], bias[hidden:].expand_as(inputs[..., hidden:])], -1)
        h = inputs.new_zeros(inputs.size(0), hidden)  # h_0, (B, H)
        states, resets, candidates, hidden_candidates = [h], [], [], []
        for x_candidate, add, g in zip(inputs[..., hidden:].unbind(1), added.unbind(1), gates.unsqueeze(-1).unbind(1)):
            pre_reset, h_candidate = torch.addmm(add, h, weight.t()).split(hidden, dim=-1)  # (B, H) each
            reset = torch.sigmoid(pre_reset)  # (B, H)
            candidate = torch.tanh(torch.addcmul(x_candidate, reset, h_candidate))  # (B, H)
            h = torch.lerp(h, candidate, g)  # h + g (candidate - h), (B, H)
            states.append(h)
            resets.append(reset)
            candidates.append(candidate)
            hidden_candidates.append(h_candidate)
        states = torch.stack(states, 1)  # h_0 .. h_S, (B, S + 1, H)
        ctx.save_for_backward(
            gates, weight, states, torch.stack(resets, 1), torch.stack(candidates, 1), torch.stack(hidden_candidates, 1)
        )
        return h

    @staticmethod
    def backward(ctx, grad_final):
        gates, weight, states, resets, candidates, hidden_candidates = ctx.saved_tensors
        previous = states[:, :-1]  # h_{i-1}, (B, S, H)
        g = gates.unsqueeze(-1)  # (B, S, 1)
        # dh_i/d(pre-tanh) and, through it, d/d(pre-sigmoid r) and d/d(U h + b^(h)), per unit of dL/dh_i
        to_candidate = g * (1 - candidates * candidates)  # (B, S, H)
        to_reset = to_candidate * hidden_candidates * resets * (1 - resets)  # (B, S, H)
        to_hidden = torch.cat([to_reset, to_candidate * resets], -1)  # (B, S, 2H)
        keep = 1 - g  # (B, S, 1)
        grad_h = grad_final  # dL/dh_S, (B, H)
        grad_states = []
        for i in reversed(range(gates.size(1))):
            grad_states.append(grad_h)
            grad_hidden = torch.cat([grad_h, grad_h], -1) * to_hidden[:, i]  # (B, 2H)
            grad_h = torch.addmm(grad_h * keep[:, i], grad_hidden, weight)  # dL/dh_{i-1}, (B, H)
        grad_h = torch.stack(grad_states[::-1], 1)  # dL/dh_i, (B, S, H)
        grad_candidate = grad_h * to_candidate  # (B, S, H)
        grad_reset = grad_h * to_reset  # (B, S, H)
        grad_hidden = torch.cat([grad_reset, grad_candidate * resets], -1)  # (B, S, 2H)
        grad_gates = (grad_h * (candidates - previous)).sum(-1)  # (B, S)
        # the hidden weights saw h_{i-1} at every step: one product over all steps
        grad_weight = grad_hidden.flatten(0, 1).t() @ previous.flatten(0, 1)  # (2H, H)
        return torch.cat([grad_reset, grad_candidate], -1), grad_gates, grad_weight, grad_hidden.sum((0, 1))


class AttentionGRU(nn.Module):
    """A GRU whose update gate is the attention gate: (B, S, H) facts and (B, S) gates -> final state (B, H)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.input_proj = nn.Linear(hidden_size, 2 * hidden_size)  # [W^(r); W] f_i + [b^(r); 0]
        self.hidden_proj = nn.Linear(hidden_size, 2 * hidden_size)  # [U^(r); U] h_{i-1} + [0; b^(h)]

    def forward(self, projected_facts: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """`projected_facts` = input_proj(facts), computed once for all passes."""
        return AttentionGRUScan.apply(projected_facts, gates, self.hidden_proj.weight, self.hidden_proj.bias)


class GRUScan(torch.autograd.Function):
    """All states (D, B, S, H) of D independent GRUs (torch's nn.GRU equations, h_0 = 0), stepped together:

    r_t = sigma(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    z_t = sigma(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    n_t = tanh(W_in x_t + b_in + r_t o (W_hn h_{t-1} + b_hn))
    h_t = (1 - z_t) o n_t + z_t o h_{t-1}
    """

    @staticmethod
    def forward(ctx, inputs, weight, bias):
        # inputs (D, B, S, 3H) = W_i x_t + b_i for all steps; weight (D, 3H, H) = [W_hr; W_hz; W_hn]; bias (D, 3H)
        hidden = weight.size(2)
        # [W_ir x + b_ir + b_hr; W_iz x + b_iz + b_hz; b_hn]: a step's baddbmm then yields the pre-sigmoid r and z
        # and W_hn h + b_hn in one operation
        gate_inputs, candidate_inputs = inputs.split([2 * hidden, hidden], -1)
        bias = bias.unsqueeze(1).unsqueeze(1)  # (D, 1, 1, 3H)
        added = torch.cat(
            [gate_inputs + bias[..., : 2 * hidden], bias[..., 2 * hidden :].expand_as(candidate_inputs)], -1
        )
        h = inputs.new_zeros(inputs.size(0), inputs.size(1), hidden)  # h_0, (D, B, H)
        weight_t = weight.transpose(1, 2)  # (D, H, 3H)
        states, gates, candidates, hidden_candidates = [h], [], [], []
        for x_candidate, add in zip(candidate_inputs.unbind(2), added.unbind(2)):  # (D, B, H), (D, B, 3H)
            pre_gates, h_candidate = torch.baddbmm(add, h, weight_t).split([2 * hidden, hidden], -1)
            reset_update = torch.sigmoid(pre_gates)  # (D, B, 2H)
            candidate = torch.tanh(torch.addcmul(x_candidate, reset_update[..., :hidden], h_candidate))  # (D, B, H)
            h = torch.lerp(candidate, h, reset_update[..., hidden:])  # n + z (h - n), (D, B, H)
            states.append(h)
            gates.append(reset_update)
            candidates.append(candidate)
            hidden_candidates.append(h_candidate)
        states = torch.stack(states, 2)  # h_0 .. h_S, (D, B, S + 1, H)
        ctx.save_for_backward(
            weight, states, torch.stack(gates, 2), torch.stack(candidates, 2), torch.stack(hidden_candidates, 2)
        )
        return states[:, :, 1:]

    @staticmethod
    def backward(ctx, grad_states):
        weight, states, gates, candidates, hidden_candidates = ctx.saved_tensors
        hidden = weight.size(2)
        previous = states[:, :, :-1]  # h_{t-1}, (D, B, S, H)
        reset, update = gates.split(hidden, -1)  # (D, B, S, H) each
        # dh_t/d(pre-tanh), d/d(pre-sigmoid z), d/d(pre-sigmoid r), per unit of dL/dh_t
        to_candidate = (1 - update) * (1 - candidates * candidates)
        to_update = (previous - candidates) * update * (1 - update)
        to_reset = to_candidate * hidden_candidates * reset * (1 - reset)
        to_hidden = torch.cat([to_reset, to_update, to_candidate * reset], -1)  # (D, B, S, 3H)
        grad_h = torch.zeros_like(states[:, :, 0])  # (D, B, H)
        grad_totals = []
        for t in reversed(range(states.size(2) - 1)):
            grad_h = grad_h + grad_states[:, :, t]  # dL/dh_t, (D, B, H)
            grad_totals.append(grad_h)
            grad_hidden = torch.cat([grad_h, grad_h, grad_h], -1) * to_hidden[:, :, t]  # (D, B, 3H)
            grad_h = torch.baddbmm(grad_h * update[:, :, t], grad_hidden, weight)  # dL/dh_{t-1}
        grad_h = torch.stack(grad_totals[::-1], 2)  # (D, B, S, H)
        grad_hidden = grad_h.repeat(1, 1, 1, 3) * to_hidden  # (D, B, S, 3H): d/d(W_h h + b_h)
        grad_candidate = grad_h * to_candidate  # d/d(W_in x + b_in), which enters without r
        grad_inputs = torch.cat([grad_hidden[..., : 2 * hidden], grad_candidate], -1)  # (D, B, S, 3H)
        # the hidden weights saw h_{t-1} at every step: one product over all steps
        grad_weight = grad_hidden.flatten(1, 2).transpose(1, 2) @ previous.flatten(1, 2)  # (D, 3H, H)
        return grad_inputs, grad_weight, grad_hidden.sum((1, 2))


def stacked_gru(grus: Sequence[nn.GRU], inputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """The states of each GRU of `grus` over its inputs (B, S, I) -> (D, B, S, H), h_0 = 0, with the GRUs' own
    parameters, through one GRUScan (the fusion layer's two directions: D = 2). Each GRU is a plain one: one
    layer, one direction, batch first, with biases (ValueError otherwise: its other options are not run)."""
    for gru in grus:
        if gru.num_layers != 1 or gru.bidirectional or not gru.batch_first or not gru.bias:
            raise ValueError(f"stacked_gru runs single-layer, unidirectional, batch-first GRUs with biases: {gru}")
    x = torch.stack(list(inputs))  # (D, B, S, I)
    weight_ih = torch.stack([g.weight_ih_l0 for g in grus])  # (D, 3H, I)
    bias_ih = torch.stack([g.bias_ih_l0 for g in grus])  # (D, 3H)
    # W_i x_t + b_i for every step at once: one product, outside the recurrence
    projected = torch.baddbmm(bias_ih.unsqueeze(1), x.flatten(1, 2), weight_ih.transpose(1, 2))  # (D, B*S, 3H)
    weight_hh = torch.stack([g.weight_hh_l0 for g in grus])  # (D, 3H, H)
    bias_hh = torch.stack([g.bias_hh_l0 for g in grus])  # (D, 3H)
    return GRUScan.apply(projected.view(*x.shape[:3], -1), weight_hh, bias_hh)
