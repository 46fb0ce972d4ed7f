"""The recurrences of the DMN with hand-written backward passes: the attention GRU of DMN+'s episodic memory
(DMN+ Eq. 12-13), and the plain GRUs of the input fusion layer (Eq. 3-5; both directions in one scan), of
the question module and of the original DMN's input module.

Why by hand: they run once per fact (and per pass), on small (B, H) tensors, so on a CPU their cost is
the number of operations, the memory they first touch and their matrix products rather than their size.
Autograd records ~11 operations a GRU step and replays ~20 with its bookkeeping. Here the steps are stored
time-major in tensors allocated once per call, each step writing its contiguous (B, H) slices in place; the
backward computes each step's factors in its loop, into contiguous tensors (over all steps at once, on long
stories, a dozen passes over (S, B, H) tensors cost more than the loop; written into column slices of wider
tensors, each operation runs several times slower), and the gradients of the hidden weights and biases as
sums over the steps. The fusion GRU's two directions step together as a batch of two (`torch.baddbmm`).
Measured on the 2-core CPU (bench/train_speed.py, bAbI task 3 at 70 sentences, batches bucketed by
length): 579 examples/s with torch's nn.GRU and the first attention scan, 808 with the fusion scan, and the
figure in bench/results/train_speed.json with both scans as they are now.
`tests/test_recurrence.py` checks both against autograd on a plain loop, and the GRU scan against nn.GRU.

On a CPU, AttentionGRU and stacked_gru run the same scans with each step fused in C++ (`scan.cpp`,
FusedAttentionGRUScan and FusedGRUScan: one matrix product and one vectorised loop a step; 1.35-1.41x a bAbI
epoch in bench/results/side_by_side-xeon-avx512*.json), compiled at first use; the Python scans below run on a
GPU, without a compiler, or with DMN_PYTHON_SCANS=1, and the tests check both.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from dmn.cpuinfo import cpuinfo_field

_ONE = torch.ones(())  # 1 - x^2 as one addcmul


def tanh_through_sigmoid_(x: torch.Tensor) -> torch.Tensor:
    """tanh in place, as 2 sigmoid(2x) - 1 (four cheap passes). Returns `x`."""
    return x.mul_(2).sigmoid_().mul_(2).sub_(1)


@functools.cache
def _tanh_through_sigmoid_is_faster() -> bool:
    """Whether tanh_through_sigmoid_ is the faster tanh on this CPU: on AMD ones, where torch's CPU tanh cost 8x
    its sigmoid (33 against 4 us on 16,000 numbers on the AMD EPYC bench machine, torch 2.13; three AMD machines
    were slow alike), not on an Intel Xeon (torch's tanh 5.6 us against 18.7 for the sigmoid form, on 8,000).
    Decided by the vendor, not timed, so that every process on a machine computes the same numbers."""
    return cpuinfo_field("vendor_id") == "AuthenticAMD"


def fast_tanh_(x: torch.Tensor) -> torch.Tensor:
    """tanh in place, by the faster form on this device: torch's tanh, or on a CPU where that is slow,
    tanh_through_sigmoid_. Returns `x`."""
    if x.device.type == "cpu" and _tanh_through_sigmoid_is_faster():
        return tanh_through_sigmoid_(x)
    return x.tanh_()


def fast_tanh(x: torch.Tensor) -> torch.Tensor:
    """tanh(x) for autograd, by the faster form on this device (see fast_tanh_)."""
    if x.device.type == "cpu" and _tanh_through_sigmoid_is_faster():
        return torch.sigmoid(2 * x) * 2 - 1
    return torch.tanh(x)


SCAN_SOURCE = Path(__file__).with_name("scan.cpp")
STALE_LOCK_SECONDS = 600  # a build takes about a minute; an older lock is a killed build's


@functools.cache
def compiled_scans():
    """The fused scans of `scan.cpp` (each step one matrix product and one loop over its values), compiled on first
    use with torch's extension builder (about a minute) into TORCH_EXTENSIONS_DIR (by default
    ~/.cache/torch_extensions), or None, with a warning, where that fails (no C++ compiler): the Python scans
    below then run, exact, only slower."""
    from torch.utils import cpp_extension

    capability = torch.backends.cpu.get_cpu_capability()  # DEFAULT, AVX2 or AVX512 (AVX2 and up have FMA)
    # -ffast-math lets the compiler call glibc's vector tanh (libmvec), 8 floats at a time with AVX2
    flags = ["-O3", "-ffast-math", *(["-mavx2", "-mfma"] if capability in ("AVX2", "AVX512") else [])]
    libraries = ["-lmvec"] if sys.platform == "linux" and platform.machine() == "x86_64" else []
    source = SCAN_SOURCE.read_text()
    # the build folder is named by all the binary depends on: no checkout, version, Python or machine kind loads
    # another's
    parts = [source, *flags, *libraries, torch.__version__, sys.implementation.cache_tag]
    key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]
    name = f"dmn_scan_{capability.lower()}_{key}"
    folder = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or cpp_extension.get_default_build_root()) / name
    # torch looks for ninja on PATH: the one installed beside this Python, also where the venv is not activated
    here = str(Path(sys.executable).parent)
    if here not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([here, os.environ.get("PATH", "")])
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = folder / "lock"  # torch's: a build killed while holding it would make every later one wait forever
        if lock.exists() and time.time() - lock.stat().st_mtime > STALE_LOCK_SECONDS:
            lock.unlink(missing_ok=True)
        return cpp_extension.load_inline(
            name=name,
            cpp_sources=[source],
            extra_cflags=flags,
            extra_ldflags=libraries,
            build_directory=str(folder),
        )
    except Exception as error:  # noqa: BLE001 - a build failure of any kind leaves the exact Python scans
        warnings.warn(f"the fused scans could not be compiled, the Python scans run instead: {error}", stacklevel=2)
        return None


def _fused(*tensors: torch.Tensor):
    """The compiled scans where they apply (CPU tensors of float or double; not with DMN_PYTHON_SCANS=1), else
    None."""
    applies = all(t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64) for t in tensors)
    if applies and os.environ.get("DMN_PYTHON_SCANS") != "1":
        return compiled_scans()
    return None


class FusedAttentionGRUScan(torch.autograd.Function):
    """AttentionGRUScan, each step fused in C++ (`scan.cpp`): the same arguments, result and gradients."""

    @staticmethod
    def forward(ctx, inputs, gates, weight, bias):
        final, states, candidates, projected = compiled_scans().attention_forward(inputs, gates, weight, bias)
        ctx.save_for_backward(gates, weight, states, candidates, projected)
        return final

    @staticmethod
    def backward(ctx, grad_final):
        return tuple(compiled_scans().attention_backward(grad_final, *ctx.saved_tensors))


class FusedGRUScan(torch.autograd.Function):
    """GRUScan, each step fused in C++ (`scan.cpp`): the same arguments, result and gradients."""

    @staticmethod
    def forward(ctx, inputs, weight, bias):
        outputs, states, candidates, projected = compiled_scans().gru_forward(inputs, weight, bias)
        ctx.save_for_backward(weight, states, candidates, projected)
        return outputs

    @staticmethod
    def backward(ctx, grad_states):
        return tuple(compiled_scans().gru_backward(grad_states, *ctx.saved_tensors))


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
        # redundant, as in torch's GRU, and harmless). Steps are stored time-major, (S, B, ...): each step
        # reads and writes contiguous (B, H) slices in place, and nothing is stacked afterwards.
        hidden = weight.size(1)
        x = inputs.transpose(0, 1)  # (S, B, 2H), a view
        steps, batch = x.shape[:2]
        # [W^(r) f_i + b^(r); b^(h)]: the addmm of a step then yields [pre-sigmoid r_i; U h_{i-1} + b^(h)]
        added = torch.cat([x[..., :hidden] + bias[:hidden], bias[hidden:].expand(steps, batch, hidden)], -1)
        x_candidate = x[..., hidden:]  # W f_i, (S, B, H)
        g = gates.t().unsqueeze(-1)  # (S, B, 1)
        weight_t = weight.t()
        states = inputs.new_zeros(steps + 1, batch, hidden)  # h_0 = 0 .. h_S
        projected = inputs.new_empty(steps, batch, 2 * hidden)  # [pre-sigmoid r_i; U h_{i-1} + b^(h)]
        resets, candidates = inputs.new_empty(steps, batch, hidden), inputs.new_empty(steps, batch, hidden)
        for i in range(steps):
            torch.addmm(added[i], states[i], weight_t, out=projected[i])
            reset = torch.sigmoid(projected[i, :, :hidden], out=resets[i])
            candidate = fast_tanh_(torch.addcmul(x_candidate[i], reset, projected[i, :, hidden:], out=candidates[i]))
            torch.lerp(states[i], candidate, g[i], out=states[i + 1])  # h + g (candidate - h)
        ctx.save_for_backward(gates, weight, states, resets, candidates, projected)
        return states[-1].clone()

    @staticmethod
    def backward(ctx, grad_final):
        gates, weight, states, resets, candidates, projected = ctx.saved_tensors
        hidden = weight.size(1)
        g = gates.t().unsqueeze(-1)  # (S, B, 1)
        # Each step's factors are computed in the loop, on (B, H) slices still in cache, into contiguous
        # tensors: over all steps at once they would be a dozen passes over (S, B, H) tensors, and written into
        # column slices of wider ones, every operation would run several times slower.
        grad_h = torch.empty_like(resets)  # dL/dh_i, (S, B, H)
        grad_inputs = torch.empty_like(projected)  # d/d[W^(r) f_i + b^(r); W f_i], (S, B, 2H)
        grad_hidden = torch.empty_like(projected)  # d/d[U^(r) h_{i-1} + b'^(r); U h_{i-1} + b^(h)], (S, B, 2H)
        grad_h[-1] = grad_final
        for i in range(resets.size(0) - 1, -1, -1):
            reset, candidate = resets[i], candidates[i]
            # d/d(pre-tanh) = dL/dh_i g_i (1 - h~_i^2); d/d(pre-sigmoid r) = that (U h_{i-1} + b^(h)) r_i (1 - r_i)
            grad_candidate = (grad_h[i] * g[i]).mul_(torch.addcmul(_ONE, candidate, candidate, value=-1))
            grad_reset = (grad_candidate * projected[i, :, hidden:]).mul_(torch.addcmul(reset, reset, reset, value=-1))
            torch.cat([grad_reset, grad_candidate], -1, out=grad_inputs[i])
            torch.cat([grad_reset, grad_candidate * reset], -1, out=grad_hidden[i])
            if i:  # dL/dh_{i-1}; h_0 is a constant
                torch.addmm(grad_h[i] * (1 - g[i]), grad_hidden[i], weight, out=grad_h[i - 1])
        grad_gates = (grad_h * (candidates - states[:-1])).sum(-1)  # (S, B)
        # the hidden weights saw h_{i-1} at every step: one product over all steps
        grad_weight = grad_hidden.flatten(0, 1).t() @ states[:-1].flatten(0, 1)  # (2H, H)
        return grad_inputs.transpose(0, 1), grad_gates.t(), grad_weight, grad_hidden.sum((0, 1))


class AttentionGRU(nn.Module):
    """A GRU whose update gate is the attention gate: (B, S, H) facts and (B, S) gates -> final state (B, H)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.input_proj = nn.Linear(hidden_size, 2 * hidden_size)  # [W^(r); W] f_i + [b^(r); 0]
        self.hidden_proj = nn.Linear(hidden_size, 2 * hidden_size)  # [U^(r); U] h_{i-1} + [0; b^(h)]

    def forward(self, projected_facts: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """`projected_facts` = input_proj(facts), computed once for all passes."""
        args = (projected_facts, gates, self.hidden_proj.weight, self.hidden_proj.bias)
        return (FusedAttentionGRUScan if _fused(*args) else AttentionGRUScan).apply(*args)


class GRUScan(torch.autograd.Function):
    """All states (S, D, B, H) of D independent GRUs (torch's nn.GRU equations, h_0 = 0), stepped together,
    time-major as AttentionGRUScan:

    r_t = sigma(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    z_t = sigma(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    n_t = tanh(W_in x_t + b_in + r_t o (W_hn h_{t-1} + b_hn))
    h_t = (1 - z_t) o n_t + z_t o h_{t-1}
    """

    @staticmethod
    def forward(ctx, inputs, weight, bias):
        # inputs (S, D, B, 3H) = W_i x_t + b_i for all steps; weight (D, 3H, H) = [W_hr; W_hz; W_hn]; bias (D, 3H)
        hidden = weight.size(2)
        steps, directions, batch = inputs.shape[:3]
        # [W_ir x + b_ir + b_hr; W_iz x + b_iz + b_hz; b_hn]: a step's baddbmm then yields the pre-sigmoid r and z
        # and W_hn h + b_hn in one operation
        gate_inputs, candidate_inputs = inputs.split([2 * hidden, hidden], -1)
        bias = bias.unsqueeze(1)  # (D, 1, 3H)
        added = torch.cat(
            [gate_inputs + bias[..., : 2 * hidden], bias[..., 2 * hidden :].expand_as(candidate_inputs)], -1
        )  # (S, D, B, 3H)
        weight_t = weight.transpose(1, 2)  # (D, H, 3H)
        states = inputs.new_zeros(steps + 1, directions, batch, hidden)  # h_0 = 0 .. h_S
        projected = inputs.new_empty(steps, directions, batch, 3 * hidden)  # [pre-sigmoid r, z; W_hn h + b_hn]
        resets, updates, candidates = (inputs.new_empty(steps, directions, batch, hidden) for _ in range(3))
        for t in range(steps):
            torch.baddbmm(added[t], states[t], weight_t, out=projected[t])
            reset = torch.sigmoid(projected[t, ..., :hidden], out=resets[t])  # (D, B, H)
            update = torch.sigmoid(projected[t, ..., hidden : 2 * hidden], out=updates[t])  # (D, B, H)
            candidate = torch.addcmul(candidate_inputs[t], reset, projected[t, ..., 2 * hidden :], out=candidates[t])
            torch.lerp(fast_tanh_(candidate), states[t], update, out=states[t + 1])  # n + z (h - n)
        ctx.save_for_backward(weight, states, resets, updates, candidates, projected)
        return states[1:]

    @staticmethod
    def backward(ctx, grad_states):
        weight, states, resets, updates, candidates, projected = ctx.saved_tensors
        hidden = weight.size(2)
        # as AttentionGRUScan.backward: each step's factors in the loop, into contiguous tensors
        grad_inputs = torch.empty_like(projected)  # d/d(W_i x_t + b_i), (S, D, B, 3H)
        grad_hidden = torch.empty_like(projected)  # d/d(W_h h_{t-1} + b_h), (S, D, B, 3H)
        grad_weight = torch.zeros_like(weight)  # (D, 3H, H)
        grad_h = grad_states[-1]  # dL/dh_t in total, (D, B, H)
        for t in range(resets.size(0) - 1, -1, -1):
            reset, update, candidate, previous = resets[t], updates[t], candidates[t], states[t]
            not_update = 1 - update
            # d/d(pre-tanh) = dL/dh_t (1 - z_t) (1 - n_t^2); d/d(pre-sigmoid z) = dL/dh_t (h_{t-1} - n_t) z_t (1 - z_t);
            # d/d(pre-sigmoid r) = d/d(pre-tanh) (W_hn h_{t-1} + b_hn) r_t (1 - r_t)
            grad_candidate = (grad_h * not_update).mul_(torch.addcmul(_ONE, candidate, candidate, value=-1))
            grad_update = (grad_h * (previous - candidate)).mul_(update * not_update)
            grad_reset = (grad_candidate * projected[t, ..., 2 * hidden :]).mul_(
                torch.addcmul(reset, reset, reset, value=-1)
            )
            torch.cat([grad_reset, grad_update, grad_candidate], -1, out=grad_inputs[t])
            torch.cat([grad_reset, grad_update, grad_candidate * reset], -1, out=grad_hidden[t])
            # the hidden weights see h_{t-1}: accumulated step by step (as one product over the steps it needs a
            # transposing copy of grad_hidden that costs more than the product)
            torch.baddbmm(grad_weight, grad_hidden[t].transpose(1, 2), previous, out=grad_weight)
            if t:  # dL/dh_{t-1}: through h_t, and from the outputs; h_0 is a constant
                grad_h = torch.baddbmm(grad_h * update, grad_hidden[t], weight).add_(grad_states[t - 1])
        return grad_inputs, grad_weight, grad_hidden.sum((0, 2))


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
    projected = projected.view(*x.shape[:3], -1).permute(2, 0, 1, 3)  # (S, D, B, 3H), a view
    scan = FusedGRUScan if _fused(projected, weight_hh, bias_hh) else GRUScan
    return scan.apply(projected, weight_hh, bias_hh).permute(1, 2, 0, 3)  # (D, B, S, H), a view
