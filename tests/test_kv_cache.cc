// KV cache: append (ragged, f16/f32, ring) and attention of the newest
// queries against a float64 reference for S from 1 to 32k+, every grouping,
// windows and ring wrap-around, thread-count determinism, errors that write
// nothing, and the layer decoded token by token equal to the full causal
// sequence.
#include <math.h>
#include <pthreadpool.h>
#include <string.h>

#include <algorithm>
#include <random>
#include <vector>

#include "doctest/doctest.h"
#include "gqa/gqa.hpp"
#include "gqa/kv_cache.h"
#include "src/reference/attention_ref.h"
#include "src/reference/f16_util.h"
#include "tests/check.h"
#include "tests/f16_kv_tol.h"
#include "tests/layer_case.h"

namespace gqa {
namespace test {
namespace {

struct KvCase {
  int64_t B = 1, Hq = 8, Hkv = 2, D = 32, capacity = 64, T = 1;
  std::vector<int64_t> total;  // tokens per batch after all appends
  bool cache16 = false, q16 = false, ring = false;
  int64_t window = 0;
  int64_t chunk = 7;  // tokens per append call (ragged per batch)
  uint64_t seed = 1;
};

struct KvRun {
  std::vector<float> out;    // [B,T,Hq,D]
  std::vector<double> want;  // reference
  gqa_status status = GQA_STATUS_OK;
};

// Appends every batch's tokens in ragged chunks, attends, and computes the
// reference over the positions the cache retains.
KvRun RunKv(const KvCase& c, int threads) {
  std::mt19937_64 rng(c.seed);
  std::uniform_real_distribution<float> u(-1.5f, 1.5f);
  const int64_t row = c.Hkv * c.D;
  int64_t max_total = 0;
  for (int64_t t : c.total) max_total = std::max(max_total, t);
  // Logical sequences [B][max_total][Hkv*D], rounded as the cache stores them.
  std::vector<float> ks(c.B * max_total * row), vs(c.B * max_total * row);
  for (float& x : ks) x = reference::RoundIf(u(rng), c.cache16);
  for (float& x : vs) x = reference::RoundIf(u(rng), c.cache16);
  const size_t e = c.cache16 ? 2 : 4;
  std::vector<unsigned char> kc(c.B * c.capacity * row * e), vc(kc.size());
  std::vector<int64_t> lengths(c.B, 0);
  gqa_kv_cache cache{c.B,
                     c.capacity,
                     c.Hkv,
                     c.D,
                     c.cache16 ? GQA_DTYPE_F16 : GQA_DTYPE_F32,
                     c.ring ? 1 : 0,
                     kc.data(),
                     vc.data(),
                     lengths.data(),
                     nullptr};
  KvRun run;
  // Ragged appends of f32 source rows.
  for (int64_t start = 0; start < max_total; start += c.chunk) {
    std::vector<float> kn(c.B * c.chunk * row, 0.0f), vn(kn.size(), 0.0f);
    std::vector<int64_t> counts(c.B);
    for (int64_t b = 0; b < c.B; ++b) {
      counts[b] = std::max<int64_t>(0, std::min(c.chunk, c.total[b] - start));
      for (int64_t i = 0; i < counts[b]; ++i) {
        memcpy(&kn[(b * c.chunk + i) * row],
               &ks[(b * max_total + start + i) * row], row * 4);
        memcpy(&vn[(b * c.chunk + i) * row],
               &vs[(b * max_total + start + i) * row], row * 4);
      }
    }
    run.status = gqa_kv_cache_append(&cache, c.chunk, counts.data(), kn.data(),
                                     vn.data(), GQA_DTYPE_F32);
    if (run.status != GQA_STATUS_OK) return run;
  }
  for (int64_t b = 0; b < c.B; ++b) REQUIRE(lengths[b] == c.total[b]);

  std::vector<float> q(c.B * c.T * c.Hq * c.D);
  for (float& x : q) x = reference::RoundIf(u(rng), c.q16);
  const std::vector<unsigned char> qraw = reference::Pack(q, c.q16);
  std::vector<float> out(q.size(), NAN);
  gqa_kv_attend_params ap;
  memset(&ap, 0, sizeof(ap));
  ap.q_len = c.T;
  ap.q_heads = c.Hq;
  ap.q = qraw.data();
  ap.q_dtype = c.q16 ? GQA_DTYPE_F16 : GQA_DTYPE_F32;
  ap.out = out.data();
  ap.out_dtype = GQA_DTYPE_F32;
  ap.sliding_window = c.window;
  size_t bytes = 0;
  run.status = gqa_kv_cache_attend_workspace_size(&cache, &ap, threads, &bytes);
  if (run.status != GQA_STATUS_OK) return run;
  Workspace ws(bytes);
  pthreadpool_t pool = threads > 1 ? pthreadpool_create(threads) : nullptr;
  run.status = gqa_kv_cache_attend(&cache, &ap, ws.data(), ws.size(), pool);
  if (pool) pthreadpool_destroy(pool);
  if (run.status != GQA_STATUS_OK) return run;
  run.out = out;

  // Reference: the cache's slots as the oracle sees them, [B, capacity,
  // Hkv, D]: a linear cache holds position j in slot j, a ring position p
  // in slot p % capacity (the newest writer wins); slots never written hold
  // 1000, which the reference must never average in. The queries are the
  // newest T positions of each batch.
  reference::AttentionCall a;
  a.batch = c.B, a.q_len = c.T, a.kv_len = c.capacity;
  a.q_heads = c.Hq, a.kv_heads = c.Hkv, a.head_dim = c.D;
  a.q = reference::ToDouble(q);
  a.k.assign(c.B * c.capacity * row, 1000.0);
  a.v.assign(a.k.size(), 1000.0);
  for (int64_t b = 0; b < c.B; ++b) {
    for (int64_t p = 0; p < c.total[b]; ++p) {
      const int64_t slot = c.ring ? p % c.capacity : p;
      for (int64_t i = 0; i < row; ++i) {
        a.k[(b * c.capacity + slot) * row + i] =
            ks[(b * max_total + p) * row + i];
        a.v[(b * c.capacity + slot) * row + i] =
            vs[(b * max_total + p) * row + i];
      }
    }
    a.position_offsets.push_back(c.total[b] - c.T);
  }
  a.scale = 1.0 / sqrt(static_cast<double>(c.D));
  a.causal = true;
  a.ring_capacity = c.ring ? c.capacity : 0;
  a.key_lengths = c.total;
  a.sliding_window = c.window;
  a.fully_masked_uniform = true;  // the default policy without scores
  run.want = reference::Attention(a).out;
  return run;
}

void CheckKv(const KvCase& c, int threads = 1) {
  const KvRun run = RunKv(c, threads);
  INFO("B" << c.B << " Hq" << c.Hq << " Hkv" << c.Hkv << " D" << c.D << " cap"
           << c.capacity << " T" << c.T << " total0 " << c.total[0] << " f16 "
           << c.cache16 << " ring " << c.ring << " window " << c.window
           << " threads " << threads);
  REQUIRE(run.status == GQA_STATUS_OK);
  const double tol = F16KvTol(c.cache16, 1e-4);
  CheckClose(run.out, run.want, tol, tol, "kv attend");
}

TEST_CASE(
    "kv cache attend matches the reference, S from 1 to 32k, every grouping") {
  ForEachTarget([](int64_t) {
    const int64_t groupings[][2] = {{8, 1}, {8, 2}, {14, 2}, {4, 4}, {12, 4}};
    uint64_t seed = 1;
    for (const auto& g : groupings) {
      for (int64_t S : {1, 2, 17, 64, 65, 511, 513, 1000}) {
        for (bool half : {false, true}) {
          KvCase c;
          c.Hq = g[0], c.Hkv = g[1], c.D = (S % 2) ? 24 : 64,
          c.capacity = S + 5;
          c.total = {S};
          c.cache16 = half, c.q16 = half && S % 3 == 0, c.seed = seed++;
          c.chunk = S > 100 ? 97 : 3;
          CheckKv(c);
        }
      }
    }
  });
  // Long caches: S >= 32k (one target; sizes halved under qemu).
  const int64_t S = TestScale() < 1 ? 16411 : 32771;
  for (bool half : {false, true}) {
    KvCase c;
    c.Hq = 4, c.Hkv = 1, c.D = 32, c.capacity = S, c.total = {S},
    c.cache16 = half;
    c.chunk = 4096;
    CheckKv(c);
  }
}

TEST_CASE("kv cache: ragged batches, several new queries, windows") {
  ForEachTarget([](int64_t) {
    for (int64_t T : {1, 2, 3, 5}) {
      KvCase c;
      c.B = 3, c.Hq = 6, c.Hkv = 2, c.D = 40, c.capacity = 300, c.T = T;
      c.total = {T + 3, 250, 129};
      c.chunk = 11;
      CheckKv(c);
      c.window = 37;
      CheckKv(c);
      c.cache16 = true;
      CheckKv(c);
    }
  });
}

TEST_CASE("kv cache: ring wrap-around with a sliding window") {
  ForEachTarget([](int64_t) {
    for (int64_t T : {1, 4}) {
      for (int64_t total : {10, 64, 65, 300, 1031}) {
        KvCase c;
        c.B = 2, c.Hq = 8, c.Hkv = 2, c.D = 16, c.capacity = 64, c.T = T,
        c.ring = true;
        c.window = 64 - T + 1;
        c.total = {total, total / 2 + T};
        c.chunk = 5;
        CheckKv(c);
        c.window = 20;
        c.cache16 = true;
        CheckKv(c);
      }
    }
  });
}

TEST_CASE("kv cache attend: bitwise identical for 1, 2, 3 and 8 threads") {
  KvCase c;
  c.B = 2, c.Hq = 8, c.Hkv = 2, c.D = 64, c.capacity = 5000,
  c.total = {4999, 3001};
  c.chunk = 1000;
  const KvRun one = RunKv(c, 1);
  REQUIRE(one.status == GQA_STATUS_OK);
  for (int threads : {2, 3, 8}) {
    const KvRun many = RunKv(c, threads);
    REQUIRE(many.status == GQA_STATUS_OK);
    CHECK(SameBits(one.out, many.out));
  }
}

TEST_CASE("kv cache errors write nothing") {
  const int64_t B = 2, cap = 8, H = 2, D = 4, row = H * D;
  std::vector<float> k(B * cap * row, 7.0f), v(k.size(), 7.0f);
  std::vector<int64_t> lengths = {6, 2};
  gqa_kv_cache cache{
      B,      cap, H, D, GQA_DTYPE_F32, 0, k.data(), v.data(), lengths.data(),
      nullptr};
  std::vector<float> kn(B * 3 * row, 1.0f), vn(kn.size(), 1.0f);
  auto unchanged = [&] {
    CHECK(lengths[0] == 6);
    CHECK(lengths[1] == 2);
    for (float x : k) CHECK(x == 7.0f);
  };
  CHECK(gqa_kv_cache_append(&cache, 3, nullptr, kn.data(), vn.data(),
                            GQA_DTYPE_F32) == GQA_STATUS_CACHE_OVERFLOW);
  CHECK(strstr(gqa_last_error_message(), "capacity") != nullptr);
  unchanged();
  const int64_t counts_bad[2] = {1, 4};
  CHECK(gqa_kv_cache_append(&cache, 3, counts_bad, kn.data(), vn.data(),
                            GQA_DTYPE_F32) == GQA_STATUS_INVALID_ARGUMENT);
  CHECK(gqa_kv_cache_append(&cache, 3, nullptr, kn.data(), vn.data(), 5) ==
        GQA_STATUS_INVALID_ENUM);
  CHECK(gqa_kv_cache_append(&cache, 3, nullptr, nullptr, vn.data(),
                            GQA_DTYPE_F32) == GQA_STATUS_NULL_POINTER);
  gqa_kv_cache bad = cache;
  bad.dtype = 3;
  CHECK(gqa_kv_cache_append(&bad, 1, nullptr, kn.data(), vn.data(),
                            GQA_DTYPE_F32) == GQA_STATUS_INVALID_ENUM);
  bad = cache, bad.head_dim = 0;
  CHECK(gqa_kv_cache_append(&bad, 1, nullptr, kn.data(), vn.data(),
                            GQA_DTYPE_F32) == GQA_STATUS_INVALID_SIZE);
  unchanged();
  // Ring: appending more than the ring at once is an overflow too.
  gqa_kv_cache ring = cache;
  ring.ring = 1;
  std::vector<float> big(B * 9 * row, 1.0f);
  CHECK(gqa_kv_cache_append(&ring, 9, nullptr, big.data(), big.data(),
                            GQA_DTYPE_F32) == GQA_STATUS_CACHE_OVERFLOW);
  unchanged();

  std::vector<float> q(B * 3 * 4 * D, 1.0f), out(q.size(), 9.0f);
  gqa_kv_attend_params ap;
  memset(&ap, 0, sizeof(ap));
  ap.q_len = 3, ap.q_heads = 4, ap.q = q.data(), ap.out = out.data();
  std::vector<unsigned char> ws(1 << 20);
  void* w = ws.data() + (64 - reinterpret_cast<uintptr_t>(ws.data()) % 64) % 64;
  CHECK(gqa_kv_cache_attend(&cache, &ap, w, 1 << 19, nullptr) ==
        GQA_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(gqa_last_error_message(), "fewer") !=
        nullptr);  // batch 1 has 2 < 3
  ap.q_len = 1;
  ap.q_heads = 3;
  CHECK(gqa_kv_cache_attend(&cache, &ap, w, 1 << 19, nullptr) ==
        GQA_STATUS_HEADS_NOT_DIVISIBLE);
  ap.q_heads = 4;
  CHECK(gqa_kv_cache_attend(&ring, &ap, w, 1 << 19, nullptr) ==
        GQA_STATUS_INVALID_ARGUMENT);
  ap.out_dtype = 4;
  CHECK(gqa_kv_cache_attend(&cache, &ap, w, 1 << 19, nullptr) ==
        GQA_STATUS_INVALID_ENUM);
  ap.out_dtype = GQA_DTYPE_F32;
  CHECK(gqa_kv_cache_attend(&cache, &ap, w, 16, nullptr) ==
        GQA_STATUS_WORKSPACE_TOO_SMALL);
  for (float x : out) CHECK(x == 9.0f);
  CHECK(gqa_kv_cache_attend(&cache, &ap, w, 1 << 19, nullptr) == GQA_STATUS_OK);
}

// The layer run token by token (and in chunks) through a KV cache equals the
// layer on the whole sequence with use_causal_mask.
void CheckLayerDecode(gqa_dtype dtype, bool cache16, bool gate, int64_t window,
                      bool ring, int64_t chunk) {
  INFO("dtype " << dtype << " cache16 " << cache16 << " gate " << gate
                << " window " << window << " ring " << ring << " chunk "
                << chunk);
  const int64_t B = 2, T = 23, F = 20, Hq = 6, Hkv = 2, D = 12;
  const bool f16 = dtype == GQA_DTYPE_F16;
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<float> u(-0.5f, 0.5f);
  auto make = [&](size_t n) {
    std::vector<float> f(n);
    for (float& x : f) x = u(rng);
    return std::make_pair(f, reference::ToHalf(f));
  };
  auto wq = make(F * Hq * D), wk = make(F * Hkv * D), wv = make(F * Hkv * D),
       wg = make(F * Hq * D), wo = make(Hq * D * F), bq = make(Hq * D),
       bk = make(Hkv * D), bv = make(Hkv * D), bg = make(Hq * D), bo = make(F),
       x = make(B * T * F);
  auto P = [&](const std::pair<std::vector<float>, std::vector<uint16_t>>& a)
      -> const void* {
    return f16 ? static_cast<const void*>(a.second.data()) : a.first.data();
  };
  gqa_layer_config cfg;
  gqa_layer_config_init(&cfg, D, Hq, Hkv, F, F);
  cfg.dtype = dtype;
  cfg.use_gate = gate;
  cfg.sliding_window = window;
  gqa_layer_weights w{P(wq), P(bq), P(wk), P(bk), P(wv),
                      P(bv), P(wg), P(bg), P(wo), P(bo)};
  Layer layer;
  REQUIRE(Layer::Create(cfg, w, &layer).ok());
  const size_t e = f16 ? 2 : 4;
  // Whole sequence, causal.
  std::vector<unsigned char> full(B * T * F * e);
  gqa_forward_args a{};
  a.batch = B, a.query_len = T, a.value_len = T;
  a.query = a.value = P(x);
  a.use_causal_mask = 1;
  a.output = full.data();
  size_t bytes = 0;
  REQUIRE(layer.WorkspaceSize(B, T, T, &bytes).ok());
  Workspace ws(bytes);
  REQUIRE(layer.Forward(a, ws).ok());
  // Token by token.
  const int64_t cap = ring ? window + chunk - 1 : 32;
  const size_t ce = cache16 ? 2 : 4;
  std::vector<unsigned char> kc(B * cap * Hkv * D * ce), vc(kc.size());
  std::vector<int64_t> lengths(B, 0);
  gqa_kv_cache cache{B,
                     cap,
                     Hkv,
                     D,
                     cache16 ? GQA_DTYPE_F16 : GQA_DTYPE_F32,
                     ring ? 1 : 0,
                     kc.data(),
                     vc.data(),
                     lengths.data(),
                     nullptr};
  // Through the C++ API (gqa::Layer::ForwardCached), as the README shows.
  REQUIRE(layer.CachedWorkspaceSize(cache, chunk, &bytes).ok());
  Workspace cws(bytes);
  std::vector<unsigned char> step_x(B * chunk * F * e),
      step_out(B * chunk * F * e);
  std::vector<float> got(B * T * F), want(B * T * F);
  for (int64_t t0 = 0; t0 < T; t0 += chunk) {
    const int64_t n = std::min(chunk, T - t0);
    for (int64_t b = 0; b < B; ++b) {
      memcpy(&step_x[b * n * F * e],
             static_cast<const unsigned char*>(P(x)) + (b * T + t0) * F * e,
             n * F * e);
    }
    gqa_forward_args s{};
    s.batch = B, s.query_len = n, s.value_len = n;
    s.query = s.value = step_x.data();
    s.output = step_out.data();
    REQUIRE(layer.ForwardCached(s, &cache, cws).ok());
    for (int64_t b = 0; b < B; ++b) {
      const std::vector<float> step =
          reference::Widen(&step_out[b * n * F * e], n * F, f16);
      std::copy(step.begin(), step.end(), got.begin() + (b * T + t0) * F);
    }
  }
  want = reference::Widen(full.data(), want.size(), f16);
  // f32 everywhere: rounding only (1e-5). An f16 cache rounds k and v to
  // binary16 (2^-11 relative), f16 outputs round again: 3e-3.
  const double tol = (f16 || cache16) ? 3e-3 : 1e-5;
  CheckClose(got, std::vector<double>(want.begin(), want.end()), tol, tol,
             "decode");
}

TEST_CASE("layer decoded token by token equals the full causal sequence") {
  for (gqa_dtype dtype : {GQA_DTYPE_F32, GQA_DTYPE_F16}) {
    for (bool cache16 : {false, true}) {
      for (int64_t chunk : {1, 3}) {
        CheckLayerDecode(dtype, cache16, false, 0, false, chunk);
        CheckLayerDecode(dtype, cache16, true, 5, false, chunk);
        CheckLayerDecode(dtype, cache16, false, 6, true, chunk);
      }
    }
  }
}

TEST_CASE("layer cached forward: errors") {
  gqa_layer_config cfg;
  gqa_layer_config_init(&cfg, 4, 2, 1, 6, 6);
  cfg.use_bias = 0;
  std::vector<float> wq(6 * 8, 0.1f), wkv(6 * 4, 0.1f), wo(8 * 6, 0.1f);
  gqa_layer_weights w{};
  w.query_kernel = wq.data(), w.key_kernel = wkv.data(),
  w.value_kernel = wkv.data();
  w.output_kernel = wo.data();
  Layer layer;
  REQUIRE(Layer::Create(cfg, w, &layer).ok());
  std::vector<float> k(2 * 4 * 4, 7.0f), v(k.size(), 7.0f);
  std::vector<int64_t> lengths = {3, 0};
  gqa_kv_cache cache{
      2,      4, 1, 4, GQA_DTYPE_F32, 0, k.data(), v.data(), lengths.data(),
      nullptr};
  std::vector<float> x(2 * 2 * 6, 1.0f), out(x.size(), 9.0f);
  gqa_forward_args a{};
  a.batch = 2, a.query_len = 2, a.value_len = 2, a.query = a.value = x.data();
  a.output = out.data();
  std::vector<unsigned char> ws(1 << 20);
  void* wsp =
      ws.data() + (64 - reinterpret_cast<uintptr_t>(ws.data()) % 64) % 64;
  CHECK(gqa_layer_forward_cached(layer.handle(), &a, &cache, wsp, 1 << 19,
                                 nullptr) ==
        GQA_STATUS_CACHE_OVERFLOW);  // 3 + 2 > 4
  gqa_kv_cache wrong = cache;
  wrong.head_dim = 8;
  CHECK(gqa_layer_forward_cached(layer.handle(), &a, &wrong, wsp, 1 << 19,
                                 nullptr) == GQA_STATUS_SHAPE_MISMATCH);
  gqa_forward_args masked = a;
  std::vector<uint8_t> qm(4, 1);
  masked.query_mask = qm.data();
  CHECK(gqa_layer_forward_cached(layer.handle(), &masked, &cache, wsp, 1 << 19,
                                 nullptr) == GQA_STATUS_INVALID_ARGUMENT);
  gqa_kv_cache ring = cache;
  ring.ring = 1;  // the layer has no sliding window
  lengths = {0, 0};
  CHECK(gqa_layer_forward_cached(layer.handle(), &a, &ring, wsp, 1 << 19,
                                 nullptr) == GQA_STATUS_INVALID_ARGUMENT);
  for (float f : out) CHECK(f == 9.0f);
  for (float f : k) CHECK(f == 7.0f);
  CHECK(lengths[0] == 0);
  CHECK(gqa_layer_forward_cached(layer.handle(), &a, &cache, wsp, 1 << 19,
                                 nullptr) == GQA_STATUS_OK);
  CHECK(lengths[0] == 2);
}

}  // namespace
}  // namespace test
}  // namespace gqa
