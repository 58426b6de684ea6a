// Non-finite inputs (issue 10, rows 5 and 11): a NaN or Inf in q, k or v,
// or an f32 overflow of scale*q.k, gives NaN exactly in the rows it reaches
// (as a float softmax reference would) and leaves every other row as it
// was; a fully masked row still gives the policy's answer; values near
// FLT_MAX do not overflow the accumulator. Prefill (flash) and decode
// shapes, f32 and f16 k/v, 1 to 3 threads; and the KV-cache path.
#include <math.h>
#include <pthreadpool.h>
#include <string.h>

#include <random>
#include <string>
#include <vector>

#include "doctest/doctest.h"
#include "gqa/attention.h"
#include "gqa/gqa.hpp"
#include "gqa/kv_cache.h"
#include "platforms/platform_kernels.h"
#include "src/reference/attention_ref.h"
#include "src/reference/f16_util.h"
#include "tests/check.h"

namespace gqa {
namespace test {
namespace {

struct Shape {
  int64_t B, T, S, Hq, Hkv, D;
  const char* name;
};
// Flash: G*T > 32, S crosses a 128-key tile. Decode: G*T <= 32, S split in
// 3 chunks; D = 12 takes the packed (non whole-vector) paths.
const Shape kShapes[] = {{2, 37, 150, 4, 2, 16, "prefill"},
                         {2, 37, 150, 4, 2, 12, "prefill D12"},
                         {2, 1, 1100, 8, 2, 16, "decode"},
                         {2, 2, 1100, 4, 2, 12, "decode D12"}};

struct Inputs {
  std::vector<float> q, k, v;  // [B,T,Hq,D], [B,S,Hkv,D]
  std::vector<int64_t> lengths;
  std::vector<uint8_t> key_mask;
};

Inputs Random(const Shape& s, bool kv16, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  Inputs in;
  in.q.resize(s.B * s.T * s.Hq * s.D);
  in.k.resize(s.B * s.S * s.Hkv * s.D);
  in.v.resize(in.k.size());
  for (float& x : in.q) x = u(rng);
  for (float& x : in.k) x = reference::RoundIf(u(rng), kv16);
  for (float& x : in.v) x = reference::RoundIf(u(rng), kv16);
  return in;
}

struct Opts {
  bool kv16 = false, causal = false;
  int threads = 1;
  int32_t policy = GQA_FULLY_MASKED_KERAS;
};

std::vector<float> Run(const Shape& s, const Inputs& in, const Opts& o) {
  std::vector<uint16_t> k16, v16;
  if (o.kv16) {
    k16 = reference::ToHalf(in.k);
    v16 = reference::ToHalf(in.v);
  }
  std::vector<float> out(s.B * s.T * s.Hq * s.D, 12345.0f);
  gqa_attention_params p;
  gqa_attention_params_init(&p);
  p.batch = s.B, p.q_len = s.T, p.kv_len = s.S, p.q_heads = s.Hq;
  p.kv_heads = s.Hkv, p.head_dim = s.D;
  p.q = in.q.data();
  p.k = o.kv16 ? static_cast<const void*>(k16.data()) : in.k.data();
  p.v = o.kv16 ? static_cast<const void*>(v16.data()) : in.v.data();
  p.kv_dtype = o.kv16 ? GQA_DTYPE_F16 : GQA_DTYPE_F32;
  p.out = out.data();
  p.causal = o.causal;
  p.key_lengths = in.lengths.empty() ? nullptr : in.lengths.data();
  p.key_mask = in.key_mask.empty() ? nullptr : in.key_mask.data();
  p.fully_masked_policy = o.policy;
  size_t bytes = 0;
  REQUIRE(gqa_attention_workspace_size(&p, o.threads, &bytes) == GQA_STATUS_OK);
  Workspace ws(bytes);
  pthreadpool_t pool = o.threads > 1 ? pthreadpool_create(o.threads) : nullptr;
  const gqa_status st = gqa_attention(&p, ws.data(), ws.size(), pool);
  if (pool) pthreadpool_destroy(pool);
  REQUIRE(st == GQA_STATUS_OK);
  return out;
}

// Expected NaN pattern: nan_row(b, t, u) -> -2: finite and bitwise equal to
// the clean run; -1: whole row NaN; d >= 0: only column d NaN, the others
// equal to the clean run; -3 - d: as -2 but column d may also be NaN (a NaN
// v row under probability 0: 0 * NaN in p.V, as in any float p @ V).
template <class F>
void Expect(const Shape& s, const std::vector<float>& got,
            const std::vector<float>& clean, F nan_row) {
  int64_t nan_rows = 0;
  for (int64_t b = 0; b < s.B; ++b) {
    for (int64_t t = 0; t < s.T; ++t) {
      for (int64_t u = 0; u < s.Hq; ++u) {
        const int64_t want = nan_row(b, t, u);
        const size_t at = static_cast<size_t>(((b * s.T + t) * s.Hq + u) * s.D);
        bool ok = true;
        for (int64_t d = 0; d < s.D; ++d) {
          const float x = got[at + d];
          const bool nan_here = want == -1 || want == d;
          if (want == -3 - d && isnan(x)) continue;
          if (nan_here ? !isnan(x) : !(isfinite(x) && x == clean[at + d]))
            ok = false;
        }
        if (want >= -1) ++nan_rows;
        INFO("b " << b << " t " << t << " u " << u << " want " << want
                  << " got[0] " << got[at] << " clean[0] " << clean[at]);
        CHECK(ok);
      }
    }
  }
  CHECK(nan_rows > 0);
}

void ForAll(void (*body)(const Shape&, const Opts&)) {
  for (const Shape& s : kShapes) {
    for (int kv16 = 0; kv16 < 2; ++kv16) {
      for (int threads = 1; threads <= 3; ++threads) {
        for (int causal = 0; causal < 2; ++causal) {
          Opts o;
          o.kv16 = kv16 != 0;
          o.threads = threads;
          o.causal = causal != 0;
          INFO(std::string(s.name) << " kv16 " << kv16 << " threads " << threads
                                   << " causal " << causal);
          body(s, o);
        }
      }
    }
  }
}

// Key position s is visible to query t (causal, no offset: top-left).
bool Sees(const Shape& sh, const Opts& o, int64_t t, int64_t s) {
  (void)sh;
  return !o.causal || s <= t;
}

TEST_CASE("NaN or Inf in q: NaN in that row only") {
  const float values[] = {NAN, INFINITY, -INFINITY};
  for (float value : values) {
    INFO("value " << value);
    for (const Shape& s : kShapes) {
      for (int kv16 = 0; kv16 < 2; ++kv16) {
        for (int threads = 1; threads <= 3; ++threads) {
          Opts o;
          o.kv16 = kv16 != 0, o.threads = threads;
          INFO(std::string(s.name)
               << " kv16 " << kv16 << " threads " << threads);
          Inputs in = Random(s, o.kv16, 7);
          const std::vector<float> clean = Run(s, in, o);
          const int64_t b = 1, t = s.T - 1, u = s.Hq - 1, d = 3;
          in.q[((b * s.T + t) * s.Hq + u) * s.D + d] = value;
          Expect(s, Run(s, in, o), clean,
                 [&](int64_t bb, int64_t tt, int64_t uu) -> int64_t {
                   return bb == b && tt == t && uu == u ? -1 : -2;
                 });
        }
      }
    }
  }
}

// f16 K/V on a FEAT_FHM CPU (the FMLAL path, platforms/f16_fml.h): the row
// is scaled into the f16 range by an exact power of two, so it stays close
// to the f32 path (platform kernels `exact`) and no other row of its work
// item moves.
TEST_CASE("a finite q row past the f16 range: that row alone changes") {
  for (const Shape& s : kShapes) {
    for (int kv16 = 0; kv16 < 2; ++kv16) {
      for (int threads = 1; threads <= 3; threads += 2) {
        Opts o;
        o.kv16 = kv16 != 0, o.threads = threads;
        INFO(std::string(s.name) << " kv16 " << kv16 << " threads " << threads);
        Inputs in = Random(s, o.kv16, 9);
        // Small keys keep that row's logits O(1), so its softmax is not
        // one-hot and a missing or wrong 2^e shows.
        for (float& x : in.k) x = reference::RoundIf(x * 5e-6f, o.kv16);
        const std::vector<float> clean = Run(s, in, o);
        const int64_t b = 1, t = s.T - 1, u = s.Hq - 1;
        const size_t row =
            static_cast<size_t>(((b * s.T + t) * s.Hq + u) * s.D);
        // |q * scale| up to 8e5 / sqrt(D) > 65504: 2^-2 or 2^-3 in f16.
        for (int64_t d = 0; d < s.D; ++d) in.q[row + d] *= 4e5f;
        const std::vector<float> got = Run(s, in, o);
        std::vector<float> exact;
        {
          const PlatformKernels old = PlatformKernelsMode();
          SetPlatformKernels(PlatformKernels::kExact);
          exact = Run(s, in, o);
          SetPlatformKernels(old);
        }
        int64_t moved = 0, off = 0;
        for (size_t i = 0; i < got.size(); ++i) {
          const bool mine = i >= row && i < row + static_cast<size_t>(s.D);
          if (!mine) {
            moved += !(got[i] == clean[i]);
          } else {
            off += !(isfinite(got[i]) &&
                     fabs(got[i] - exact[i]) <= 3e-3 + 3e-3 * fabs(exact[i]));
          }
        }
        CHECK(moved == 0);
        CHECK(off == 0);
      }
    }
  }
}

TEST_CASE("NaN in k: NaN in the rows that see that key") {
  ForAll([](const Shape& s, const Opts& o) {
    Inputs in = Random(s, o.kv16, 11);
    const std::vector<float> clean = Run(s, in, o);
    const int64_t b = 0, key = s.T > 2 ? 1 : (o.causal ? 0 : 700), g = 1, d = 2;
    in.k[((b * s.S + key) * s.Hkv + g) * s.D + d] = NAN;
    const int64_t group = s.Hq / s.Hkv;
    Expect(s, Run(s, in, o), clean,
           [&](int64_t bb, int64_t tt, int64_t uu) -> int64_t {
             return bb == b && uu / group == g && Sees(s, o, tt, key) ? -1 : -2;
           });
  });
}

TEST_CASE("NaN in v: NaN in that column of the rows that see that key") {
  ForAll([](const Shape& s, const Opts& o) {
    Inputs in = Random(s, o.kv16, 13);
    const std::vector<float> clean = Run(s, in, o);
    const int64_t b = 1, key = s.T > 2 ? 5 : (o.causal ? 0 : 1099), g = 0,
                  d = 5;
    in.v[((b * s.S + key) * s.Hkv + g) * s.D + d] = NAN;
    const int64_t group = s.Hq / s.Hkv;
    Expect(s, Run(s, in, o), clean,
           [&](int64_t bb, int64_t tt, int64_t uu) -> int64_t {
             if (bb != b || uu / group != g) return -2;
             return Sees(s, o, tt, key) ? d : -3 - d;
           });
  });
}

TEST_CASE("scale * q.k overflowing f32 gives NaN in that row") {
  ForAll([](const Shape& s, const Opts& o) {
    Inputs in = Random(s, o.kv16, 17);
    // 1e36 / 4 * 6e4 * D overflows f32 (and 6e4 is an f16 value).
    const int64_t b = 0, t = 0, u = 1, key = 0, g = u / (s.Hq / s.Hkv);
    for (int64_t d = 0; d < s.D; ++d)
      in.k[((b * s.S + key) * s.Hkv + g) * s.D + d] = 6e4f;
    const std::vector<float> clean = Run(s, in, o);
    for (int64_t d = 0; d < s.D; ++d)
      in.q[((b * s.T + t) * s.Hq + u) * s.D + d] = 1e36f;
    const std::vector<float> got = Run(s, in, o);
    Expect(s, got, clean, [&](int64_t bb, int64_t tt, int64_t uu) -> int64_t {
      return bb == b && tt == t && uu == u ? -1 : -2;
    });
  });
}

TEST_CASE("every allowed logit -inf gives NaN, not the masked policy") {
  ForAll([](const Shape& s, const Opts& o) {
    Inputs in = Random(s, o.kv16, 29);
    const int64_t b = 1, t = 0, u = 0, g = 0;
    for (int64_t j = 0; j < s.S; ++j)
      in.k[((b * s.S + j) * s.Hkv + g) * s.D] = 1;
    const std::vector<float> clean = Run(s, in, o);
    in.q[((b * s.T + t) * s.Hq + u) * s.D] = -INFINITY;
    Expect(s, Run(s, in, o), clean,
           [&](int64_t bb, int64_t tt, int64_t uu) -> int64_t {
             return bb == b && tt == t && uu == u ? -1 : -2;
           });
  });
}

TEST_CASE("fully masked rows keep the policy next to a NaN row") {
  const int32_t policies[] = {GQA_FULLY_MASKED_KERAS, GQA_FULLY_MASKED_ZERO};
  for (int32_t policy : policies) {
    for (int by_mask = 0; by_mask < 2; ++by_mask) {
      for (const Shape& s : kShapes) {
        for (int kv16 = 0; kv16 < 2; ++kv16) {
          for (int threads = 1; threads <= 3; ++threads) {
            Opts o;
            o.kv16 = kv16 != 0, o.threads = threads, o.policy = policy;
            INFO(std::string(s.name)
                 << " kv16 " << kv16 << " threads " << threads << " policy "
                 << policy << " by_mask " << by_mask);
            Inputs in = Random(s, o.kv16, 19);
            // Batch 0 sees no key; batch 1 sees them all, with a NaN in q.
            if (by_mask) {
              in.key_mask.assign(s.B * s.S, 1);
              for (int64_t j = 0; j < s.S; ++j) in.key_mask[j] = 0;
            } else {
              in.lengths = {0, s.S};
            }
            in.q[((1 * s.T + 0) * s.Hq + 0) * s.D + 0] = NAN;
            const std::vector<float> got = Run(s, in, o);
            // Batch 0 against the oracle: the policy's row (Keras: uniform
            // without scores, the mean of v; zero: zeros).
            reference::AttentionCall a;
            a.batch = 1, a.q_len = s.T, a.kv_len = s.S;
            a.q_heads = s.Hq, a.kv_heads = s.Hkv, a.head_dim = s.D;
            a.q = reference::ToDouble(std::vector<float>(
                in.q.begin(), in.q.begin() + s.T * s.Hq * s.D));
            a.k = reference::ToDouble(std::vector<float>(
                in.k.begin(), in.k.begin() + s.S * s.Hkv * s.D));
            a.v = reference::ToDouble(std::vector<float>(
                in.v.begin(), in.v.begin() + s.S * s.Hkv * s.D));
            a.key_lengths = {0};
            a.fully_masked_uniform = policy == GQA_FULLY_MASKED_KERAS;
            const std::vector<float> got0(got.begin(),
                                          got.begin() + s.T * s.Hq * s.D);
            CheckClose(got0, reference::Attention(a).out, 1e-5, 1e-5,
                       "fully masked batch 0");
            for (int64_t t = 0; t < s.T; ++t) {
              for (int64_t u = 0; u < s.Hq; ++u) {
                for (int64_t d = 0; d < s.D; ++d) {
                  const float y = got[((s.T + t) * s.Hq + u) * s.D + d];
                  INFO("t " << t << " u " << u << " d " << d);
                  CHECK((t == 0 && u == 0) == static_cast<bool>(isnan(y)));
                }
              }
            }
          }
        }
      }
    }
  }
}

TEST_CASE("values near FLT_MAX do not overflow") {
  for (const Shape& s : kShapes) {
    for (int threads = 1; threads <= 3; ++threads) {
      for (int causal = 0; causal < 2; ++causal) {
        Opts o;
        o.threads = threads, o.causal = causal != 0;
        INFO(std::string(s.name)
             << " threads " << threads << " causal " << causal);
        Inputs in = Random(s, false, 23);
        for (float& x : in.v) x = 3e38f;
        const std::vector<float> got = Run(s, in, o);
        for (float x : got) {
          REQUIRE(isfinite(x));
          CHECK(fabs(x - 3e38) <= 1e-6 * 3e38);
        }
        // The fully-masked uniform mean of such values does not overflow.
        in.lengths.assign(s.B, 0);
        // (S rounded terms of 3e38 / S: f32 summation error only.)
        for (float x : Run(s, in, o)) CHECK(fabs(x - 3e38) <= 1e-4 * 3e38);
      }
    }
  }
}

TEST_CASE("KV cache: NaN in q is NaN, stale slots never averaged") {
  // Capacity 8, 2 tokens written (v = 1, 3); the 6 other slots hold 1000.
  const int64_t cap = 8, D = 4;
  for (int kv16 = 0; kv16 < 2; ++kv16) {
    for (int threads = 1; threads <= 3; ++threads) {
      INFO("kv16 " << kv16 << " threads " << threads);
      std::vector<float> kf(cap * D, 1000.0f), vf(cap * D, 1000.0f);
      for (int64_t d = 0; d < D; ++d) {
        kf[d] = 0.5f, kf[D + d] = -0.5f;
        vf[d] = 1.0f, vf[D + d] = 3.0f;
      }
      std::vector<uint16_t> k16, v16;
      k16 = reference::ToHalf(kf);
      v16 = reference::ToHalf(vf);
      int64_t length = 2;
      gqa_kv_cache cache;
      memset(&cache, 0, sizeof(cache));
      cache.batch = 1, cache.capacity = cap, cache.kv_heads = 1;
      cache.head_dim = D;
      cache.dtype = kv16 ? GQA_DTYPE_F16 : GQA_DTYPE_F32;
      cache.k = kv16 ? static_cast<void*>(k16.data()) : kf.data();
      cache.v = kv16 ? static_cast<void*>(v16.data()) : vf.data();
      cache.lengths = &length;
      for (int nan = 0; nan < 2; ++nan) {
        std::vector<float> q(D, 0.25f), out(D, 0.0f);
        if (nan) q[1] = NAN;
        gqa_kv_attend_params ap;
        memset(&ap, 0, sizeof(ap));
        ap.q_len = 1, ap.q_heads = 1, ap.q = q.data();
        ap.q_dtype = GQA_DTYPE_F32, ap.out = out.data();
        ap.out_dtype = GQA_DTYPE_F32;
        size_t bytes = 0;
        REQUIRE(gqa_kv_cache_attend_workspace_size(&cache, &ap, threads,
                                                   &bytes) == GQA_STATUS_OK);
        Workspace ws(bytes);
        pthreadpool_t pool =
            threads > 1 ? pthreadpool_create(threads) : nullptr;
        REQUIRE(gqa_kv_cache_attend(&cache, &ap, ws.data(), ws.size(), pool) ==
                GQA_STATUS_OK);
        if (pool) pthreadpool_destroy(pool);
        for (int64_t d = 0; d < D; ++d) {
          INFO("nan " << nan << " d " << d << " out " << out[d]);
          if (nan) {
            CHECK(isnan(out[d]));
          } else {
            CHECK(out[d] >= 1.0f);
            CHECK(out[d] <= 3.0f);
          }
        }
      }
    }
  }
}

}  // namespace
}  // namespace test
}  // namespace gqa
