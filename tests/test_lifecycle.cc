// The operator lifecycle through its debug hook: every front door
// validates once and plans the core once per call; a cached decode step
// validates its cache once and plans once (issue 11's must-show).
#include <stdint.h>
#include <string.h>

#include <cmath>
#include <vector>

#include "doctest/doctest.h"
#include "gqa/attention.h"
#include "gqa/block_cache.h"
#include "gqa/gqa.h"
#include "gqa/kv_cache.h"
#include "src/debug_hook.h"
#include "src/half.h"

namespace {

int g_plans = 0, g_cache_validations = 0;

void Count(const char* event) {
  if (strcmp(event, "plan") == 0) ++g_plans;
  if (strcmp(event, "validate_cache") == 0) ++g_cache_validations;
}

// Counts the events of what runs in its scope.
struct Counting {
  Counting() {
    g_plans = g_cache_validations = 0;
    gqa::SetDebugHook(&Count);
  }
  ~Counting() { gqa::SetDebugHook(nullptr); }
};

std::vector<float> Wave(size_t n, float s) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = s * std::sin(0.37f * i + s);
  return v;
}

void* Align64(std::vector<unsigned char>& buf, size_t bytes) {
  buf.assign(bytes + 64, 0);
  uintptr_t p = reinterpret_cast<uintptr_t>(buf.data());
  return reinterpret_cast<void*>((p + 63) / 64 * 64);
}

}  // namespace

TEST_CASE("lifecycle: gqa_attention validates and plans once per call") {
  const int64_t B = 1, T = 3, S = 40, Hq = 4, Hkv = 2, D = 16;
  const std::vector<float> q = Wave(B * T * Hq * D, 0.5f),
                           k = Wave(B * S * Hkv * D, 0.3f),
                           v = Wave(B * S * Hkv * D, 0.7f);
  std::vector<float> out(B * T * Hq * D, 0.0f);
  gqa_attention_params p;
  gqa_attention_params_init(&p);
  p.batch = B, p.q_len = T, p.kv_len = S, p.q_heads = Hq, p.kv_heads = Hkv;
  p.head_dim = D, p.q = q.data(), p.k = k.data(), p.v = v.data();
  p.out = out.data();
  size_t bytes = 0;
  std::vector<unsigned char> buf;
  {
    Counting c;
    REQUIRE(gqa_attention_workspace_size(&p, 1, &bytes) == GQA_STATUS_OK);
    CHECK(g_plans == 1);
  }
  void* ws = Align64(buf, bytes);
  Counting c;
  REQUIRE(gqa_attention(&p, ws, bytes, nullptr) == GQA_STATUS_OK);
  CHECK(g_plans == 1);
  CHECK(std::isfinite(out[0]));
}

TEST_CASE("lifecycle: a KV attend and a cached decode step plan once") {
  const int64_t D = 16, Hq = 8, Hkv = 2, F = 32, B = 2, C = 64;
  for (int32_t dtype : {GQA_DTYPE_F32, GQA_DTYPE_F16}) {
    CAPTURE(dtype);
    gqa_layer_config config;
    gqa_layer_config_init(&config, D, Hq, Hkv, F, F);
    config.dtype = dtype;
    // Weights: f32 waves, or their f16 bit patterns for an f16 layer.
    std::vector<std::vector<float>> w32 = {
        Wave(F * Hq * D, 0.2f),   Wave(Hq * D, 0.1f),
        Wave(F * Hkv * D, 0.3f),  Wave(Hkv * D, 0.1f),
        Wave(F * Hkv * D, 0.25f), Wave(Hkv * D, 0.1f),
        Wave(Hq * D * F, 0.15f),  Wave(F, 0.1f)};
    std::vector<std::vector<uint16_t>> w16(w32.size());
    std::vector<const void*> w(w32.size());
    for (size_t i = 0; i < w32.size(); ++i) {
      w16[i].resize(w32[i].size());
      for (size_t j = 0; j < w32[i].size(); ++j) {
        w16[i][j] = gqa::FloatToHalf(w32[i][j]);
      }
      w[i] = dtype == GQA_DTYPE_F16 ? static_cast<const void*>(w16[i].data())
                                    : static_cast<const void*>(w32[i].data());
    }
    gqa_layer_weights weights;
    memset(&weights, 0, sizeof(weights));
    weights.query_kernel = w[0], weights.query_bias = w[1];
    weights.key_kernel = w[2], weights.key_bias = w[3];
    weights.value_kernel = w[4], weights.value_bias = w[5];
    weights.output_kernel = w[6], weights.output_bias = w[7];
    gqa_layer_t layer = nullptr;
    REQUIRE(gqa_layer_create(&config, &weights, &layer) == GQA_STATUS_OK);

    const size_t es = dtype == GQA_DTYPE_F16 ? 2 : 4;
    std::vector<unsigned char> k(B * C * Hkv * D * es), v(k.size());
    std::vector<int64_t> lengths(B, 0);
    gqa_kv_cache cache;
    memset(&cache, 0, sizeof(cache));
    cache.batch = B, cache.capacity = C, cache.kv_heads = Hkv;
    cache.head_dim = D, cache.dtype = dtype, cache.k = k.data();
    cache.v = v.data(), cache.lengths = lengths.data();

    // Prefill 5 tokens, then decode steps of one token each.
    std::vector<unsigned char> x(B * 5 * F * es, 0), out(x.size()), buf;
    for (int64_t step = 0; step < 4; ++step) {
      const int64_t T = step == 0 ? 5 : 1;
      gqa_forward_args a;
      memset(&a, 0, sizeof(a));
      a.batch = B, a.query_len = T, a.value_len = T;
      a.query = x.data(), a.value = x.data(), a.output = out.data();
      size_t bytes = 0;
      {
        Counting c;
        REQUIRE(gqa_layer_cached_workspace_size(layer, &cache, T, 2, &bytes) ==
                GQA_STATUS_OK);
        CHECK(g_plans == 1);
        CHECK(g_cache_validations == 1);
      }
      void* ws = Align64(buf, bytes);
      Counting c;
      REQUIRE(gqa_layer_forward_cached(layer, &a, &cache, ws, bytes, nullptr) ==
              GQA_STATUS_OK);
      CHECK(g_plans == 1);
      CHECK(g_cache_validations == 1);
    }
    CHECK(lengths[0] == 8);

    // The cache API's attend: one validation, one plan.
    std::vector<float> q(B * Hq * D, 0.25f), o(q.size());
    gqa_kv_attend_params ap;
    memset(&ap, 0, sizeof(ap));
    ap.q_len = 1, ap.q_heads = Hq, ap.q = q.data(), ap.out = o.data();
    size_t bytes = 0;
    REQUIRE(gqa_kv_cache_attend_workspace_size(&cache, &ap, 1, &bytes) ==
            GQA_STATUS_OK);
    void* ws = Align64(buf, bytes);
    {
      Counting c;
      REQUIRE(gqa_kv_cache_attend(&cache, &ap, ws, bytes, nullptr) ==
              GQA_STATUS_OK);
      CHECK(g_plans == 1);
      CHECK(g_cache_validations == 1);
    }
    // The v2 cache: a cached decode step of the layer, and its attend.
    gqa_block_cache bc;
    memset(&bc, 0, sizeof(bc));
    bc.config.batch = B, bc.config.kv_heads = Hkv, bc.config.head_dim = D;
    bc.config.capacity = C, bc.config.block_tokens = 16;
    bc.config.dtype = GQA_DTYPE_Q8;
    gqa_block_cache_layout l;
    REQUIRE(gqa_block_cache_layout_of(&bc.config, &l) == GQA_STATUS_OK);
    std::vector<int32_t> table(B * l.table_columns);
    for (size_t i = 0; i < table.size(); ++i) table[i] = int32_t(i);
    std::vector<unsigned char> pool_buf;
    bc.blocks = Align64(pool_buf, table.size() * l.block_bytes);
    bc.num_blocks = int64_t(table.size());
    bc.block_table = table.data();
    lengths.assign(B, 0);
    bc.lengths = lengths.data();
    for (int64_t step = 0; step < 3; ++step) {
      gqa_forward_args a;
      memset(&a, 0, sizeof(a));
      a.batch = B, a.query_len = 1, a.value_len = 1;
      a.query = x.data(), a.value = x.data(), a.output = out.data();
      {
        Counting c;
        REQUIRE(gqa_layer_block_cached_workspace_size(layer, &bc, 1, 2,
                                                      &bytes) == GQA_STATUS_OK);
        CHECK(g_plans == 1);
        CHECK(g_cache_validations == 1);
      }
      ws = Align64(buf, bytes);
      Counting c;
      REQUIRE(gqa_layer_forward_block_cached(layer, &a, &bc, ws, bytes,
                                             nullptr) == GQA_STATUS_OK);
      CHECK(g_plans == 1);
      CHECK(g_cache_validations == 1);
    }
    REQUIRE(gqa_block_cache_attend_workspace_size(&bc, &ap, 1, &bytes) ==
            GQA_STATUS_OK);
    ws = Align64(buf, bytes);
    {
      Counting c;
      REQUIRE(gqa_block_cache_attend(&bc, &ap, ws, bytes, nullptr) ==
              GQA_STATUS_OK);
      CHECK(g_plans == 1);
      CHECK(g_cache_validations == 1);
    }
    // The plain forward too.
    gqa_forward_args a;
    memset(&a, 0, sizeof(a));
    a.batch = B, a.query_len = 5, a.value_len = 5;
    a.query = x.data(), a.value = x.data(), a.output = out.data();
    REQUIRE(gqa_layer_workspace_size(layer, B, 5, 5, 1, &bytes) ==
            GQA_STATUS_OK);
    ws = Align64(buf, bytes);
    {
      Counting c;
      REQUIRE(gqa_layer_forward(layer, &a, ws, bytes, nullptr) ==
              GQA_STATUS_OK);
      CHECK(g_plans == 1);
      CHECK(g_cache_validations == 0);
    }
    gqa_layer_destroy(layer);
  }
}
