// KV cache v2 (gqa/block_cache.h) through the public C ABI: append, attend
// and read-back in every element type, with rotation, rings, ragged
// batches and shuffled block tables, against the float64 oracle over the
// rows the cache reads back; read-back against the row encoders; errors
// that write nothing; thread-count independence.
#include <pthreadpool.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "doctest/doctest.h"
#include "gqa/attention.h"
#include "gqa/block_cache.h"
#include "src/half.h"
#include "src/quantize.h"
#include "src/reference/attention_ref.h"
#include "tests/block_cache_util.h"
#include "tests/check.h"
#include "tests/f16_kv_tol.h"

namespace {

using gqa::test::Cache;
using gqa::test::Config;
using gqa::test::Random;

// The source rows of every appended token, per batch, by position.
struct Mirror {
  // [b][pos] -> [Hkv*D] (k), [Hkv*Dv] (v)
  std::vector<std::vector<std::vector<float>>> k, v;
};

void Append(Cache* cache, Mirror* m, const Config& k, int64_t n,
            const std::vector<int64_t>& counts, std::mt19937* rng) {
  const size_t row = static_cast<size_t>(k.Hkv * k.D);
  const size_t vrow = static_cast<size_t>(k.Hkv * k.Dv());
  const std::vector<float> kn = Random(k.B * n * row, rng);
  const std::vector<float> vn = Random(k.B * n * vrow, rng);
  REQUIRE(gqa_block_cache_append(&cache->c, n, counts.data(), kn.data(),
                                 vn.data(), GQA_DTYPE_F32) == GQA_STATUS_OK);
  m->k.resize(static_cast<size_t>(k.B));
  m->v.resize(static_cast<size_t>(k.B));
  for (int64_t b = 0; b < k.B; ++b) {
    for (int64_t i = 0; i < counts[b]; ++i) {
      const float* kr = kn.data() + (b * n + i) * row;
      const float* vr = vn.data() + (b * n + i) * vrow;
      m->k[b].emplace_back(kr, kr + row);
      m->v[b].emplace_back(vr, vr + vrow);
    }
  }
}

// Every held row reads back as the encoders say, bit for bit.
void CheckReadBack(const Cache& cache, const Mirror& m, const Config& k) {
  std::vector<float> kr(static_cast<size_t>(k.D));
  std::vector<float> vr(static_cast<size_t>(k.Dv()));
  for (int64_t b = 0; b < k.B; ++b) {
    const int64_t len = cache.lengths[b];
    const int64_t first = k.ring && len > k.capacity ? len - k.capacity : 0;
    for (int64_t p = first; p < len; ++p) {
      for (int64_t g = 0; g < k.Hkv; ++g) {
        REQUIRE(gqa_block_cache_read(&cache.c, b, p, g, kr.data(), vr.data()) ==
                GQA_STATUS_OK);
        const std::vector<float> ke =
            gqa::test::Encode(k, &m.k[b][p][g * k.D], k.D);
        const std::vector<float> ve =
            gqa::test::Encode(k, &m.v[b][p][g * k.Dv()], k.Dv());
        INFO("b " << b << " pos " << p << " head " << g);
        REQUIRE(memcmp(kr.data(), ke.data(), kr.size() * 4) == 0);
        REQUIRE(memcmp(vr.data(), ve.data(), vr.size() * 4) == 0);
      }
    }
  }
}

// The LLM options of an attend (off by default).
struct Options {
  float softcap = 0.0f;
  std::vector<float> alibi, sinks;  // [Hq] or empty
};

// The oracle over the read-back rows: keys are positions 0..L-1 (batch
// lengths padded with masked keys), unheld ones masked; a rotating cache's
// q is rotated and its output rotated back in float64.
std::vector<double> Oracle(const Cache& cache, const Config& k, int64_t T,
                           int64_t Hq, const std::vector<float>& q,
                           int64_t window, const Options& o = Options()) {
  const int64_t Dv = k.Dv();
  int64_t S = 0;
  for (int64_t b = 0; b < k.B; ++b)
    S = cache.lengths[b] > S ? cache.lengths[b] : S;
  gqa::reference::AttentionCall call;
  call.batch = k.B, call.q_len = T, call.kv_len = S;
  call.q_heads = Hq, call.kv_heads = k.Hkv, call.head_dim = k.D;
  call.value_dim = Dv;
  call.softcap = o.softcap;
  call.alibi_slopes.assign(o.alibi.begin(), o.alibi.end());
  call.sinks.assign(o.sinks.begin(), o.sinks.end());
  call.scale = 1.0 / std::sqrt(static_cast<double>(k.D));
  call.causal = true;
  call.sliding_window = window;
  call.q.assign(q.begin(), q.end());
  if (k.rotate) {
    for (size_t r = 0; r < call.q.size() / k.D; ++r)
      gqa::test::Hadamard(&call.q[r * k.D], k.D);
  }
  const size_t row = static_cast<size_t>(k.Hkv * k.D);
  const size_t vrow = static_cast<size_t>(k.Hkv * Dv);
  call.k.assign(k.B * S * row, 0.0);
  call.v.assign(k.B * S * vrow, 0.0);
  std::vector<uint8_t> key_mask(static_cast<size_t>(k.B * S), 0);
  std::vector<float> kr(static_cast<size_t>(k.D));
  std::vector<float> vr(static_cast<size_t>(Dv));
  for (int64_t b = 0; b < k.B; ++b) {
    const int64_t len = cache.lengths[b];
    call.position_offsets.push_back(len - T);
    const int64_t first = k.ring && len > k.capacity ? len - k.capacity : 0;
    for (int64_t p = first; p < len; ++p) {
      key_mask[b * S + p] = 1;
      for (int64_t g = 0; g < k.Hkv; ++g) {
        REQUIRE(gqa_block_cache_read(&cache.c, b, p, g, kr.data(), vr.data()) ==
                GQA_STATUS_OK);
        for (int64_t d = 0; d < k.D; ++d)
          call.k[(b * S + p) * row + g * k.D + d] = kr[d];
        for (int64_t d = 0; d < Dv; ++d)
          call.v[(b * S + p) * vrow + g * Dv + d] = vr[d];
      }
    }
  }
  call.key_masks.push_back(key_mask);
  std::vector<double> out = gqa::reference::Attention(call).out;
  if (k.rotate) {
    for (size_t r = 0; r < out.size() / Dv; ++r)
      gqa::test::Hadamard(&out[r * Dv], Dv);
  }
  return out;
}

// One attend of the newest T tokens: out f32 (or f16, widened).
std::vector<float> Attend(const Cache& cache, const Config& k, int64_t T,
                          int64_t Hq, const std::vector<float>& q,
                          int64_t window, int32_t q_dtype, int32_t out_dtype,
                          size_t threads = 1, const Options& o = Options()) {
  std::vector<uint16_t> q16(q.size());
  for (size_t i = 0; i < q.size(); ++i) q16[i] = gqa::FloatToHalf(q[i]);
  const size_t n = static_cast<size_t>(k.B * T * Hq * k.Dv());
  std::vector<float> out(n, -7.0f);
  std::vector<uint16_t> out16(n);
  gqa_kv_attend_params a{};
  a.q_len = T;
  a.q_heads = Hq;
  a.q = q_dtype == GQA_DTYPE_F16 ? static_cast<const void*>(q16.data())
                                 : static_cast<const void*>(q.data());
  a.q_dtype = q_dtype;
  a.out = out_dtype == GQA_DTYPE_F16 ? static_cast<void*>(out16.data())
                                     : static_cast<void*>(out.data());
  a.out_dtype = out_dtype;
  a.sliding_window = window;
  a.fully_masked_policy = GQA_FULLY_MASKED_ZERO;
  a.softcap = o.softcap;
  a.alibi_slopes = o.alibi.empty() ? nullptr : o.alibi.data();
  a.sinks = o.sinks.empty() ? nullptr : o.sinks.data();
  size_t bytes = 0;
  REQUIRE(gqa_block_cache_attend_workspace_size(&cache.c, &a,
                                                static_cast<int64_t>(threads),
                                                &bytes) == GQA_STATUS_OK);
  void* ws = aligned_alloc(64, (bytes + 63) / 64 * 64);
  pthreadpool_t pool = threads > 1 ? pthreadpool_create(threads) : nullptr;
  const gqa_status s = gqa_block_cache_attend(&cache.c, &a, ws, bytes, pool);
  if (pool) pthreadpool_destroy(pool);
  free(ws);
  REQUIRE_MESSAGE(s == GQA_STATUS_OK, gqa_last_error_message());
  if (out_dtype == GQA_DTYPE_F16) {
    for (size_t i = 0; i < n; ++i) out[i] = gqa::HalfToFloat(out16[i]);
  }
  return out;
}

const char* Name(int32_t d) {
  return d == GQA_DTYPE_F32   ? "f32"
         : d == GQA_DTYPE_F16 ? "f16"
         : d == GQA_DTYPE_Q8  ? "q8"
                              : "q4";
}

// Appends in ragged chunks, then decode steps, checking read-back and every
// attend against the oracle.
void RunScenario(const Config& k, int64_t Hq, int64_t T, int64_t window,
                 uint32_t seed, const Options& o = Options()) {
  INFO(Name(k.dtype) << " rotate " << k.rotate << " ring " << k.ring << " bt "
                     << k.bt << " D " << k.D << " Dv " << k.Dv() << " Hq " << Hq
                     << " T " << T << " W " << window << " softcap "
                     << o.softcap << " alibi " << !o.alibi.empty() << " sinks "
                     << !o.sinks.empty());
  Cache cache(k, seed);
  Mirror m;
  std::mt19937 rng(seed);
  const int64_t prefill = k.ring ? k.capacity + 9 : k.capacity / 2;
  std::vector<int64_t> counts(static_cast<size_t>(k.B));
  for (int64_t b = 0; b < k.B; ++b) counts[b] = prefill - 3 * b;
  Append(&cache, &m, k, prefill, counts, &rng);
  for (int step = 0; step < 3; ++step) {
    std::vector<int64_t> ones(static_cast<size_t>(k.B), T);
    Append(&cache, &m, k, T, ones, &rng);
    CheckReadBack(cache, m, k);
    const std::vector<float> q = Random(k.B * T * Hq * k.D, &rng);
    const std::vector<double> want = Oracle(cache, k, T, Hq, q, window, o);
    const bool f16 = k.dtype == GQA_DTYPE_F16;
    const double tol = gqa::test::F16KvTol(f16, 2e-4);
    gqa::test::CheckClose(
        Attend(cache, k, T, Hq, q, window, GQA_DTYPE_F32, GQA_DTYPE_F32, 1, o),
        want, tol, tol, "f32 q/out");
    gqa::test::CheckClose(
        Attend(cache, k, T, Hq, q, window, f16 ? GQA_DTYPE_F16 : GQA_DTYPE_F32,
               GQA_DTYPE_F16, 1, o),
        want, 1e-2, 1e-2, "f16 out");
  }
}

}  // namespace

TEST_CASE("block cache: every element type, linear and ring, rotation") {
  for (int32_t dtype :
       {GQA_DTYPE_F32, GQA_DTYPE_F16, GQA_DTYPE_Q8, GQA_DTYPE_Q4}) {
    for (bool rotate : {false, true}) {
      Config k;
      k.dtype = dtype;
      k.rotate = rotate;
      RunScenario(k, 4, 1, 0, 11);  // decode, G = 2
      k.bt = 7;                     // kernel blocks straddle cache blocks
      RunScenario(k, 8, 2, 5, 12);
      k.ring = true;
      k.capacity = 24;
      RunScenario(k, 6, 1, 20, 13);
      k.bt = 16;
      RunScenario(k, 2, 4, 21, 14);
    }
  }
}

TEST_CASE("block cache: chunked prefill (flash) and head sizes") {
  for (int32_t dtype :
       {GQA_DTYPE_F32, GQA_DTYPE_F16, GQA_DTYPE_Q8, GQA_DTYPE_Q4}) {
    Config k;
    k.dtype = dtype;
    k.capacity = 300;
    k.bt = 32;
    RunScenario(k, 8, 40, 0, 21);  // 4 * 40 rows per kv head: flash
    k.D = 96;                      // not a power of two: no rotation
    k.bt = 1;
    k.capacity = 50;
    RunScenario(k, 2, 3, 0, 22);
    if (dtype == GQA_DTYPE_F32 || dtype == GQA_DTYPE_F16) {
      k.D = 65;  // lanes do not tile the head
      RunScenario(k, 4, 1, 0, 23);
    }
  }
}

TEST_CASE(
    "block cache: Dv != D and the attend options (softcap, ALiBi, sinks)") {
  for (int32_t dtype :
       {GQA_DTYPE_F32, GQA_DTYPE_F16, GQA_DTYPE_Q8, GQA_DTYPE_Q4}) {
    for (bool rotate : {false, true}) {
      Config k;
      k.dtype = dtype;
      k.rotate = rotate;
      k.value_dim = 32;  // D 64: q4 and rotation take both
      Options o;
      RunScenario(k, 4, 1, 0, 31);  // decode, Dv only
      o.softcap = 6.0f;
      o.sinks = {0.5f, -1.0f, 2.0f, 0.0f, 1.5f, -0.5f, 3.0f, 1.0f};
      o.alibi.resize(8);
      REQUIRE(gqa_alibi_slopes(8, 8.0f, o.alibi.data()) == GQA_STATUS_OK);
      RunScenario(k, 8, 2, 0, 32, o);  // decode, all options
      k.value_dim = 128;
      k.ring = true;
      k.capacity = 24;
      k.bt = 7;
      RunScenario(k, 8, 1, 20, 33, o);  // ring
      k.ring = false;
      k.capacity = 300;
      k.bt = 32;
      RunScenario(k, 8, 40, 0, 34, o);  // chunked prefill: flash
    }
  }
}

TEST_CASE("block cache attend: bitwise identical for 1, 2 and 4 threads") {
  for (int32_t dtype : {GQA_DTYPE_F16, GQA_DTYPE_Q8, GQA_DTYPE_Q4}) {
    Config k;
    k.dtype = dtype;
    k.B = 1;
    k.capacity = 1200;
    k.bt = 32;
    Cache cache(k, 5);
    Mirror m;
    std::mt19937 rng(5);
    Append(&cache, &m, k, 1100, {1100}, &rng);
    for (int64_t T : {1, 20}) {
      const std::vector<float> q = Random(T * 8 * k.D, &rng);
      const std::vector<float> one =
          Attend(cache, k, T, 8, q, 0, GQA_DTYPE_F32, GQA_DTYPE_F32, 1);
      for (size_t threads : {2, 4}) {
        const std::vector<float> many =
            Attend(cache, k, T, 8, q, 0, GQA_DTYPE_F32, GQA_DTYPE_F32, threads);
        CHECK(memcmp(one.data(), many.data(), one.size() * 4) == 0);
      }
    }
  }
}

TEST_CASE("block cache: a NaN row reads back and attends as NaN") {
  for (int32_t dtype :
       {GQA_DTYPE_F32, GQA_DTYPE_F16, GQA_DTYPE_Q8, GQA_DTYPE_Q4}) {
    Config k;
    k.dtype = dtype;
    k.B = 1;
    Cache cache(k);
    std::mt19937 rng(3);
    std::vector<float> kn = Random(4 * k.Hkv * k.D, &rng);
    const std::vector<float> vn = Random(kn.size(), &rng);
    kn[2 * k.Hkv * k.D + 5] = NAN;  // token 2, head 0
    REQUIRE(gqa_block_cache_append(&cache.c, 4, nullptr, kn.data(), vn.data(),
                                   GQA_DTYPE_F32) == GQA_STATUS_OK);
    std::vector<float> kr(static_cast<size_t>(k.D)), vr(kr.size());
    REQUIRE(gqa_block_cache_read(&cache.c, 0, 2, 0, kr.data(), vr.data()) ==
            GQA_STATUS_OK);
    CHECK(std::isnan(kr[5]));
    const std::vector<float> q = Random(2 * k.D, &rng);
    const std::vector<float> out =
        Attend(cache, k, 1, 2, q, 0, GQA_DTYPE_F32, GQA_DTYPE_F32);
    CHECK(std::isnan(out[0]));       // head 0 sees the NaN key
    CHECK(std::isfinite(out[k.D]));  // head 1 reads kv head 1
  }
}
