// Regression tests of issue 10's hostile inputs: each reproducer returns its
// status and writes nothing outside (or inside) the caller's buffers; huge
// windows act as none; aliasing is rejected; sizes never wrap.
#include <string.h>

#include <vector>

#include "doctest/doctest.h"
#include "gqa/attention.h"
#include "gqa/gqa.hpp"
#include "gqa/kv_cache.h"
#include "src/half.h"
#include "tests/layer_case.h"

namespace {

constexpr int64_t kMax = INT64_MAX;
constexpr int64_t kP24 = int64_t{1} << 24;

// A small f32 linear or ring cache with sentinel-filled storage.
struct Cache {
  int64_t B = 1, C = 4, H = 1, D = 4;
  std::vector<float> k, v;
  std::vector<int64_t> lengths;
  gqa_kv_cache c{};
  Cache(int64_t capacity, int64_t filled, bool ring) : C(capacity) {
    k.assign(B * C * H * D, 9.0f);
    v.assign(B * C * H * D, 9.0f);
    lengths.assign(B, filled);
    c = gqa_kv_cache{B,
                     C,
                     H,
                     D,
                     GQA_DTYPE_F32,
                     ring ? 1 : 0,
                     k.data(),
                     v.data(),
                     lengths.data(),
                     nullptr};
    // Written slots hold small values, the rest stays 9.
    for (int64_t j = 0; j < filled && j < C; ++j) {
      for (int64_t d = 0; d < D; ++d) {
        k[j * D + d] = 0.1f * static_cast<float>(j + d);
        v[j * D + d] = static_cast<float>(j + 1);
      }
    }
  }
  std::vector<float> Snapshot() const {
    std::vector<float> s = k;
    s.insert(s.end(), v.begin(), v.end());
    for (int64_t l : lengths) s.push_back(static_cast<float>(l));
    return s;
  }
};

// Attends T queries of Hq heads; out filled with 7 first.
gqa_status Attend(const Cache& cache, int64_t T, int64_t window,
                  std::vector<float>* out, const float* q = nullptr,
                  float* out_ptr = nullptr) {
  std::vector<float> qs(T * 2 * cache.D, 0.3f);
  out->assign(T * 2 * cache.D, 7.0f);
  gqa_kv_attend_params a{};
  a.q_len = T;
  a.q_heads = 2;
  a.q = q ? q : qs.data();
  a.out = out_ptr ? out_ptr : out->data();
  a.sliding_window = window;
  size_t bytes = 0;
  gqa_status s = gqa_kv_cache_attend_workspace_size(&cache.c, &a, 1, &bytes);
  if (s != GQA_STATUS_OK) return s;
  gqa::Workspace ws(bytes);
  return gqa_kv_cache_attend(&cache.c, &a, ws.data(), ws.size(), nullptr);
}

TEST_CASE("row 1/13: an append of INT64_MAX tokens is refused") {
  Cache cache(4, 1, false);
  const std::vector<float> before = cache.Snapshot();
  std::vector<float> src(64, 1.0f);
  CHECK(gqa_kv_cache_append(&cache.c, kMax, nullptr, src.data(), src.data(),
                            GQA_DTYPE_F32) != GQA_STATUS_OK);
  // Small counts, hostile new_tokens: the source indexing would overflow.
  const int64_t counts[1] = {1};
  CHECK(gqa_kv_cache_append(&cache.c, kMax / 2, counts, src.data(), src.data(),
                            GQA_DTYPE_F32) == GQA_STATUS_SIZE_OVERFLOW);
  CHECK(gqa_kv_cache_append(&cache.c, kMax, nullptr, src.data(), src.data(),
                            GQA_DTYPE_F32) == GQA_STATUS_SIZE_OVERFLOW);
  CHECK(cache.Snapshot() == before);
  // A ring: n near the position limit.
  Cache ring(4, 3, true);
  CHECK(gqa_kv_cache_append(&ring.c, kMax - 1, nullptr, src.data(), src.data(),
                            GQA_DTYPE_F32) != GQA_STATUS_OK);
  ring.lengths[0] = kP24 - 1;
  CHECK(gqa_kv_cache_append(&ring.c, 2, nullptr, src.data(), src.data(),
                            GQA_DTYPE_F32) == GQA_STATUS_CACHE_OVERFLOW);
}

TEST_CASE("row 2: weight sizes of 2^56 features are refused (f16 and f32)") {
  std::vector<uint16_t> w(64, 0);
  gqa_layer_weights weights{};
  weights.query_kernel = weights.key_kernel = weights.value_kernel =
      weights.output_kernel = w.data();
  for (int32_t dtype : {GQA_DTYPE_F16, GQA_DTYPE_F32}) {
    for (int which = 0; which < 3; ++which) {
      gqa_layer_config c;
      gqa_layer_config_init(&c, 4, 2, 1, 8, 8);
      c.dtype = dtype;
      c.use_bias = 0;
      const int64_t huge = int64_t{1} << 56;
      if (which == 0) c.key_features = c.value_features = huge;
      if (which == 1) c.query_features = huge;
      if (which == 2) c.head_dim = huge;
      gqa_layer_t layer = nullptr;
      CHECK(gqa_layer_create(&c, &weights, &layer) == GQA_STATUS_SIZE_OVERFLOW);
      CHECK(layer == nullptr);
    }
  }
}

// A small f32 layer for the forward rows.
struct Layer {
  static constexpr int64_t kD = 4, kHq = 2, kHkv = 1, kF = 8;
  std::vector<float> wq = std::vector<float>(kF * kHq * kD, 0.1f);
  std::vector<float> wkv = std::vector<float>(kF * kHkv * kD, 0.2f);
  std::vector<float> wo = std::vector<float>(kHq * kD * kF, 0.1f);
  gqa::Layer layer;
  explicit Layer(int64_t window) {
    gqa_layer_config c;
    gqa_layer_config_init(&c, kD, kHq, kHkv, kF, kF);
    c.use_bias = 0;
    c.sliding_window = window;
    gqa_layer_weights w{};
    w.query_kernel = wq.data();
    w.key_kernel = w.value_kernel = wkv.data();
    w.output_kernel = wo.data();
    REQUIRE(gqa::Layer::Create(c, w, &layer).ok());
  }
  std::vector<float> Forward(int64_t T, std::vector<float>* query) {
    query->resize(T * kF);
    for (size_t i = 0; i < query->size(); ++i) {
      (*query)[i] = static_cast<float>(i % 7) * 0.25f - 0.7f;
    }
    std::vector<float> out(T * kF, 7.0f);
    gqa_forward_args a{};
    a.batch = 1;
    a.query_len = a.value_len = T;
    a.query = a.value = query->data();
    a.output = out.data();
    a.use_causal_mask = 1;
    size_t bytes = 0;
    REQUIRE(layer.WorkspaceSize(1, T, T, &bytes).ok());
    gqa::Workspace ws(bytes);
    REQUIRE(layer.Forward(a, ws).ok());
    return out;
  }
};

TEST_CASE("row 4: sliding_window >= 2^24 is no window; the ring rule holds") {
  std::vector<float> q;
  const std::vector<float> none = Layer(0).Forward(24, &q);
  CHECK(Layer(kMax).Forward(24, &q) == none);
  CHECK(Layer(kP24).Forward(24, &q) == none);
  CHECK(Layer(4).Forward(24, &q) != none);
  // Linear cache: a huge window equals none, and stale slots are unread.
  Cache linear(8, 5, false);
  std::vector<float> a, b;
  REQUIRE(Attend(linear, 2, 0, &a) == GQA_STATUS_OK);
  REQUIRE(Attend(linear, 2, kMax, &b) == GQA_STATUS_OK);
  CHECK(a == b);
  for (float x : a) CHECK(x < 6.0f);  // mean of values 1..5, never 9
  // Ring of 8, W = INT64_MAX, T = 2: refused (W + T - 1 overflowed).
  Cache ring(8, 8, true);
  const std::vector<float> before = ring.Snapshot();
  CHECK(Attend(ring, 2, kMax, &a) == GQA_STATUS_INVALID_ARGUMENT);
  CHECK(Attend(ring, 2, kMax - 1, &a) == GQA_STATUS_INVALID_ARGUMENT);
  CHECK(Attend(ring, 2, 8, &a) == GQA_STATUS_INVALID_ARGUMENT);
  for (float x : a) CHECK(x == 7.0f);
  CHECK(Attend(ring, 2, 7, &a) == GQA_STATUS_OK);
  CHECK(ring.Snapshot() == before);
}

TEST_CASE("row 6: size queries fail instead of wrapping") {
  Cache cache(4, 2, false);
  gqa_kv_attend_params a{};
  a.q_len = 1;
  a.q_heads = 2;
  size_t bytes = 0;
  const int64_t huge_threads = int64_t{1} << 62;
  CHECK(gqa_kv_cache_attend_workspace_size(&cache.c, &a, huge_threads,
                                           &bytes) == GQA_STATUS_SIZE_OVERFLOW);
  Layer layer(0);
  CHECK(gqa_layer_workspace_size(layer.layer.handle(), 1, 4, 4, huge_threads,
                                 &bytes) == GQA_STATUS_SIZE_OVERFLOW);
  gqa_kv_cache c = cache.c;
  c.head_dim = Layer::kD;
  CHECK(gqa_layer_cached_workspace_size(layer.layer.handle(), &c, 1,
                                        huge_threads,
                                        &bytes) == GQA_STATUS_SIZE_OVERFLOW);
  gqa_attention_params p;
  gqa_attention_params_init(&p);
  p.batch = p.q_len = p.kv_len = 1;
  p.q_heads = p.kv_heads = 1;
  p.head_dim = int64_t{1} << 50;  // huge D
  CHECK(gqa_attention_workspace_size(&p, 1, &bytes) ==
        GQA_STATUS_SIZE_OVERFLOW);
  p.head_dim = int64_t{1} << 30;
  p.q_heads = p.kv_heads = int64_t{1} << 30;  // huge Hq * D
  CHECK(gqa_attention_workspace_size(&p, 1, &bytes) ==
        GQA_STATUS_SIZE_OVERFLOW);
  p.head_dim = 8;
  p.q_heads = p.kv_heads = 2;
  CHECK(gqa_attention_workspace_size(&p, huge_threads, &bytes) ==
        GQA_STATUS_SIZE_OVERFLOW);
}

TEST_CASE("row 7: the layer refuses positions past 2^24") {
  Layer layer(4);
  std::vector<float> x(64, 0.5f), out(64, 7.0f);
  gqa_forward_args a{};
  a.batch = 1;
  a.query_len = a.value_len = kP24 + 8;
  a.query = a.value = x.data();
  a.output = out.data();
  a.use_causal_mask = 1;
  gqa::Workspace ws(1 << 16);
  CHECK(layer.layer.Forward(a, ws).code() == GQA_STATUS_SIZE_OVERFLOW);
  for (float o : out) CHECK(o == 7.0f);
}

TEST_CASE("row 7: the layer's size queries apply a forward's shape limits") {
  // Fuzz finding: gqa_layer_workspace_size planned the core for any shape
  // (UBSan: signed overflow in the decode plan for a batch whose query
  // [B, 1, 8] has more than 2^48 elements).
  Layer layer(0);
  size_t bytes = 0;
  const int64_t big = int64_t{1} << 46;
  CHECK(gqa_layer_workspace_size(layer.layer.handle(), big, 1, 1, 1, &bytes) ==
        GQA_STATUS_SIZE_OVERFLOW);
  CHECK(gqa_layer_workspace_size(layer.layer.handle(), 1, kP24 + 1, 1, 1,
                                 &bytes) == GQA_STATUS_SIZE_OVERFLOW);
  CHECK(gqa_layer_workspace_size(layer.layer.handle(), 1, 1, big, 1, &bytes) ==
        GQA_STATUS_SIZE_OVERFLOW);
  CHECK(gqa_layer_workspace_size(layer.layer.handle(), 0, 1, 1, 1, &bytes) ==
        GQA_STATUS_INVALID_SIZE);
  Cache cache(4, 2, false);
  gqa_kv_cache c = cache.c;
  c.head_dim = Layer::kD;
  CHECK(gqa_layer_cached_workspace_size(layer.layer.handle(), &c, big, 1,
                                        &bytes) == GQA_STATUS_SIZE_OVERFLOW);
  CHECK(gqa_layer_workspace_size(layer.layer.handle(), 1, 4, 4, 1, &bytes) ==
        GQA_STATUS_OK);
}

// The core on a tiny case with one field broken by `edit`.
template <typename Edit>
gqa_status Core(Edit edit, std::vector<float>* out) {
  static std::vector<float> q(64, 0.5f), k(64, 0.25f), v(64, 1.0f);
  static std::vector<uint8_t> mask(64, 1);
  out->assign(64, 7.0f);
  gqa_attention_params p;
  gqa_attention_params_init(&p);
  p.batch = 1;
  p.q_len = 2;
  p.kv_len = 3;
  p.q_heads = p.kv_heads = 1;
  p.head_dim = 4;
  p.q = q.data();
  p.k = k.data();
  p.v = v.data();
  p.out = out->data();
  edit(&p);
  size_t bytes = 0;
  gqa_status s = gqa_attention_workspace_size(&p, 1, &bytes);
  if (s != GQA_STATUS_OK) return s;
  gqa::Workspace ws(bytes);
  return gqa_attention(&p, ws.data(), ws.size(), nullptr);
}

TEST_CASE("rows 8-10: mask strides, default-stride overflow, aliasing") {
  std::vector<float> out;
  static std::vector<uint8_t> mask(64, 1);
  CHECK(Core([](gqa_attention_params*) {}, &out) == GQA_STATUS_OK);
  CHECK(Core(
            [](gqa_attention_params* p) {
              p->mask = mask.data();
              p->mask_stride_key = int64_t{1} << 62;
            },
            &out) == GQA_STATUS_SIZE_OVERFLOW);
  CHECK(Core(
            [](gqa_attention_params* p) {
              p->mask = mask.data();
              p->mask_stride_query = kMax / 2;
            },
            &out) == GQA_STATUS_SIZE_OVERFLOW);
  // A huge stride on an axis of one element (S = 1): still refused, as the
  // kernels form byte strides from it (fuzz finding: UBSan overflow).
  CHECK(Core(
            [](gqa_attention_params* p) {
              p->kv_len = 1;
              p->v_stride_batch = 16, p->v_stride_head = 4;
              p->v_stride_token = int64_t{1} << 62;
            },
            &out) == GQA_STATUS_SIZE_OVERFLOW);
  CHECK(Core(
            [](gqa_attention_params* p) {
              p->kv_len = 1;
              p->mask = mask.data();
              p->mask_stride_key = int64_t{1} << 62;
            },
            &out) == GQA_STATUS_SIZE_OVERFLOW);
  for (float o : out) CHECK(o == 7.0f);
  // Row 9: Hq = 12, D = 2^60 fails as an overflow, not "strides >= 0".
  CHECK(Core(
            [](gqa_attention_params* p) {
              p->q_heads = 12;
              p->kv_heads = 1;
              p->head_dim = int64_t{1} << 60;
            },
            &out) == GQA_STATUS_SIZE_OVERFLOW);
  // Row 10: out rows overlapping each other, out == q, out == k, out over v.
  CHECK(Core(
            [](gqa_attention_params* p) {
              p->out_stride_token = 0, p->out_stride_batch = 8,
              p->out_stride_head = 4;
            },
            &out) == GQA_STATUS_INVALID_ARGUMENT);
  CHECK(Core(
            [](gqa_attention_params* p) {
              p->out_stride_token = 2, p->out_stride_batch = 8,
              p->out_stride_head = 4;
            },
            &out) == GQA_STATUS_INVALID_ARGUMENT);
  CHECK(Core([](gqa_attention_params* p) { p->out = const_cast<void*>(p->q); },
             &out) == GQA_STATUS_INVALID_ARGUMENT);
  CHECK(Core([](gqa_attention_params* p) { p->out = const_cast<void*>(p->k); },
             &out) == GQA_STATUS_INVALID_ARGUMENT);
  CHECK(Core(
            [](gqa_attention_params* p) {
              p->out = static_cast<float*>(const_cast<void*>(p->v)) + 3;
            },
            &out) == GQA_STATUS_INVALID_ARGUMENT);
  for (float o : out) CHECK(o == 7.0f);
  // Head-major out is a valid non-overlapping view.
  CHECK(Core(
            [](gqa_attention_params* p) {
              p->out_stride_token = 4, p->out_stride_batch = 8,
              p->out_stride_head = 8;
            },
            &out) == GQA_STATUS_OK);
  // Cache attend: out == q, out over the cache; append from the cache.
  Cache cache(4, 2, false);
  std::vector<float> res, q(16, 0.5f);
  CHECK(Attend(cache, 1, 0, &res, q.data(), q.data()) ==
        GQA_STATUS_INVALID_ARGUMENT);
  CHECK(Attend(cache, 1, 0, &res, nullptr, cache.v.data()) ==
        GQA_STATUS_INVALID_ARGUMENT);
  const std::vector<float> before = cache.Snapshot();
  CHECK(gqa_kv_cache_append(&cache.c, 1, nullptr, cache.k.data(), q.data(),
                            GQA_DTYPE_F32) == GQA_STATUS_INVALID_ARGUMENT);
  CHECK(cache.Snapshot() == before);
  // Layer: output == query.
  Layer layer(0);
  std::vector<float> x(32, 0.5f);
  gqa_forward_args a{};
  a.batch = 1;
  a.query_len = a.value_len = 4;
  a.query = a.value = x.data();
  a.output = x.data();
  gqa::Workspace ws(1 << 16);
  CHECK(layer.layer.Forward(a, ws).code() == GQA_STATUS_INVALID_ARGUMENT);
}

TEST_CASE("row 12: the core workspace is the largest from kv_len 8192 on") {
  gqa_attention_params p;
  gqa_attention_params_init(&p);
  p.batch = 1;
  p.q_len = 1;
  p.q_heads = 8;
  p.kv_heads = 2;
  p.head_dim = 64;
  size_t prev = 0, at8192 = 0;
  for (int64_t S : {1, 100, 512, 513, 4096, 8192, 8193, 20000, 1 << 20}) {
    p.kv_len = S;
    size_t bytes = 0;
    REQUIRE(gqa_attention_workspace_size(&p, 1, &bytes) == GQA_STATUS_OK);
    if (S <= 8192) CHECK(bytes >= prev);  // grows up to 8192 keys
    if (S == 8192) at8192 = bytes;
    if (S > 8192) CHECK(bytes <= at8192);  // never more beyond
    prev = bytes;
  }
}

TEST_CASE("f16 Inf and NaN convert exactly on every target (fuzz finding)") {
  // 0x7e00 NaN, 0x7c00 +Inf, 0xfc00 -Inf, 0x7d01 signalling-style NaN, then
  // normal and subnormal values; 32 of them cover every vector width.
  std::vector<uint16_t> src(32);
  const uint16_t special[] = {0x7e00, 0x7c00, 0xfc00, 0x7d01, 0x3c00, 0x0001};
  for (size_t i = 0; i < src.size(); ++i) src[i] = special[i % 6];
  gqa::test::ForEachTarget([&](int64_t) {
    std::vector<float> k(32, 9.0f), v(32, 9.0f);
    std::vector<int64_t> lengths(1, 0);
    gqa_kv_cache c{
        1,      4, 1, 8, GQA_DTYPE_F32, 0, k.data(), v.data(), lengths.data(),
        nullptr};
    REQUIRE(gqa_kv_cache_append(&c, 4, nullptr, src.data(), src.data(),
                                GQA_DTYPE_F16) == GQA_STATUS_OK);
    for (size_t i = 0; i < k.size(); ++i) {
      const float want = gqa::HalfToFloat(src[i]);
      CAPTURE(i);
      if (want != want) {
        CHECK(k[i] != k[i]);
      } else {
        CHECK(k[i] == want);
      }
    }
  });
}

}  // namespace
