// The GroupQueryAttention layer operator: validates, owns the projections
// (XNNPACK fully-connected operators for f32; packed f16 weights for f16),
// carves the caller's workspace and runs projection -> attention core ->
// gate -> output projection without allocating.
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <xnnpack.h>

#include <mutex>
#include <new>

#include "gqa/gqa.h"
#include "gqa/kv_cache.h"
#include "src/attention_core.h"
#include "src/dense_f16.h"
#include "src/half.h"
#include "src/kv_cache.h"
#include "src/status.h"

namespace {

using gqa::ByteRange;
using gqa::CheckedAdd;
using gqa::CheckedMul;
using gqa::CheckedProduct;
using gqa::CheckedRoundUp;
using gqa::EffectiveWindow;
using gqa::Fail;
using gqa::FitsSizeT;
using gqa::kMaxElements;
using gqa::kMaxPosition;
using gqa::Overlap;
using gqa::RangeOf;
using gqa::RingWindowFits;

constexpr int64_t kAlign = GQA_WORKSPACE_ALIGNMENT;
// XNNPACK may read this many bytes past the end of an input.
constexpr int64_t kXnnExtraBytes = XNN_EXTRA_BYTES;

int64_t RoundUp(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

}  // namespace

struct gqa_layer {
  gqa_layer_config config;
  int64_t q_width = 0;   // Hq*D
  int64_t kv_width = 0;  // Hkv*D
  // f32 path. XNNPACK keeps a setup (shape, pointers, tiling for the pool)
  // in the operator, so every setup + run holds that operator's mutex:
  // threads sharing the layer serialise on one projection at a time only
  // (a std::mutex is a pthread mutex: nothing is allocated).
  xnn_operator_t op_query = nullptr;
  xnn_operator_t op_key = nullptr;
  xnn_operator_t op_value = nullptr;
  xnn_operator_t op_gate = nullptr;
  xnn_operator_t op_output = nullptr;
  mutable std::mutex mu_query, mu_key, mu_value, mu_gate, mu_output;
  // f16 path: f16 kernels with columns padded to kDenseColumnChunk, f32
  // biases padded likewise (zeros when use_bias is off: never read then).
  int64_t q_padded = 0, kv_padded = 0, out_padded = 0;
  uint16_t* w_query = nullptr;
  uint16_t* w_key = nullptr;
  uint16_t* w_value = nullptr;
  uint16_t* w_gate = nullptr;
  uint16_t* w_output = nullptr;
  float* b_query = nullptr;
  float* b_key = nullptr;
  float* b_value = nullptr;
  float* b_gate = nullptr;
  float* b_output = nullptr;
  unsigned char* storage = nullptr;

  ~gqa_layer() {
    xnn_operator_t ops[] = {op_query, op_key, op_value, op_gate, op_output};
    for (xnn_operator_t op : ops) {
      if (op) xnn_delete_operator(op);
    }
    delete[] storage;
  }
};

namespace {

gqa_status ValidateConfig(const gqa_layer_config& c) {
  const struct {
    const char* name;
    int64_t value;
  } sizes[] = {{"head_dim", c.head_dim},
               {"num_query_heads", c.num_query_heads},
               {"num_key_value_heads", c.num_key_value_heads},
               {"query_features", c.query_features},
               {"key_features", c.key_features},
               {"value_features", c.value_features}};
  for (const auto& s : sizes) {
    if (s.value <= 0) {
      return Fail(GQA_STATUS_INVALID_SIZE,
                  "`%s` must be a positive integer, got %lld", s.name,
                  static_cast<long long>(s.value));
    }
  }
  if (c.num_query_heads % c.num_key_value_heads != 0) {
    return Fail(GQA_STATUS_HEADS_NOT_DIVISIBLE,
                "`num_query_heads` must be divisible by "
                "`num_key_value_heads` (got %lld and %lld).",
                static_cast<long long>(c.num_query_heads),
                static_cast<long long>(c.num_key_value_heads));
  }
  if (c.sliding_window < 0) {
    return Fail(GQA_STATUS_INVALID_SLIDING_WINDOW,
                "`sliding_window` must be `None` (0) or a positive integer. "
                "Received: sliding_window=%lld",
                static_cast<long long>(c.sliding_window));
  }
  if (!(c.dropout >= 0.0f && c.dropout <= 1.0f)) {
    return Fail(GQA_STATUS_INVALID_DROPOUT,
                "Invalid value received for argument `rate`. Expected a float "
                "value between 0 and 1. Received: rate=%g",
                static_cast<double>(c.dropout));
  }
  if (c.fully_masked_policy != GQA_FULLY_MASKED_KERAS &&
      c.fully_masked_policy != GQA_FULLY_MASKED_ZERO &&
      c.fully_masked_policy != GQA_FULLY_MASKED_UNIFORM) {
    return Fail(GQA_STATUS_INVALID_ENUM, "unknown fully_masked_policy %d",
                static_cast<int>(c.fully_masked_policy));
  }
  if (c.dtype != GQA_DTYPE_F32 && c.dtype != GQA_DTYPE_F16) {
    return Fail(GQA_STATUS_INVALID_ENUM, "unknown dtype %d",
                static_cast<int>(c.dtype));
  }
  // Every weight and activation size must fit with room to spare.
  // Each product is bounded on its own (the packed f16 storage and the f32
  // packing sum several of them, with widths padded to 64 columns).
  int64_t q_width = 0, kv_width = 0, q_pad = 0, kv_pad = 0, f_pad = 0, t = 0;
  if (!CheckedProduct({c.num_query_heads, c.head_dim}, kMaxElements,
                      &q_width) ||
      !CheckedProduct({c.num_key_value_heads, c.head_dim}, kMaxElements,
                      &kv_width) ||
      !CheckedRoundUp(q_width, 64, &q_pad) ||
      !CheckedRoundUp(kv_width, 64, &kv_pad) ||
      !CheckedRoundUp(c.query_features, 64, &f_pad) ||
      !CheckedProduct({q_pad, c.query_features}, kMaxElements, &t) ||
      !CheckedProduct({kv_pad, c.key_features}, kMaxElements, &t) ||
      !CheckedProduct({kv_pad, c.value_features}, kMaxElements, &t) ||
      !CheckedProduct({q_width, f_pad}, kMaxElements, &t)) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW,
                "weight sizes overflow (D=%lld, Hq=%lld, Fq=%lld, Fk=%lld, "
                "Fv=%lld)",
                static_cast<long long>(c.head_dim),
                static_cast<long long>(c.num_query_heads),
                static_cast<long long>(c.query_features),
                static_cast<long long>(c.key_features),
                static_cast<long long>(c.value_features));
  }
  return GQA_STATUS_OK;
}

gqa_status ValidateWeights(const gqa_layer_config& c,
                           const gqa_layer_weights& w) {
  const struct {
    const char* name;
    const void* ptr;
    bool needed;
  } list[] = {
      {"query_kernel", w.query_kernel, true},
      {"key_kernel", w.key_kernel, true},
      {"value_kernel", w.value_kernel, true},
      {"output_kernel", w.output_kernel, true},
      {"gate_kernel", w.gate_kernel, c.use_gate != 0},
      {"query_bias", w.query_bias, c.use_bias != 0},
      {"key_bias", w.key_bias, c.use_bias != 0},
      {"value_bias", w.value_bias, c.use_bias != 0},
      {"output_bias", w.output_bias, c.use_bias != 0},
      {"gate_bias", w.gate_bias, c.use_bias != 0 && c.use_gate != 0},
  };
  for (const auto& e : list) {
    if (e.needed && e.ptr == nullptr) {
      return Fail(GQA_STATUS_MISSING_WEIGHT,
                  "weight `%s` is required by the config but is NULL", e.name);
    }
  }
  return GQA_STATUS_OK;
}

gqa_status CreateFc(int64_t in, int64_t out, const float* kernel,
                    const float* bias, const char* name, xnn_operator_t* op) {
  const xnn_status s = xnn_create_fully_connected_nc_f32(
      static_cast<size_t>(in), static_cast<size_t>(out),
      static_cast<size_t>(in), static_cast<size_t>(out), kernel, bias,
      -INFINITY, INFINITY, XNN_FLAG_TRANSPOSE_WEIGHTS, op);
  if (s == xnn_status_out_of_memory) {
    return Fail(GQA_STATUS_OUT_OF_MEMORY, "out of memory creating `%s`", name);
  }
  if (s != xnn_status_success) {
    return Fail(GQA_STATUS_BACKEND_FAILURE,
                "XNNPACK could not create the `%s` projection (status %d)",
                name, static_cast<int>(s));
  }
  return GQA_STATUS_OK;
}

// Copies a Keras [rows][cols] f16 kernel into [rows][cols_padded], zeros in
// the padding; a Keras bias [cols] (f16) into f32 [cols_padded].
void PackHalfKernel(const void* src, int64_t rows, int64_t cols,
                    int64_t cols_padded, uint16_t* dst) {
  const uint16_t* s = static_cast<const uint16_t*>(src);
  for (int64_t r = 0; r < rows; ++r) {
    memcpy(dst + r * cols_padded, s + r * cols,
           static_cast<size_t>(cols) * sizeof(uint16_t));
    memset(dst + r * cols_padded + cols, 0,
           static_cast<size_t>(cols_padded - cols) * sizeof(uint16_t));
  }
}
void PackHalfBias(const void* src, int64_t cols, int64_t cols_padded,
                  float* dst) {
  memset(dst, 0, static_cast<size_t>(cols_padded) * sizeof(float));
  if (src == nullptr) return;
  const uint16_t* s = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < cols; ++i) dst[i] = gqa::HalfToFloat(s[i]);
}

gqa_status CreateF16(gqa_layer* L, const gqa_layer_weights& w) {
  const gqa_layer_config& c = L->config;
  const int64_t chunk = gqa::kDenseColumnChunk;
  L->q_padded = RoundUp(L->q_width, chunk);
  L->kv_padded = RoundUp(L->kv_width, chunk);
  L->out_padded = RoundUp(c.query_features, chunk);
  const int64_t gate_rows = c.use_gate ? c.query_features : 0;
  const int64_t halves = (c.query_features + gate_rows) * L->q_padded +
                         (c.key_features + c.value_features) * L->kv_padded +
                         L->q_width * L->out_padded;
  const int64_t floats =
      (c.use_gate ? 2 : 1) * L->q_padded + 2 * L->kv_padded + L->out_padded;
  const int64_t bytes = RoundUp(halves * 2, kAlign) + floats * 4 + 5 * kAlign;
  // (Each term is bounded by ValidateConfig; the sum must fit a size_t.)
  if (!FitsSizeT(bytes)) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW,
                "%lld bytes of f16 weights do not fit this address space",
                static_cast<long long>(bytes));
  }
  L->storage = new (std::nothrow) unsigned char[static_cast<size_t>(bytes)];
  if (!L->storage) {
    return Fail(GQA_STATUS_OUT_OF_MEMORY,
                "out of memory packing %lld bytes of f16 weights",
                static_cast<long long>(bytes));
  }
  unsigned char* p = L->storage;
  auto take = [&p](int64_t n) {
    unsigned char* r = p;
    p += RoundUp(n, 16);
    return r;
  };
  L->w_query =
      reinterpret_cast<uint16_t*>(take(c.query_features * L->q_padded * 2));
  L->w_key =
      reinterpret_cast<uint16_t*>(take(c.key_features * L->kv_padded * 2));
  L->w_value =
      reinterpret_cast<uint16_t*>(take(c.value_features * L->kv_padded * 2));
  L->w_output =
      reinterpret_cast<uint16_t*>(take(L->q_width * L->out_padded * 2));
  if (c.use_gate) {
    L->w_gate =
        reinterpret_cast<uint16_t*>(take(c.query_features * L->q_padded * 2));
  }
  L->b_query = reinterpret_cast<float*>(take(L->q_padded * 4));
  L->b_key = reinterpret_cast<float*>(take(L->kv_padded * 4));
  L->b_value = reinterpret_cast<float*>(take(L->kv_padded * 4));
  L->b_output = reinterpret_cast<float*>(take(L->out_padded * 4));
  if (c.use_gate) L->b_gate = reinterpret_cast<float*>(take(L->q_padded * 4));

  PackHalfKernel(w.query_kernel, c.query_features, L->q_width, L->q_padded,
                 L->w_query);
  PackHalfKernel(w.key_kernel, c.key_features, L->kv_width, L->kv_padded,
                 L->w_key);
  PackHalfKernel(w.value_kernel, c.value_features, L->kv_width, L->kv_padded,
                 L->w_value);
  PackHalfKernel(w.output_kernel, L->q_width, c.query_features, L->out_padded,
                 L->w_output);
  const bool bias = c.use_bias != 0;
  PackHalfBias(bias ? w.query_bias : nullptr, L->q_width, L->q_padded,
               L->b_query);
  PackHalfBias(bias ? w.key_bias : nullptr, L->kv_width, L->kv_padded,
               L->b_key);
  PackHalfBias(bias ? w.value_bias : nullptr, L->kv_width, L->kv_padded,
               L->b_value);
  PackHalfBias(bias ? w.output_bias : nullptr, c.query_features, L->out_padded,
               L->b_output);
  if (c.use_gate) {
    PackHalfKernel(w.gate_kernel, c.query_features, L->q_width, L->q_padded,
                   L->w_gate);
    PackHalfBias(bias ? w.gate_bias : nullptr, L->q_width, L->q_padded,
                 L->b_gate);
  }
  return GQA_STATUS_OK;
}

gqa_status CreateF32(gqa_layer* L, const gqa_layer_weights& w) {
  const gqa_layer_config& c = L->config;
  const xnn_status init = xnn_initialize(nullptr);
  if (init == xnn_status_unsupported_hardware) {
    return Fail(GQA_STATUS_UNSUPPORTED_HARDWARE,
                "XNNPACK does not support this CPU");
  }
  if (init != xnn_status_success) {
    return Fail(GQA_STATUS_BACKEND_FAILURE, "xnn_initialize failed (status %d)",
                static_cast<int>(init));
  }
  const bool bias = c.use_bias != 0;
  auto f = [](const void* p) { return static_cast<const float*>(p); };
  gqa_status s;
  if ((s = CreateFc(c.query_features, L->q_width, f(w.query_kernel),
                    bias ? f(w.query_bias) : nullptr, "query", &L->op_query)) !=
          GQA_STATUS_OK ||
      (s = CreateFc(c.key_features, L->kv_width, f(w.key_kernel),
                    bias ? f(w.key_bias) : nullptr, "key", &L->op_key)) !=
          GQA_STATUS_OK ||
      (s = CreateFc(c.value_features, L->kv_width, f(w.value_kernel),
                    bias ? f(w.value_bias) : nullptr, "value", &L->op_value)) !=
          GQA_STATUS_OK ||
      (s = CreateFc(L->q_width, c.query_features, f(w.output_kernel),
                    bias ? f(w.output_bias) : nullptr, "attention_output",
                    &L->op_output)) != GQA_STATUS_OK) {
    return s;
  }
  if (c.use_gate) {
    s = CreateFc(c.query_features, L->q_width, f(w.gate_kernel),
                 bias ? f(w.gate_bias) : nullptr, "gate", &L->op_gate);
  }
  return s;
}

// The workspace, carved in this order; each region starts 64-byte aligned
// and ends with XNN_EXTRA_BYTES of slack so XNNPACK may over-read it.
struct WorkspacePlan {
  int64_t q = 0, k = 0, v = 0, gate = 0, attn = 0, tail = 0, x32 = 0,
          out32 = 0;       // byte offsets (-1: absent)
  int64_t core = 0;        // attention core slots start here
  int64_t slot_bytes = 0;  // one slot of the core
  int64_t total = 0;       // with `slots` core slots
};

// The core's parameters for a call of this shape (masks and pointers are
// filled in by forward; the plan depends on shapes only).
gqa::AttentionParams CoreShape(const gqa_layer* L, int64_t B, int64_t T,
                               int64_t S) {
  gqa::AttentionParams p;
  p.batch = B;
  p.q_len = T;
  p.kv_len = S;
  p.q_heads = L->config.num_query_heads;
  p.kv_heads = L->config.num_key_value_heads;
  p.head_dim = L->config.head_dim;
  return p;
}

bool PlanWorkspace(const gqa_layer* L, int64_t B, int64_t T, int64_t S,
                   const gqa::AttentionParams& core_shape, int64_t slots,
                   WorkspacePlan* plan) {
  const gqa_layer_config& c = L->config;
  int64_t bt, bs;
  if (!CheckedMul(B, T, &bt) || !CheckedMul(B, S, &bs)) return false;
  const bool f16 = c.dtype == GQA_DTYPE_F16;
  const int64_t q_cols = f16 ? L->q_padded : L->q_width;
  const int64_t kv_cols = f16 ? L->kv_padded : L->kv_width;
  int64_t offset = 0;
  bool ok = true;
  auto region = [&](int64_t rows, int64_t cols) -> int64_t {
    int64_t n = 0, bytes = 0, next = 0;
    ok = ok && CheckedMul(rows, cols, &n) && CheckedMul(n, 4, &bytes) &&
         CheckedAdd(bytes, kXnnExtraBytes + kAlign - 1, &bytes);
    if (!ok) return -1;
    bytes = bytes / kAlign * kAlign;
    const int64_t at = offset;
    ok = CheckedAdd(offset, bytes, &next);
    offset = next;
    return at;
  };
  plan->q = region(bt, q_cols);
  plan->k = region(bs, kv_cols);
  plan->v = region(bs, kv_cols);
  plan->gate = c.use_gate ? region(bt, q_cols) : -1;
  plan->attn = region(bt, L->q_width);
  if (f16) {
    int64_t x = 0, y = 0, z = 0;
    ok = ok && CheckedMul(bt, c.query_features, &x) &&
         CheckedMul(bs, c.key_features, &y) &&
         CheckedMul(bs, c.value_features, &z);
    if (!ok) return false;
    const int64_t most = x > y ? (x > z ? x : z) : (y > z ? y : z);
    plan->x32 = region(most, 1);
    plan->out32 = region(bt, L->out_padded);
    plan->tail = -1;
  } else {
    int64_t widest = c.query_features;
    if (c.key_features > widest) widest = c.key_features;
    if (c.value_features > widest) widest = c.value_features;
    plan->tail = region(1, widest);
    plan->x32 = plan->out32 = -1;
  }
  if (!ok) return false;
  plan->core = offset;
  const gqa::AttentionPlan core = gqa::PlanAttention(core_shape);
  plan->slot_bytes = core.slot_bytes;
  int64_t core_bytes = 0;
  if (!CheckedMul(plan->slot_bytes, slots, &core_bytes) ||
      !CheckedAdd(core_bytes, core.shared_bytes, &core_bytes) ||
      !CheckedAdd(offset, core_bytes, &offset)) {
    return false;
  }
  // Keep totals far from overflow of size_t arithmetic on 32-bit targets.
  if (static_cast<uint64_t>(offset) > SIZE_MAX / 2) return false;
  plan->total = offset;
  return true;
}

// Runs an f32 FC over m rows of `in` (row stride = its input channels)
// without letting XNNPACK read past the caller's buffer: rows [0, m-1)
// straight from `in` (their over-read lands in the next row), the last row
// from a padded copy in `tail`. Holds `mu` (op's mutex) over the setups and
// runs.
gqa_status RunFc(xnn_operator_t op, std::mutex* mu, int64_t m, const float* in,
                 int64_t in_cols, float* out, int64_t out_cols, float* tail,
                 pthreadpool_t pool) {
  std::lock_guard<std::mutex> lock(*mu);
  xnn_status s = xnn_status_success;
  if (m > 1) {
    s = xnn_setup_fully_connected_nc_f32(op, static_cast<size_t>(m - 1), in,
                                         out, pool);
    if (s == xnn_status_success) s = xnn_run_operator(op, pool);
  }
  if (s == xnn_status_success) {
    memcpy(tail, in + (m - 1) * in_cols, static_cast<size_t>(in_cols) * 4);
    s = xnn_setup_fully_connected_nc_f32(op, 1, tail, out + (m - 1) * out_cols,
                                         pool);
    if (s == xnn_status_success) s = xnn_run_operator(op, pool);
  }
  if (s != xnn_status_success) {
    return Fail(GQA_STATUS_BACKEND_FAILURE,
                "XNNPACK fully-connected failed (status %d)",
                static_cast<int>(s));
  }
  return GQA_STATUS_OK;
}

// batch, query_len and value_len as a forward takes them: > 0, positions
// below the core's limit (the kernels compare them as f32), every tensor's
// element count representable. The size queries check the same, so no plan
// is made for a shape that a forward would refuse.
gqa_status ValidateShape(const gqa_layer* L, int64_t B, int64_t T, int64_t S) {
  const gqa_layer_config& c = L->config;
  const struct {
    const char* name;
    int64_t value;
  } sizes[] = {{"batch", B}, {"query_len", T}, {"value_len", S}};
  for (const auto& s : sizes) {
    if (s.value <= 0) {
      return Fail(GQA_STATUS_INVALID_SIZE, "`%s` must be > 0, got %lld", s.name,
                  static_cast<long long>(s.value));
    }
  }
  if (T > kMaxPosition || S > kMaxPosition) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW,
                "query_len and value_len must be <= 2^24 (got %lld, %lld)",
                static_cast<long long>(T), static_cast<long long>(S));
  }
  int64_t n = 0;
  if (!CheckedProduct({B, T, c.query_features}, kMaxElements, &n) ||
      !CheckedProduct({B, S, c.value_features}, kMaxElements, &n) ||
      !CheckedProduct({B, S, c.key_features}, kMaxElements, &n) ||
      !CheckedProduct({B, T, c.num_query_heads, c.head_dim}, kMaxElements,
                      &n) ||
      !CheckedProduct({B, S, c.num_key_value_heads, c.head_dim}, kMaxElements,
                      &n) ||
      !CheckedProduct({B, c.num_query_heads, T, S}, INT64_MAX >> 3, &n)) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW,
                "tensor sizes overflow (B=%lld, T=%lld, S=%lld)",
                static_cast<long long>(B), static_cast<long long>(T),
                static_cast<long long>(S));
  }
  return GQA_STATUS_OK;
}

gqa_status ValidateForward(const gqa_layer* L, const gqa_forward_args* a) {
  if (L == nullptr) return Fail(GQA_STATUS_NULL_POINTER, "layer is NULL");
  if (a == nullptr) return Fail(GQA_STATUS_NULL_POINTER, "args is NULL");
  const gqa_layer_config& c = L->config;
  const int64_t B = a->batch, T = a->query_len, S = a->value_len;
  gqa_status st = ValidateShape(L, B, T, S);
  if (st != GQA_STATUS_OK) return st;
  if (!a->query) return Fail(GQA_STATUS_NULL_POINTER, "`query` is NULL");
  if (!a->value) return Fail(GQA_STATUS_NULL_POINTER, "`value` is NULL");
  if (!a->output) return Fail(GQA_STATUS_NULL_POINTER, "`output` is NULL");
  if (!a->key && c.key_features != c.value_features) {
    return Fail(GQA_STATUS_SHAPE_MISMATCH,
                "`key` omitted, so value is used as key, but the key kernel "
                "expects %lld features and value has %lld",
                static_cast<long long>(c.key_features),
                static_cast<long long>(c.value_features));
  }
  const int64_t xq = B * T * c.query_features;  // bounded by ValidateShape
  const int64_t xk = B * S * c.key_features;
  const int64_t xv = B * S * c.value_features;
  const int64_t n_scores = B * c.num_query_heads * T * S;
  // The output [B, T, Fq] is written after the inputs are read, but with a
  // pool the projections of one thread may still read what another wrote:
  // it must not overlap any input.
  const int64_t es = c.dtype == GQA_DTYPE_F16 ? 2 : 4;
  const ByteRange out = RangeOf(a->output, xq, es);
  const struct {
    const char* name;
    ByteRange range;
  } inputs[] = {{"query", RangeOf(a->query, xq, es)},
                {"value", RangeOf(a->value, xv, es)},
                {"key", RangeOf(a->key, xk, es)}};
  const ByteRange scores = RangeOf(a->scores, n_scores, es);
  for (const auto& in : inputs) {
    if (Overlap(out, in.range) || Overlap(scores, in.range)) {
      return Fail(GQA_STATUS_INVALID_ARGUMENT,
                  "`%s` overlaps `%s` (outputs must not alias inputs)",
                  Overlap(out, in.range) ? "output" : "scores", in.name);
    }
  }
  if (Overlap(out, scores)) {
    return Fail(GQA_STATUS_INVALID_ARGUMENT, "`output` overlaps `scores`");
  }
  if (a->attention_mask) {
    const int32_t rank = a->attention_mask_rank;
    if (rank != 2 && rank != 3 && rank != 4) {
      return Fail(GQA_STATUS_INVALID_MASK_RANK,
                  "attention_mask must have rank 2 (T,S), 3 (B,T,S) or 4 "
                  "(B,Hq,T,S); got rank %d",
                  static_cast<int>(rank));
    }
    const int64_t full4[4] = {B, c.num_query_heads, T, S};
    const char* names4[4] = {"batch", "head", "query", "key"};
    // Size-1 axes are inserted at -3: (T,S) -> (1,1,T,S), (B,T,S) -> (B,1,T,S).
    static const int kAxisOf[3][4] = {{2, 3, 0, 0}, {0, 2, 3, 0}, {0, 1, 2, 3}};
    for (int i = 0; i < rank; ++i) {
      const int axis = kAxisOf[rank - 2][i];
      const int64_t d = a->attention_mask_dims[i];
      if (d <= 0) {
        return Fail(GQA_STATUS_INVALID_SIZE,
                    "attention_mask dimension %d is %lld (must be > 0)", i,
                    static_cast<long long>(d));
      }
      if (d != 1 && d != full4[axis]) {
        return Fail(GQA_STATUS_MASK_NOT_BROADCASTABLE,
                    "The `mask` must be broadcastable to (B,Hq,T,S) = "
                    "(%lld,%lld,%lld,%lld): its %s axis has size %lld",
                    static_cast<long long>(B),
                    static_cast<long long>(c.num_query_heads),
                    static_cast<long long>(T), static_cast<long long>(S),
                    names4[axis], static_cast<long long>(d));
      }
    }
  }
  return GQA_STATUS_OK;
}

// Fills the mask fields of the attention parameters from the call.
void WireMasks(const gqa_layer* L, const gqa_forward_args& a,
               gqa::AttentionParams* p) {
  p->query_mask = a.query_mask;
  p->key_mask0 = a.value_mask;
  p->key_mask1 = a.key_mask;
  p->causal = a.use_causal_mask != 0;
  p->sliding_window = EffectiveWindow(L->config.sliding_window);
  if (a.attention_mask) {
    int64_t dims[4] = {1, 1, 1, 1};
    const int rank = a.attention_mask_rank;
    if (rank == 2) {
      dims[2] = a.attention_mask_dims[0];
      dims[3] = a.attention_mask_dims[1];
    } else if (rank == 3) {
      dims[0] = a.attention_mask_dims[0];
      dims[2] = a.attention_mask_dims[1];
      dims[3] = a.attention_mask_dims[2];
    } else {
      for (int i = 0; i < 4; ++i) dims[i] = a.attention_mask_dims[i];
    }
    int64_t strides[4];
    int64_t stride = 1;
    for (int i = 3; i >= 0; --i) {
      strides[i] = dims[i] == 1 ? 0 : stride;
      stride *= dims[i];
    }
    p->mask = a.attention_mask;
    p->mask_stride_b = strides[0];
    p->mask_stride_h = strides[1];
    p->mask_stride_t = strides[2];
    p->mask_stride_s = strides[3];
  }
}

void ApplyGate(float* attn, int64_t rows, int64_t width, const float* gate,
               int64_t gate_stride) {
  // attn[r, :] *= sigmoid(gate_logits[r, :])
  for (int64_t r = 0; r < rows; ++r) {
    float* a = attn + r * width;
    const float* g = gate + r * gate_stride;
    for (int64_t i = 0; i < width; ++i) a[i] *= 1.0f / (1.0f + expf(-g[i]));
  }
}

// Checks the caller's workspace against plan; how many core workers fit.
gqa_status CheckWorkspace(const WorkspacePlan& plan, void* workspace,
                          size_t workspace_size, pthreadpool_t pool,
                          int64_t* slots) {
  if (!workspace) return Fail(GQA_STATUS_NULL_POINTER, "workspace is NULL");
  if (reinterpret_cast<uintptr_t>(workspace) % kAlign != 0) {
    return Fail(GQA_STATUS_WORKSPACE_MISALIGNED,
                "workspace must be aligned to %d bytes",
                GQA_WORKSPACE_ALIGNMENT);
  }
  if (workspace_size < static_cast<size_t>(plan.total)) {
    return Fail(GQA_STATUS_WORKSPACE_TOO_SMALL,
                "workspace has %zu bytes, this call needs %lld", workspace_size,
                static_cast<long long>(plan.total));
  }
  // As many core workers as the pool has threads and the workspace slots.
  *slots = pool ? static_cast<int64_t>(pthreadpool_get_threads_count(pool)) : 1;
  const int64_t room =
      1 +
      static_cast<int64_t>((workspace_size - static_cast<size_t>(plan.total)) /
                           static_cast<size_t>(plan.slot_bytes));
  if (*slots > room) *slots = room;
  return GQA_STATUS_OK;
}

// 1. Projections: q [B*T, Hq*D], k and v [B*S, Hkv*D], gate logits, into the
// workspace (f16 layer: rows padded to the dense kernel's column chunk).
gqa_status Project(const gqa_layer* L, const gqa_forward_args& a,
                   const WorkspacePlan& plan, unsigned char* ws,
                   pthreadpool_t pool) {
  const gqa_layer_config& c = L->config;
  auto at = [ws](int64_t offset) {
    return offset < 0 ? nullptr : reinterpret_cast<float*>(ws + offset);
  };
  float* q = at(plan.q);
  float* k = at(plan.k);
  float* v = at(plan.v);
  float* gate = at(plan.gate);
  const int64_t BT = a.batch * a.query_len, BS = a.batch * a.value_len;
  const bool f16 = c.dtype == GQA_DTYPE_F16;
  const int64_t q_cols = f16 ? L->q_padded : L->q_width;
  const int64_t kv_cols = f16 ? L->kv_padded : L->kv_width;
  const void* key = a.key ? a.key : a.value;
  if (f16) {
    float* x32 = at(plan.x32);
    gqa::DenseF16Params d;
    d.a = x32;
    auto dense = [&](int64_t rows, int64_t in_cols, const uint16_t* w,
                     int64_t n_padded, const float* bias, float* out) {
      d.lda = in_cols;
      d.k = in_cols;
      d.w = w;
      d.n_padded = n_padded;
      d.bias = c.use_bias ? bias : nullptr;
      d.c = out;
      d.ldc = n_padded;
      d.m = rows;
      gqa::RunDenseF16(d, pool);
    };
    auto to_f32 = [&](const void* src, int64_t count) {
      gqa::ConvertF16ToF32(static_cast<const uint16_t*>(src), x32,
                           static_cast<size_t>(count));
    };
    to_f32(a.query, BT * c.query_features);
    dense(BT, c.query_features, L->w_query, L->q_padded, L->b_query, q);
    if (c.use_gate)
      dense(BT, c.query_features, L->w_gate, L->q_padded, L->b_gate, gate);
    to_f32(key, BS * c.key_features);
    dense(BS, c.key_features, L->w_key, L->kv_padded, L->b_key, k);
    if (a.key) to_f32(a.value, BS * c.value_features);
    dense(BS, c.value_features, L->w_value, L->kv_padded, L->b_value, v);
    return GQA_STATUS_OK;
  }
  float* tail = at(plan.tail);
  const float* query = static_cast<const float*>(a.query);
  gqa_status s;
  if ((s = RunFc(L->op_query, &L->mu_query, BT, query, c.query_features, q,
                 q_cols, tail, pool)) != GQA_STATUS_OK ||
      (s = RunFc(L->op_key, &L->mu_key, BS, static_cast<const float*>(key),
                 c.key_features, k, kv_cols, tail, pool)) != GQA_STATUS_OK ||
      (s = RunFc(L->op_value, &L->mu_value, BS,
                 static_cast<const float*>(a.value), c.value_features, v,
                 kv_cols, tail, pool)) != GQA_STATUS_OK) {
    return s;
  }
  if (c.use_gate) {
    return RunFc(L->op_gate, &L->mu_gate, BT, query, c.query_features, gate,
                 q_cols, tail, pool);
  }
  return GQA_STATUS_OK;
}

// 2. Attention over the projected q, k, v: attn [B, T, Hq, D].
void Attend(const gqa_layer* L, const gqa_forward_args& a,
            const WorkspacePlan& plan, unsigned char* ws, int64_t slots,
            pthreadpool_t pool) {
  const gqa_layer_config& c = L->config;
  const int64_t T = a.query_len, S = a.value_len;
  const bool f16 = c.dtype == GQA_DTYPE_F16;
  const int64_t q_cols = f16 ? L->q_padded : L->q_width;
  const int64_t kv_cols = f16 ? L->kv_padded : L->kv_width;
  gqa::AttentionParams p = CoreShape(L, a.batch, T, S);
  p.q = ws + plan.q;
  p.q_stride_t = q_cols;
  p.q_stride_b = T * q_cols;
  p.q_stride_h = c.head_dim;
  p.k = ws + plan.k;
  p.v = ws + plan.v;
  p.k_stride_s = p.v_stride_s = kv_cols;
  p.k_stride_b = p.v_stride_b = S * kv_cols;
  p.k_stride_h = p.v_stride_h = c.head_dim;
  p.out = ws + plan.attn;
  p.out_stride_t = L->q_width;
  p.out_stride_b = T * L->q_width;
  p.out_stride_h = c.head_dim;
  p.scale = static_cast<float>(1.0 / sqrt(static_cast<double>(c.head_dim)));
  WireMasks(L, a, &p);
  const bool scores = a.scores != nullptr;
  switch (c.fully_masked_policy) {
    case GQA_FULLY_MASKED_ZERO:
      p.fully_masked_uniform = false;
      break;
    case GQA_FULLY_MASKED_UNIFORM:
      p.fully_masked_uniform = true;
      break;
    default:
      p.fully_masked_uniform = !(c.dropout > 0.0f || scores);
      break;
  }
  p.scores = a.scores;
  p.scores_type = f16 ? gqa::ElemType::kF16 : gqa::ElemType::kF32;
  p.apply_dropout = a.training != 0 && c.dropout > 0.0f;
  p.dropout_rate = c.dropout;
  p.keep_mask = a.dropout_keep_mask;
  p.seed = c.seed;
  gqa::RunAttention(p, ws + plan.core, slots, pool);
}

// 3. Gate and 4. output projection: out [B*T, Fq].
gqa_status Finish(const gqa_layer* L, const gqa_forward_args& a,
                  const WorkspacePlan& plan, unsigned char* ws,
                  pthreadpool_t pool) {
  const gqa_layer_config& c = L->config;
  const bool f16 = c.dtype == GQA_DTYPE_F16;
  const int64_t BT = a.batch * a.query_len;
  float* attn = reinterpret_cast<float*>(ws + plan.attn);
  if (c.use_gate) {
    ApplyGate(attn, BT, L->q_width,
              reinterpret_cast<const float*>(ws + plan.gate),
              f16 ? L->q_padded : L->q_width);
  }
  if (f16) {
    float* out32 = reinterpret_cast<float*>(ws + plan.out32);
    gqa::DenseF16Params d;
    d.a = attn;
    d.lda = L->q_width;
    d.k = L->q_width;
    d.w = L->w_output;
    d.n_padded = L->out_padded;
    d.bias = c.use_bias ? L->b_output : nullptr;
    d.c = out32;
    d.ldc = L->out_padded;
    d.m = BT;
    gqa::RunDenseF16(d, pool);
    uint16_t* out = static_cast<uint16_t*>(a.output);
    for (int64_t r = 0; r < BT; ++r) {
      gqa::ConvertF32ToF16(out32 + r * L->out_padded,
                           out + r * c.query_features,
                           static_cast<size_t>(c.query_features));
    }
    return GQA_STATUS_OK;
  }
  std::lock_guard<std::mutex> lock(L->mu_output);  // see gqa_layer
  const xnn_status xs = xnn_setup_fully_connected_nc_f32(
      L->op_output, static_cast<size_t>(BT), attn,
      static_cast<float*>(a.output), pool);
  if (xs != xnn_status_success ||
      xnn_run_operator(L->op_output, pool) != xnn_status_success) {
    return Fail(GQA_STATUS_BACKEND_FAILURE, "XNNPACK output projection failed");
  }
  return GQA_STATUS_OK;
}

gqa_status CheckCacheMatches(const gqa_layer* L, const gqa_kv_cache& cache) {
  if (cache.kv_heads != L->config.num_key_value_heads ||
      cache.head_dim != L->config.head_dim) {
    return Fail(GQA_STATUS_SHAPE_MISMATCH,
                "cache has Hkv=%lld D=%lld, the layer Hkv=%lld D=%lld",
                static_cast<long long>(cache.kv_heads),
                static_cast<long long>(cache.head_dim),
                static_cast<long long>(L->config.num_key_value_heads),
                static_cast<long long>(L->config.head_dim));
  }
  return GQA_STATUS_OK;
}

gqa_kv_attend_params AttendParams(const gqa_layer* L, int64_t T, const void* q,
                                  void* out) {
  gqa_kv_attend_params ap;
  memset(&ap, 0, sizeof(ap));
  ap.q_len = T;
  ap.q_heads = L->config.num_query_heads;
  ap.q = q;
  ap.q_dtype = GQA_DTYPE_F32;
  ap.out = out;
  ap.out_dtype = GQA_DTYPE_F32;
  ap.sliding_window = L->config.sliding_window;
  // Causal rows always see their own token, so no row is ever fully masked.
  ap.fully_masked_policy = GQA_FULLY_MASKED_UNIFORM;
  return ap;
}

// Projection regions for T new tokens and the cache-attend core region.
bool PlanCachedWorkspace(const gqa_layer* L, const gqa_kv_cache& cache,
                         int64_t T, int64_t slots, WorkspacePlan* plan) {
  if (!PlanWorkspace(L, cache.batch, T, T, CoreShape(L, cache.batch, T, T), 0,
                     plan)) {
    return false;
  }
  const gqa_kv_attend_params ap = AttendParams(L, T, nullptr, nullptr);
  const int64_t attend = gqa::AttendWorkspaceBytes(cache, ap, slots);
  int64_t total = 0;
  if (attend < 0 || !CheckedAdd(plan->core, attend, &total) ||
      !FitsSizeT(total)) {
    return false;
  }
  // The extra-slot arithmetic of CheckWorkspace uses the attend slot size.
  plan->slot_bytes = gqa::AttendSlotBytes(cache, ap);
  plan->total = total;
  return true;
}

// The start of both forwards: the workspace check, then the projections.
gqa_status CheckAndProject(const gqa_layer* L, const gqa_forward_args& a,
                           const WorkspacePlan& plan, void* workspace,
                           size_t workspace_size, pthreadpool_t pool,
                           int64_t* slots) {
  const gqa_status s =
      CheckWorkspace(plan, workspace, workspace_size, pool, slots);
  if (s != GQA_STATUS_OK) return s;
  return Project(L, a, plan, static_cast<unsigned char*>(workspace), pool);
}

}  // namespace

extern "C" {

void gqa_layer_config_init(gqa_layer_config* config, int64_t head_dim,
                           int64_t num_query_heads, int64_t num_key_value_heads,
                           int64_t query_features, int64_t value_features) {
  if (config == nullptr) return;
  memset(config, 0, sizeof(*config));
  config->head_dim = head_dim;
  config->num_query_heads = num_query_heads;
  config->num_key_value_heads = num_key_value_heads;
  config->query_features = query_features;
  config->key_features = value_features;
  config->value_features = value_features;
  config->use_bias = 1;
  config->fully_masked_policy = GQA_FULLY_MASKED_KERAS;
  config->dtype = GQA_DTYPE_F32;
}

gqa_status gqa_layer_create(const gqa_layer_config* config,
                            const gqa_layer_weights* weights,
                            gqa_layer_t* layer_out) {
  if (!config) return Fail(GQA_STATUS_NULL_POINTER, "config is NULL");
  if (!weights) return Fail(GQA_STATUS_NULL_POINTER, "weights is NULL");
  if (!layer_out) return Fail(GQA_STATUS_NULL_POINTER, "layer_out is NULL");
  gqa_status s = ValidateConfig(*config);
  if (s != GQA_STATUS_OK) return s;
  if ((s = ValidateWeights(*config, *weights)) != GQA_STATUS_OK) return s;
  gqa_layer* L = new (std::nothrow) gqa_layer();
  if (!L) return Fail(GQA_STATUS_OUT_OF_MEMORY, "out of memory");
  L->config = *config;
  L->q_width = config->num_query_heads * config->head_dim;
  L->kv_width = config->num_key_value_heads * config->head_dim;
  s = config->dtype == GQA_DTYPE_F16 ? CreateF16(L, *weights)
                                     : CreateF32(L, *weights);
  if (s != GQA_STATUS_OK) {
    delete L;
    return s;
  }
  *layer_out = L;
  return GQA_STATUS_OK;
}

void gqa_layer_destroy(gqa_layer_t layer) { delete layer; }

gqa_status gqa_layer_workspace_size(gqa_layer_t layer, int64_t batch,
                                    int64_t query_len, int64_t value_len,
                                    int64_t max_threads, size_t* size_out) {
  if (!layer) return Fail(GQA_STATUS_NULL_POINTER, "layer is NULL");
  if (!size_out) return Fail(GQA_STATUS_NULL_POINTER, "size_out is NULL");
  gqa_status s = ValidateShape(layer, batch, query_len, value_len);
  if (s != GQA_STATUS_OK) return s;
  if (max_threads <= 0) {
    return Fail(GQA_STATUS_INVALID_SIZE, "max_threads must be > 0, got %lld",
                static_cast<long long>(max_threads));
  }
  WorkspacePlan plan;
  if (!PlanWorkspace(layer, batch, query_len, value_len,
                     CoreShape(layer, batch, query_len, value_len), max_threads,
                     &plan)) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW, "workspace size overflows");
  }
  *size_out = static_cast<size_t>(plan.total);
  return GQA_STATUS_OK;
}

gqa_status gqa_layer_forward(gqa_layer_t L, const gqa_forward_args* args,
                             void* workspace, size_t workspace_size,
                             pthreadpool_t pool) {
  gqa_status s = ValidateForward(L, args);
  if (s != GQA_STATUS_OK) return s;
  const gqa_forward_args& a = *args;
  const int64_t B = a.batch, T = a.query_len, S = a.value_len;
  WorkspacePlan plan;
  if (!PlanWorkspace(L, B, T, S, CoreShape(L, B, T, S), 1, &plan)) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW, "workspace size overflows");
  }
  int64_t slots = 0;
  if ((s = CheckAndProject(L, a, plan, workspace, workspace_size, pool,
                           &slots)) != GQA_STATUS_OK) {
    return s;
  }
  unsigned char* ws = static_cast<unsigned char*>(workspace);
  Attend(L, a, plan, ws, slots, pool);
  return Finish(L, a, plan, ws, pool);
}

gqa_status gqa_layer_cached_workspace_size(gqa_layer_t layer,
                                           const gqa_kv_cache* cache,
                                           int64_t new_tokens,
                                           int64_t max_threads,
                                           size_t* size_out) {
  if (!layer) return Fail(GQA_STATUS_NULL_POINTER, "layer is NULL");
  if (!size_out) return Fail(GQA_STATUS_NULL_POINTER, "size_out is NULL");
  if (new_tokens <= 0 || max_threads <= 0) {
    return Fail(GQA_STATUS_INVALID_SIZE,
                "new_tokens and max_threads must be > 0");
  }
  gqa_status s = gqa::ValidateCache(cache);
  if (s != GQA_STATUS_OK) return s;
  if ((s = CheckCacheMatches(layer, *cache)) != GQA_STATUS_OK) return s;
  // The cached forward projects [B, new_tokens] as query, key and value.
  s = ValidateShape(layer, cache->batch, new_tokens, new_tokens);
  if (s != GQA_STATUS_OK) return s;
  WorkspacePlan plan;
  if (!PlanCachedWorkspace(layer, *cache, new_tokens, max_threads, &plan)) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW, "workspace size overflows");
  }
  *size_out = static_cast<size_t>(plan.total);
  return GQA_STATUS_OK;
}

gqa_status gqa_layer_forward_cached(gqa_layer_t L, const gqa_forward_args* args,
                                    gqa_kv_cache* cache, void* workspace,
                                    size_t workspace_size, pthreadpool_t pool) {
  gqa_status s = ValidateForward(L, args);
  if (s != GQA_STATUS_OK) return s;
  const gqa_forward_args& a = *args;
  if (a.value_len != a.query_len) {
    return Fail(
        GQA_STATUS_SHAPE_MISMATCH,
        "with a KV cache, value (and key) carry the same %lld new tokens as "
        "the query (got value_len %lld)",
        static_cast<long long>(a.query_len),
        static_cast<long long>(a.value_len));
  }
  if (a.attention_mask || a.query_mask || a.value_mask || a.key_mask ||
      a.scores || a.training) {
    return Fail(
        GQA_STATUS_INVALID_ARGUMENT,
        "a cached forward is causal inference: masks, scores and training "
        "are not taken");
  }
  if ((s = gqa::ValidateCache(cache)) != GQA_STATUS_OK) return s;
  if ((s = CheckCacheMatches(L, *cache)) != GQA_STATUS_OK) return s;
  if (cache->batch != a.batch) {
    return Fail(
        GQA_STATUS_SHAPE_MISMATCH, "cache batch %lld != call batch %lld",
        static_cast<long long>(cache->batch), static_cast<long long>(a.batch));
  }
  const int64_t T = a.query_len;
  // The append must fit before anything is written.
  static const float kProbe[1] = {0.0f};
  if ((s = gqa::ValidateAppend(cache, T, nullptr, kProbe, kProbe,
                               GQA_DTYPE_F32)) != GQA_STATUS_OK) {
    return s;
  }
  const gqa_kv_attend_params attend = AttendParams(L, T, nullptr, nullptr);
  if (cache->ring &&
      !RingWindowFits(attend.sliding_window, T, cache->capacity)) {
    return Fail(
        GQA_STATUS_INVALID_ARGUMENT,
        "a ring cache of %lld slots needs the layer's sliding_window W with "
        "W + T - 1 <= %lld",
        static_cast<long long>(cache->capacity),
        static_cast<long long>(cache->capacity));
  }
  WorkspacePlan plan;
  if (!PlanCachedWorkspace(L, *cache, T, 1, &plan)) {
    return Fail(GQA_STATUS_SIZE_OVERFLOW, "workspace size overflows");
  }
  int64_t slots = 0;
  if ((s = CheckAndProject(L, a, plan, workspace, workspace_size, pool,
                           &slots)) != GQA_STATUS_OK) {
    return s;
  }
  unsigned char* ws = static_cast<unsigned char*>(workspace);
  // Append the new tokens' k and v, then attend the cache.
  const bool f16 = L->config.dtype == GQA_DTYPE_F16;
  const int64_t kv_cols = f16 ? L->kv_padded : L->kv_width;
  gqa::AppendRows(cache, T, nullptr, ws + plan.k, ws + plan.v, GQA_DTYPE_F32,
                  kv_cols);
  const int64_t q_cols = f16 ? L->q_padded : L->q_width;
  const gqa_kv_attend_params ap =
      AttendParams(L, T, ws + plan.q, ws + plan.attn);
  gqa::RunAttendValidated(*cache, ap, q_cols, ws + plan.core, slots, pool);
  return Finish(L, a, plan, ws, pool);
}

}  // extern "C"
