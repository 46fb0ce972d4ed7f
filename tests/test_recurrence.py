"""The hand-written backward of the attention GRU against autograd on a plain loop."""

import torch

from dmn.models.recurrence import AttentionGRUScan


def reference(inputs, gates, weight, bias):
    """DMN+ Eq. 12-13 as a plain loop, differentiated by autograd."""
    hidden = weight.size(1)
    h = inputs.new_zeros(inputs.size(0), hidden)
    states = []
    for i in range(inputs.size(1)):
        h_reset, h_candidate = (h @ weight.t() + bias).split(hidden, -1)
        reset = torch.sigmoid(inputs[:, i, :hidden] + h_reset)
        candidate = torch.tanh(inputs[:, i, hidden:] + reset * h_candidate)
        h = gates[:, i : i + 1] * candidate + (1 - gates[:, i : i + 1]) * h
        states.append(h)
    return torch.stack(states, 1)


def _case(batch=3, steps=5, hidden=4):
    torch.manual_seed(0)
    gates = torch.softmax(torch.randn(batch, steps, dtype=torch.float64), -1)
    gates[0, 3:] = 0  # a story of 3 facts padded to 5
    return [
        torch.randn(batch, steps, 2 * hidden, dtype=torch.float64, requires_grad=True),
        gates.requires_grad_(),
        torch.randn(2 * hidden, hidden, dtype=torch.float64, requires_grad=True),
        torch.randn(2 * hidden, dtype=torch.float64, requires_grad=True),
    ]


def test_states_and_gradients_match_autograd():
    args = _case()
    ours, expected = AttentionGRUScan.apply(*args), reference(*args)
    assert torch.allclose(ours, expected)
    grad = torch.randn_like(ours)
    for a, b in zip(torch.autograd.grad(ours, args, grad), torch.autograd.grad(expected, args, grad)):
        assert torch.allclose(a, b, atol=1e-10)


def test_gradcheck():
    assert torch.autograd.gradcheck(AttentionGRUScan.apply, _case(batch=2, steps=3, hidden=3))


def test_a_padded_fact_leaves_the_state_unchanged():
    states = AttentionGRUScan.apply(*_case())
    assert torch.equal(states[0, 2], states[0, 4])
