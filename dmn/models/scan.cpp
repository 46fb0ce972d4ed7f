// The scans of dmn/models/recurrence.py with each step's elementwise work fused into one loop: the attention
// GRU of DMN+'s episodic memory (DMN+ Eq. 12-13) and D plain GRUs stepped together (torch's nn.GRU equations).
// The layouts, the saved tensors and the equations are those of the Python scans (AttentionGRUScan, GRUScan),
// which document them and run where this file cannot be compiled; tests/test_recurrence.py checks both
// against autograd. A step is one matrix product (ATen's) and one pass over its (B, H) values, instead of a
// dozen elementwise operations, each a pass over memory and a call from Python.
#include <torch/extension.h>

#include <cmath>
#include <vector>

namespace {

// sigma(x) = (1 + tanh(x / 2)) / 2: no division, which fast maths would compute through a reciprocal estimate
// that turns 1 / (1 + exp(-x)) into NaN once exp(-x) overflows
template <typename T>
inline T sigmoid(T x) {
  return T(0.5) + T(0.5) * std::tanh(T(0.5) * x);
}

// The elementwise work of one step, on raw rows: plain loops over a row's H values, which the compiler
// vectorises (with -ffast-math, tanh through glibc's libmvec). Each row n has its own pointers so that
// the inner loop is a flat, alias-free one.

// Attention GRU, forward. In: x (B, 2H) = [W^(r) f_i + b^(r); W f_i], p (B, 2H) = [U^(r); U] h_{i-1}, gates (B,),
// h (B, H). Out: h_next (B, H), c (B, H) = h~_i, and p overwritten with [r_i; U h_{i-1} + b^(h)].
template <typename T>
void attention_step(const T* __restrict x, const T* __restrict bias, const T* __restrict gates, T* __restrict p,
                    const T* __restrict h, T* __restrict h_next, T* __restrict c, int64_t batch, int64_t hidden) {
  for (int64_t n = 0; n < batch; ++n) {
    const T gate = gates[n];
    const T* __restrict xn = x + n * 2 * hidden;
    T* __restrict pn = p + n * 2 * hidden;
    const T* __restrict hn = h + n * hidden;
    T* __restrict next = h_next + n * hidden;
    T* __restrict cn = c + n * hidden;
    for (int64_t j = 0; j < hidden; ++j) {
      const T r = sigmoid(xn[j] + pn[j] + bias[j]);
      const T u = pn[hidden + j] + bias[hidden + j];
      const T candidate = std::tanh(xn[hidden + j] + r * u);
      next[j] = hn[j] + gate * (candidate - hn[j]);  // h + g (h~ - h)
      pn[j] = r;
      pn[hidden + j] = u;
      cn[j] = candidate;
    }
  }
}

// Attention GRU, backward through one step. In: dh (B, H) = dL/dh_i, gates, p = [r_i; U h_{i-1} + b^(h)], c, h =
// h_{i-1}. Out: gx (B, 2H), gu (B, 2H) = the gradients of the input and hidden projections, gg (B,) of the gate,
// through (B, H) = dL/dh_i (1 - g_i).
template <typename T>
void attention_step_backward(const T* __restrict dh, const T* __restrict gates, const T* __restrict p,
                             const T* __restrict c, const T* __restrict h, T* __restrict gx, T* __restrict gu,
                             T* __restrict gg, T* __restrict through, int64_t batch, int64_t hidden) {
  for (int64_t n = 0; n < batch; ++n) {
    const T gate = gates[n];
    const T* __restrict dhn = dh + n * hidden;
    const T* __restrict pn = p + n * 2 * hidden;
    const T* __restrict cn = c + n * hidden;
    const T* __restrict hn = h + n * hidden;
    T* __restrict gxn = gx + n * 2 * hidden;
    T* __restrict gun = gu + n * 2 * hidden;
    T* __restrict thn = through + n * hidden;
    T grad_gate = 0;
    for (int64_t j = 0; j < hidden; ++j) {
      const T r = pn[j], candidate = cn[j];
      // d/d(pre-tanh) = dL/dh_i g_i (1 - h~_i^2); d/d(pre-sigmoid r) = that (U h_{i-1} + b^(h)) r_i (1 - r_i)
      const T d_candidate = dhn[j] * gate * (1 - candidate * candidate);
      const T d_reset = d_candidate * pn[hidden + j] * r * (1 - r);
      gxn[j] = d_reset;
      gxn[hidden + j] = d_candidate;
      gun[j] = d_reset;
      gun[hidden + j] = d_candidate * r;
      grad_gate += dhn[j] * (candidate - hn[j]);
      thn[j] = dhn[j] * (1 - gate);
    }
    gg[n] = grad_gate;
  }
}

// GRU, forward. In: x (R, 3H) = W_i x_t + b_i, p (R, 3H) = W_h h_{t-1}, bias (3H,) = b_h, h (R, H), for R rows of
// one direction. Out: h_next, c = n_t, and p overwritten with [r_t; z_t; W_hn h_{t-1} + b_hn].
template <typename T>
void gru_step(const T* __restrict x, const T* __restrict bias, T* __restrict p, const T* __restrict h,
              T* __restrict h_next, T* __restrict c, int64_t rows, int64_t hidden) {
  for (int64_t n = 0; n < rows; ++n) {
    const T* __restrict xn = x + n * 3 * hidden;
    T* __restrict pn = p + n * 3 * hidden;
    const T* __restrict hn = h + n * hidden;
    T* __restrict next = h_next + n * hidden;
    T* __restrict cn = c + n * hidden;
    for (int64_t j = 0; j < hidden; ++j) {
      const T r = sigmoid(xn[j] + pn[j] + bias[j]);
      const T z = sigmoid(xn[hidden + j] + pn[hidden + j] + bias[hidden + j]);
      const T u = pn[2 * hidden + j] + bias[2 * hidden + j];
      const T candidate = std::tanh(xn[2 * hidden + j] + r * u);
      next[j] = candidate + z * (hn[j] - candidate);  // n + z (h - n)
      pn[j] = r;
      pn[hidden + j] = z;
      pn[2 * hidden + j] = u;
      cn[j] = candidate;
    }
  }
}

// GRU, backward through one step. In: dh (R, H) = dL/dh_t, p = [r_t; z_t; W_hn h_{t-1} + b_hn], c, h = h_{t-1},
// from_outputs (R, H) = dL/dh_{t-1} from the outputs. Out: gx, gu (R, 3H), through (R, H) = dL/dh_t z_t +
// from_outputs.
template <typename T>
void gru_step_backward(const T* __restrict dh, const T* __restrict p, const T* __restrict c, const T* __restrict h,
                       const T* __restrict from_outputs, T* __restrict gx, T* __restrict gu, T* __restrict through,
                       int64_t rows, int64_t hidden) {
  for (int64_t n = 0; n < rows; ++n) {
    const T* __restrict dhn = dh + n * hidden;
    const T* __restrict pn = p + n * 3 * hidden;
    const T* __restrict cn = c + n * hidden;
    const T* __restrict hn = h + n * hidden;
    const T* __restrict outn = from_outputs + n * hidden;
    T* __restrict gxn = gx + n * 3 * hidden;
    T* __restrict gun = gu + n * 3 * hidden;
    T* __restrict thn = through + n * hidden;
    for (int64_t j = 0; j < hidden; ++j) {
      const T r = pn[j], z = pn[hidden + j], candidate = cn[j];
      // d/d(pre-tanh) = dL/dh_t (1 - z_t) (1 - n_t^2); d/d(pre-sigmoid z) = dL/dh_t (h_{t-1} - n_t) z_t (1 - z_t);
      // d/d(pre-sigmoid r) = d/d(pre-tanh) (W_hn h_{t-1} + b_hn) r_t (1 - r_t)
      const T d_candidate = dhn[j] * (1 - z) * (1 - candidate * candidate);
      const T d_update = dhn[j] * (hn[j] - candidate) * z * (1 - z);
      const T d_reset = d_candidate * pn[2 * hidden + j] * r * (1 - r);
      gxn[j] = d_reset;
      gxn[hidden + j] = d_update;
      gxn[2 * hidden + j] = d_candidate;
      gun[j] = d_reset;
      gun[hidden + j] = d_update;
      gun[2 * hidden + j] = d_candidate * r;
      thn[j] = dhn[j] * z + outn[j];
    }
  }
}

template <typename T>
T* ptr(const at::Tensor& tensor) {
  return tensor.data_ptr<T>();
}

// inputs (B, S, 2H) = [W^(r) f_i + b^(r); W f_i]; gates (B, S); weight (2H, H) = [U^(r); U]; bias (2H,).
// Returns the final state (B, H) and what the backward reads: the states h_0..h_S (S+1, B, H), the candidates
// h~_i (S, B, H) and [r_i; U h_{i-1} + b^(h)] (S, B, 2H).
std::vector<at::Tensor> attention_forward(at::Tensor inputs, at::Tensor gates, at::Tensor weight, at::Tensor bias) {
  TORCH_CHECK(weight.dim() == 2 && weight.size(0) == 2 * weight.size(1), "weight must be (2H, H)");
  const auto hidden = weight.size(1);
  TORCH_CHECK(inputs.dim() == 3 && inputs.size(2) == 2 * hidden, "inputs must be (B, S, 2H)");
  TORCH_CHECK(gates.dim() == 2 && gates.size(0) == inputs.size(0) && gates.size(1) == inputs.size(1),
              "gates must be (B, S), as the inputs' first two dimensions");
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == 2 * hidden, "bias must be (2H,)");
  TORCH_CHECK(gates.scalar_type() == inputs.scalar_type() && weight.scalar_type() == inputs.scalar_type() &&
                  bias.scalar_type() == inputs.scalar_type(),
              "inputs, gates, weight and bias must have one dtype");
  const auto x = inputs.transpose(0, 1).contiguous();  // (S, B, 2H)
  const auto g = gates.t().contiguous();  // (S, B)
  const auto b = bias.contiguous();
  const auto steps = x.size(0), batch = x.size(1);
  auto states = at::zeros({steps + 1, batch, hidden}, inputs.options());
  auto projected = at::empty({steps, batch, 2 * hidden}, inputs.options());
  auto candidates = at::empty({steps, batch, hidden}, inputs.options());
  const auto weight_t = weight.t();
  for (int64_t i = 0; i < steps; ++i) {
    auto product = projected[i];
    at::mm_out(product, states[i], weight_t);  // [U^(r); U] h_{i-1}, (B, 2H)
    AT_DISPATCH_FLOATING_TYPES(inputs.scalar_type(), "attention_step", [&] {
      attention_step(ptr<scalar_t>(x[i]), ptr<scalar_t>(b), ptr<scalar_t>(g[i]), ptr<scalar_t>(product),
                     ptr<scalar_t>(states[i]), ptr<scalar_t>(states[i + 1]), ptr<scalar_t>(candidates[i]), batch,
                     hidden);
    });
  }
  return {states[steps].clone(), states, candidates, projected};
}

// -> the gradients of inputs (B, S, 2H), gates (B, S), weight (2H, H) and bias (2H,).
std::vector<at::Tensor> attention_backward(at::Tensor grad_final, at::Tensor gates, at::Tensor weight,
                                           at::Tensor states, at::Tensor candidates, at::Tensor projected) {
  const auto hidden = weight.size(1);
  const auto steps = candidates.size(0), batch = candidates.size(1);
  const auto g = gates.t().contiguous();  // (S, B)
  auto grad_inputs = at::empty_like(projected);  // d/d[W^(r) f_i + b^(r); W f_i], (S, B, 2H)
  auto grad_hidden = at::empty_like(projected);  // d/d[U^(r) h_{i-1} + b'^(r); U h_{i-1} + b^(h)], (S, B, 2H)
  auto grad_gates = at::empty({steps, batch}, gates.options());
  auto grad_h = grad_final.contiguous().clone();  // dL/dh_i, (B, H)
  auto through = at::empty_like(grad_h);
  for (int64_t i = steps - 1; i >= 0; --i) {
    AT_DISPATCH_FLOATING_TYPES(projected.scalar_type(), "attention_step_backward", [&] {
      attention_step_backward(ptr<scalar_t>(grad_h), ptr<scalar_t>(g[i]), ptr<scalar_t>(projected[i]),
                              ptr<scalar_t>(candidates[i]), ptr<scalar_t>(states[i]), ptr<scalar_t>(grad_inputs[i]),
                              ptr<scalar_t>(grad_hidden[i]), ptr<scalar_t>(grad_gates[i]), ptr<scalar_t>(through),
                              batch, hidden);
    });
    if (i) {  // dL/dh_{i-1} = dL/dh_i (1 - g_i) + grad_hidden [U^(r); U]; h_0 is a constant
      at::addmm_out(grad_h, through, grad_hidden[i], weight);
    }
  }
  // the hidden weights saw h_{i-1} at every step: one product over all steps
  auto grad_weight = grad_hidden.flatten(0, 1).t().mm(states.narrow(0, 0, steps).flatten(0, 1));
  return {grad_inputs.transpose(0, 1), grad_gates.t(), grad_weight, grad_hidden.sum({0, 1})};
}

// inputs (S, D, B, 3H) = W_i x_t + b_i; weight (D, 3H, H) = [W_hr; W_hz; W_hn]; bias (D, 3H).
// Returns the states h_1..h_S (S, D, B, H) and what the backward reads: h_0..h_S (S+1, D, B, H), the
// candidates n_t (S, D, B, H) and [r_t; z_t; W_hn h_{t-1} + b_hn] (S, D, B, 3H).
std::vector<at::Tensor> gru_forward(at::Tensor inputs, at::Tensor weight, at::Tensor bias) {
  TORCH_CHECK(weight.dim() == 3 && weight.size(1) == 3 * weight.size(2), "weight must be (D, 3H, H)");
  const auto hidden = weight.size(2);
  TORCH_CHECK(inputs.dim() == 4 && inputs.size(1) == weight.size(0) && inputs.size(3) == 3 * hidden,
              "inputs must be (S, D, B, 3H)");
  TORCH_CHECK(bias.dim() == 2 && bias.size(0) == weight.size(0) && bias.size(1) == 3 * hidden,
              "bias must be (D, 3H)");
  TORCH_CHECK(weight.scalar_type() == inputs.scalar_type() && bias.scalar_type() == inputs.scalar_type(),
              "inputs, weight and bias must have one dtype");
  const auto x = inputs.contiguous();
  const auto b = bias.contiguous();
  const auto steps = x.size(0), directions = x.size(1), batch = x.size(2);
  auto states = at::zeros({steps + 1, directions, batch, hidden}, inputs.options());
  auto projected = at::empty({steps, directions, batch, 3 * hidden}, inputs.options());
  auto candidates = at::empty({steps, directions, batch, hidden}, inputs.options());
  const auto weight_t = weight.transpose(1, 2);  // (D, H, 3H)
  for (int64_t t = 0; t < steps; ++t) {
    auto product = projected[t];
    at::bmm_out(product, states[t], weight_t);  // W_h h_{t-1}, (D, B, 3H)
    for (int64_t d = 0; d < directions; ++d) {
      AT_DISPATCH_FLOATING_TYPES(inputs.scalar_type(), "gru_step", [&] {
        gru_step(ptr<scalar_t>(x[t][d]), ptr<scalar_t>(b[d]), ptr<scalar_t>(product[d]), ptr<scalar_t>(states[t][d]),
                 ptr<scalar_t>(states[t + 1][d]), ptr<scalar_t>(candidates[t][d]), batch, hidden);
      });
    }
  }
  return {states.narrow(0, 1, steps), states, candidates, projected};
}

// grad_states (S, D, B, H): dL/dh_t from the outputs -> the gradients of inputs, weight and bias.
std::vector<at::Tensor> gru_backward(at::Tensor grad_states, at::Tensor weight, at::Tensor states,
                                     at::Tensor candidates, at::Tensor projected) {
  const auto hidden = weight.size(2);
  const auto steps = candidates.size(0);
  const auto grads = grad_states.contiguous();
  auto grad_inputs = at::empty_like(projected);  // d/d(W_i x_t + b_i), (S, D, B, 3H)
  auto grad_hidden = at::empty_like(projected);  // d/d(W_h h_{t-1} + b_h), (S, D, B, 3H)
  auto grad_weight = at::zeros_like(weight);  // (D, 3H, H)
  auto grad_h = grads[steps - 1].clone();  // dL/dh_t in total, (D, B, H)
  auto through = at::empty_like(grad_h);
  const auto rows = grad_h.size(0) * grad_h.size(1);
  for (int64_t t = steps - 1; t >= 0; --t) {
    AT_DISPATCH_FLOATING_TYPES(projected.scalar_type(), "gru_step_backward", [&] {
      // from the outputs: dL/dh_{t-1} (at t = 0 any row: `through` is not read then)
      gru_step_backward(ptr<scalar_t>(grad_h), ptr<scalar_t>(projected[t]), ptr<scalar_t>(candidates[t]),
                        ptr<scalar_t>(states[t]), ptr<scalar_t>(grads[t ? t - 1 : 0]), ptr<scalar_t>(grad_inputs[t]),
                        ptr<scalar_t>(grad_hidden[t]), ptr<scalar_t>(through), rows, hidden);
    });
    grad_weight.baddbmm_(grad_hidden[t].transpose(1, 2), states[t]);  // the hidden weights see h_{t-1}
    if (t) {  // dL/dh_{t-1}: through h_t, and from the outputs; h_0 is a constant
      at::baddbmm_out(grad_h, through, grad_hidden[t], weight);
    }
  }
  return {grad_inputs, grad_weight, grad_hidden.sum({0, 2})};
}

}  // namespace

// Python's lock is released while a scan runs: ATen needs none, and other threads may go on
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using release = pybind11::call_guard<pybind11::gil_scoped_release>;
  m.def("attention_forward", &attention_forward, release());
  m.def("attention_backward", &attention_backward, release());
  m.def("gru_forward", &gru_forward, release());
  m.def("gru_backward", &gru_backward, release());
}
