// Creating the layer: validates the config and weights and builds the five
// projections (XNNPACK operators for f32; f16 weights packed in one block of
// storage, carved by the same code that sizes it).
#include <stdint.h>
#include <string.h>
#include <xnnpack.h>

#include <new>

#include "gqa/gqa.h"
#include "src/layer_internal.h"
#include "src/status.h"

namespace {

using gqa::CheckedProduct;
using gqa::CheckedRoundUp;
using gqa::Fail;
using gqa::FitsSizeT;
using gqa::kMaxElements;

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

// The five projections in storage order; gate only with use_gate.
struct Spec {
  gqa::Projection* proj;
  int64_t in, out;
  const void* kernel;
  const void* bias;
  const char* name;
};
int Specs(gqa_layer* L, const gqa_layer_weights& w, Spec specs[5]) {
  const gqa_layer_config& c = L->config;
  const bool bias = c.use_bias != 0;
  int n = 0;
  specs[n++] = {&L->query,
                c.query_features,
                L->q_width,
                w.query_kernel,
                bias ? w.query_bias : nullptr,
                "query"};
  specs[n++] = {&L->key,
                c.key_features,
                L->kv_width,
                w.key_kernel,
                bias ? w.key_bias : nullptr,
                "key"};
  specs[n++] = {&L->value,
                c.value_features,
                L->kv_width,
                w.value_kernel,
                bias ? w.value_bias : nullptr,
                "value"};
  specs[n++] = {&L->output,
                L->q_width,
                c.query_features,
                w.output_kernel,
                bias ? w.output_bias : nullptr,
                "attention_output"};
  if (c.use_gate) {
    specs[n++] = {&L->gate,
                  c.query_features,
                  L->q_width,
                  w.gate_kernel,
                  bias ? w.gate_bias : nullptr,
                  "gate"};
  }
  return n;
}

gqa_status CreateF16(gqa_layer* L, const gqa_layer_weights& w) {
  Spec specs[5];
  const int n = Specs(L, w, specs);
  // Carving at a null base sizes the storage; each term is bounded by
  // ValidateConfig, the sum must fit a size_t.
  int64_t bytes = 0;
  for (int i = 0; i < n; ++i) {
    bytes = specs[i].proj->CarveF16(specs[i].in, specs[i].out, nullptr, bytes);
  }
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
  int64_t at = 0;
  for (int i = 0; i < n; ++i) {
    at = specs[i].proj->CarveF16(specs[i].in, specs[i].out, L->storage, at);
    specs[i].proj->PackF16(specs[i].kernel, specs[i].bias);
  }
  return GQA_STATUS_OK;
}

gqa_status CreateF32(gqa_layer* L, const gqa_layer_weights& w) {
  const xnn_status init = xnn_initialize(nullptr);
  if (init == xnn_status_unsupported_hardware) {
    return Fail(GQA_STATUS_UNSUPPORTED_HARDWARE,
                "XNNPACK does not support this CPU");
  }
  if (init != xnn_status_success) {
    return Fail(GQA_STATUS_BACKEND_FAILURE, "xnn_initialize failed (status %d)",
                static_cast<int>(init));
  }
  Spec specs[5];
  const int n = Specs(L, w, specs);
  for (int i = 0; i < n; ++i) {
    const gqa_status s = specs[i].proj->CreateF32(
        specs[i].in, specs[i].out, static_cast<const float*>(specs[i].kernel),
        static_cast<const float*>(specs[i].bias), specs[i].name);
    if (s != GQA_STATUS_OK) return s;
  }
  return GQA_STATUS_OK;
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
  L->f16 = config->dtype == GQA_DTYPE_F16;
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

}  // extern "C"
