"""The hand-written backward passes of the recurrences against autograd on a plain loop and torch's GRU."""

import pytest
import torch

from dmn.models import recurrence
from dmn.models.dmn_plus import input_fusion, reverse_within_length
from dmn.models.recurrence import (
    AttentionGRU,
    AttentionGRUScan,
    FusedAttentionGRUScan,
    FusedGRUScan,
    GRUScan,
    compiled_scans,
    fast_tanh,
    fast_tanh_,
    stacked_gru,
)

# Every scan test runs on both implementations: the Python loops and the steps fused in C++ (scan.cpp)
IMPLEMENTATIONS = {"python": (AttentionGRUScan, GRUScan), "fused": (FusedAttentionGRUScan, FusedGRUScan)}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def scans(request, monkeypatch):
    """(attention scan, GRU scan) of one implementation, which stacked_gru and AttentionGRU also take."""
    monkeypatch.setenv("DMN_PYTHON_SCANS", "1" if request.param == "python" else "0")
    assert request.param == "python" or compiled_scans() is not None  # else "fused" would run the Python scans
    return IMPLEMENTATIONS[request.param]


def reference(inputs, gates, weight, bias):
    """DMN+ Eq. 12-13 as a plain loop, differentiated by autograd."""
    hidden = weight.size(1)
    h = inputs.new_zeros(inputs.size(0), hidden)
    for i in range(inputs.size(1)):
        h_reset, h_candidate = (h @ weight.t() + bias).split(hidden, -1)
        reset = torch.sigmoid(inputs[:, i, :hidden] + h_reset)
        candidate = torch.tanh(inputs[:, i, hidden:] + reset * h_candidate)
        h = gates[:, i : i + 1] * candidate + (1 - gates[:, i : i + 1]) * h
    return h


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


def test_the_fused_scans_compile_here():
    # a C++ compiler is part of this project's machines; elsewhere the Python scans run (with a warning)
    assert compiled_scans() is not None


def test_states_and_gradients_match_autograd(scans):
    args = _case()
    ours, expected = scans[0].apply(*args), reference(*args)
    assert torch.allclose(ours, expected)
    grad = torch.randn_like(ours)
    for a, b in zip(torch.autograd.grad(ours, args, grad), torch.autograd.grad(expected, args, grad)):
        assert torch.allclose(a, b, atol=1e-10)


def test_gradcheck(scans):
    assert torch.autograd.gradcheck(scans[0].apply, _case(batch=2, steps=3, hidden=3))


def test_a_padded_fact_leaves_the_state_unchanged(scans):
    inputs, gates, weight, bias = _case()
    padded = scans[0].apply(inputs, gates, weight, bias)
    unpadded = scans[0].apply(inputs[:1, :3], gates[:1, :3], weight, bias)
    assert torch.equal(padded[:1], unpadded)


def test_both_implementations_agree_in_float32_with_saturated_sigmoids_and_tanhs():
    # inputs and weights of magnitude ~100: the reset and update gates and the candidates sit at 0 or 1, where a
    # fast-maths sigmoid written as 1 / (1 + exp(-x)) had turned into NaN
    inputs, gates, weight, bias = (t.detach().float().requires_grad_() for t in _case(batch=4, steps=6, hidden=8))
    large = (inputs * 100, gates, weight * 100, bias)
    outputs = FusedAttentionGRUScan.apply(*large), AttentionGRUScan.apply(*large)
    assert torch.isfinite(outputs[0]).all() and torch.allclose(*outputs, atol=1e-5)
    grads = [torch.autograd.grad(out.sum(), (inputs, gates, weight, bias), retain_graph=True) for out in outputs]
    for a, b in zip(*grads):
        assert torch.isfinite(a).all() and torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    torch.manual_seed(0)
    base = (torch.randn(5, 2, 3, 24), torch.randn(2, 24, 8), torch.randn(2, 24))
    gru_args = tuple(t.requires_grad_() for t in (base[0] * 100, base[1] * 100, base[2]))
    outputs = FusedGRUScan.apply(*gru_args), GRUScan.apply(*gru_args)
    assert torch.isfinite(outputs[0]).all() and torch.allclose(*outputs, atol=1e-5)
    grads = [torch.autograd.grad(out.sum(), gru_args) for out in outputs]
    for a, b in zip(*grads):
        assert torch.isfinite(a).all() and torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_the_modules_take_the_fused_scans_unless_told_not_to(monkeypatch):
    attention, gru = AttentionGRU(4), torch.nn.GRU(4, 4, batch_first=True)
    facts, gates = torch.randn(2, 3, 8), torch.softmax(torch.randn(2, 3), -1)
    for setting, expected in (("0", ("FusedAttentionGRUScan", "FusedGRUScan")), ("1", ("AttentionGRUScan", "GRUScan"))):
        monkeypatch.setenv("DMN_PYTHON_SCANS", setting)
        scanned = stacked_gru((gru,), (torch.randn(2, 3, 4),)).grad_fn.next_functions[0][0]  # under the permute
        assert (attention(facts, gates).grad_fn.name(), scanned.name()) == tuple(f"{n}Backward" for n in expected)


def test_the_fused_scans_refuse_mismatched_shapes():
    inputs, gates, weight, bias = _case()
    with pytest.raises(RuntimeError, match=r"gates must be \(B, S\)"):
        FusedAttentionGRUScan.apply(inputs, gates[:, :-1], weight, bias)
    with pytest.raises(RuntimeError, match=r"bias must be \(D, 3H\)"):
        FusedGRUScan.apply(torch.randn(2, 1, 3, 9), torch.randn(1, 9, 3), torch.randn(1, 6))


def test_fusion_gru_matches_torch_gru_in_states_and_gradients(scans):
    torch.manual_seed(0)
    forward_gru, backward_gru = (torch.nn.GRU(4, 4, batch_first=True).double() for _ in range(2))
    inputs, reversed_inputs = (torch.randn(3, 5, 4, dtype=torch.float64, requires_grad=True) for _ in range(2))
    ours = stacked_gru((forward_gru, backward_gru), (inputs, reversed_inputs))
    expected = torch.stack([forward_gru(inputs)[0], backward_gru(reversed_inputs)[0]])
    assert torch.allclose(ours, expected)
    grad = torch.randn_like(ours)
    wrt = [inputs, reversed_inputs, *forward_gru.parameters(), *backward_gru.parameters()]
    for a, b in zip(torch.autograd.grad(ours, wrt, grad), torch.autograd.grad(expected, wrt, grad)):
        assert torch.allclose(a, b, atol=1e-10)


def test_fusion_gru_gradcheck(scans):
    torch.manual_seed(0)
    args = (
        torch.randn(2, 2, 3, 9, dtype=torch.float64, requires_grad=True),
        torch.randn(2, 9, 3, dtype=torch.float64, requires_grad=True),
        torch.randn(2, 9, dtype=torch.float64, requires_grad=True),
    )
    assert torch.autograd.gradcheck(scans[1].apply, args)


def test_one_gru_and_an_input_size_other_than_the_hidden_size(scans):
    torch.manual_seed(0)
    gru = torch.nn.GRU(3, 5, batch_first=True).double()
    inputs = torch.randn(4, 6, 3, dtype=torch.float64)
    assert torch.allclose(stacked_gru((gru,), (inputs,))[0], gru(inputs)[0])
    with pytest.raises(ValueError, match="single-layer, unidirectional, batch-first"):
        stacked_gru((torch.nn.GRU(3, 5),), (inputs,))


def test_input_fusion_matches_torch_grus_on_stories_of_different_lengths(scans):
    """The fusion layer as it was written with nn.GRU: forward over the facts, backward over each story's own
    facts reversed, summed, zero on padding."""
    torch.manual_seed(0)
    forward_gru, backward_gru = (torch.nn.GRU(4, 4, batch_first=True).double() for _ in range(2))
    facts = torch.randn(3, 5, 4, dtype=torch.float64)
    fact_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]], dtype=torch.bool)
    forward, _ = forward_gru(facts)
    backward, _ = backward_gru(reverse_within_length(facts, fact_mask))
    expected = (forward + reverse_within_length(backward, fact_mask)) * fact_mask.unsqueeze(-1)
    assert torch.allclose(input_fusion(forward_gru, backward_gru, facts, fact_mask), expected)
    # a story's facts do not depend on the padding after them
    alone = input_fusion(forward_gru, backward_gru, facts[1:2, :3], fact_mask[1:2, :3])
    assert torch.allclose(alone, expected[1:2, :3])


@pytest.mark.parametrize("through_sigmoid", [True, False])
def test_fast_tanh_is_tanh_in_value_and_gradient_in_both_forms(through_sigmoid, monkeypatch):
    # the form is chosen by a measurement on this CPU; each is forced here in turn
    monkeypatch.setattr(recurrence, "_tanh_through_sigmoid_is_faster", lambda: through_sigmoid)
    x = torch.linspace(-20, 20, 4001, dtype=torch.float64, requires_grad=True)
    ours, expected = fast_tanh(x), torch.tanh(x)
    assert torch.allclose(ours, expected, atol=1e-12)
    (grad,) = torch.autograd.grad(ours.sum(), x)
    (expected_grad,) = torch.autograd.grad(expected.sum(), x)
    assert torch.allclose(grad, expected_grad, atol=1e-12)
    y = x.detach().float().clone()
    assert fast_tanh_(y) is y and torch.allclose(y, torch.tanh(x.detach().float()), atol=1e-6)
