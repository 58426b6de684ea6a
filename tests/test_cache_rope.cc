// RoPE fused into the KV caches (spec 5, include/gqa/kv_cache.h,
// block_cache.h): gqa_*_cache_append_rope and the attend's q_rope against
// the unfused path (gqa_rope, then the plain append / attend) bit for bit on
// every element type, rotation, ring, style, norm and dtype, and against the
// float64 oracles (rope_ref then attention_ref) over a decode run; a draft
// tree appended at its depths and kept equals its accepted path appended in
// order; every refused call writes nothing.
#include <stdlib.h>
#include <string.h>

#include <cmath>
#include <random>
#include <vector>

#include "doctest/doctest.h"
#include "gqa/block_cache.h"
#include "gqa/kv_cache.h"
#include "gqa/rope.h"
#include "src/half.h"
#include "src/reference/attention_ref.h"
#include "src/reference/rope_ref.h"
#include "tests/block_cache_util.h"
#include "tests/f16_kv_tol.h"
#include "tests/layer_case.h"

namespace {

using gqa::test::Cache;
using gqa::test::Config;
using gqa::test::Random;

struct Variant {
  bool interleaved = false, norm = false, partial = false;
  bool k_f16 = false, q_f16 = false, positions = false;
};

gqa_rope_params ParamsOf(const Variant& w, int64_t D,
                         const std::vector<float>& norm) {
  gqa_rope_params p;
  gqa_rope_params_init(&p);
  p.style = w.interleaved ? GQA_ROPE_INTERLEAVED : GQA_ROPE_HALF;
  p.rotary_dim = w.partial ? D / 2 : 0;
  p.theta = 500000.0;
  if (w.norm) p.norm_weight = norm.data(), p.norm_eps = 1e-5f;
  return p;
}

std::vector<uint16_t> ToHalf(const std::vector<float>& x) {
  std::vector<uint16_t> h(x.size());
  for (size_t i = 0; i < x.size(); ++i) h[i] = gqa::FloatToHalf(x[i]);
  return h;
}

// Rows of x [B, T, H, D] (f32 or f16 per `half`) through gqa_rope into f32.
std::vector<float> RopeF32(const gqa_rope_params& p, int64_t B, int64_t T,
                           int64_t H, int64_t D, const int64_t* positions,
                           const void* x, bool half) {
  std::vector<float> y(static_cast<size_t>(B * T * H * D));
  REQUIRE(gqa_rope(&p, B, T, H, D, positions, x,
                   half ? GQA_DTYPE_F16 : GQA_DTYPE_F32, y.data(),
                   GQA_DTYPE_F32) == GQA_STATUS_OK);
  return y;
}

gqa_kv_attend_params AttendOf(int64_t T, int64_t Hq, const void* q, bool q_f16,
                              float* out) {
  gqa_kv_attend_params a;
  memset(&a, 0, sizeof(a));
  a.q_len = T, a.q_heads = Hq, a.q = q;
  a.q_dtype = q_f16 ? GQA_DTYPE_F16 : GQA_DTYPE_F32;
  a.out = out, a.out_dtype = GQA_DTYPE_F32;
  a.sliding_window = 16;  // rings need one; W + T - 1 <= capacity
  a.fully_masked_policy = GQA_FULLY_MASKED_UNIFORM;
  return a;
}

// Positions [B, n]: random distinct-ish values, or the cache positions.
std::vector<int64_t> Positions(const std::vector<int64_t>& lengths, int64_t n,
                               bool random, std::mt19937* rng) {
  std::vector<int64_t> pos;
  for (size_t b = 0; b < lengths.size(); ++b) {
    for (int64_t i = 0; i < n; ++i) {
      pos.push_back(random ? static_cast<int64_t>((*rng)() % 200000)
                           : lengths[b] + i);
    }
  }
  return pos;
}

// One step on two copies of a block cache: fused (append_rope + q_rope) on
// `a`, unfused (gqa_rope, plain calls) on `b`; pools and outputs must match
// bit for bit.
void FusedStep(const Config& k, const Variant& w, int64_t n, int64_t Hq,
               Cache* a, Cache* b, std::mt19937* rng) {
  const std::vector<float> norm = Random(static_cast<size_t>(k.D), rng);
  const gqa_rope_params p = ParamsOf(w, k.D, norm);
  const std::vector<float> kf = Random(k.B * n * k.Hkv * k.D, rng);
  const std::vector<float> vf = Random(k.B * n * k.Hkv * k.Dv(), rng);
  const std::vector<uint16_t> kh = ToHalf(kf);
  const std::vector<float> qf = Random(k.B * n * Hq * k.D, rng);
  const std::vector<uint16_t> qh = ToHalf(qf);
  const void* kx = w.k_f16 ? static_cast<const void*>(kh.data()) : kf.data();
  const void* qx = w.q_f16 ? static_cast<const void*>(qh.data()) : qf.data();
  const std::vector<int64_t> kpos = Positions(a->lengths, n, w.positions, rng);
  // Fused: f16 sources go in as f16 (k and v), the unfused path gets the
  // same values in f32 (f16 -> f32 is exact).
  const std::vector<uint16_t> vh = ToHalf(vf);
  std::vector<float> v32(vf.size());
  for (size_t i = 0; i < vf.size(); ++i) v32[i] = gqa::HalfToFloat(vh[i]);
  const void* vx = w.k_f16 ? static_cast<const void*>(vh.data()) : vf.data();
  REQUIRE(gqa_block_cache_append_rope(
              &a->c, n, nullptr, kx, vx,
              w.k_f16 ? GQA_DTYPE_F16 : GQA_DTYPE_F32, &p,
              w.positions ? kpos.data() : nullptr) == GQA_STATUS_OK);
  const std::vector<float> k_rot =
      RopeF32(p, k.B, n, k.Hkv, k.D, kpos.data(), kx, w.k_f16);
  REQUIRE(gqa_block_cache_append(&b->c, n, nullptr, k_rot.data(),
                                 w.k_f16 ? v32.data() : vf.data(),
                                 GQA_DTYPE_F32) == GQA_STATUS_OK);
  REQUIRE(a->lengths == b->lengths);
  REQUIRE(memcmp(a->pool, b->pool, a->PoolBytes()) == 0);

  const int64_t T = n;
  std::vector<int64_t> qpos = Positions(a->lengths, T, w.positions, rng);
  if (!w.positions) {
    for (size_t i = 0; i < qpos.size(); ++i) qpos[i] -= T;
  }
  std::vector<float> out_a(static_cast<size_t>(k.B * T * Hq * k.Dv()), NAN);
  std::vector<float> out_b = out_a;
  gqa_kv_attend_params pa = AttendOf(T, Hq, qx, w.q_f16, out_a.data());
  pa.q_rope = &p;
  pa.q_positions = w.positions ? qpos.data() : nullptr;
  const std::vector<float> q_rot =
      RopeF32(p, k.B, T, Hq, k.D, qpos.data(), qx, w.q_f16);
  const gqa_kv_attend_params pb =
      AttendOf(T, Hq, q_rot.data(), false, out_b.data());
  size_t wa = 0, wb = 0;
  REQUIRE(gqa_block_cache_attend_workspace_size(&a->c, &pa, 1, &wa) ==
          GQA_STATUS_OK);
  REQUIRE(gqa_block_cache_attend_workspace_size(&b->c, &pb, 1, &wb) ==
          GQA_STATUS_OK);
  CHECK(wa >= wb);
  std::vector<unsigned char> ws(wa + 64);
  void* aligned =
      ws.data() + (64 - reinterpret_cast<uintptr_t>(ws.data()) % 64);
  const std::vector<float> q_before = qf;
  REQUIRE(gqa_block_cache_attend(&a->c, &pa, aligned, wa, nullptr) ==
          GQA_STATUS_OK);
  REQUIRE(gqa_block_cache_attend(&b->c, &pb, aligned, wb, nullptr) ==
          GQA_STATUS_OK);
  CHECK(qf == q_before);  // q is not written
  REQUIRE(memcmp(out_a.data(), out_b.data(), out_a.size() * 4) == 0);
  for (float x : out_a) REQUIRE(std::isfinite(x));
}

TEST_CASE("block cache: append_rope + q_rope equal gqa_rope then plain calls") {
  gqa::test::ForEachTarget([](int64_t) {
    std::mt19937 rng(11);
    const int32_t dtypes[] = {GQA_DTYPE_F32, GQA_DTYPE_F16, GQA_DTYPE_Q8,
                              GQA_DTYPE_Q4};
    int variant = 0;
    for (int32_t dtype : dtypes) {
      for (int flags = 0; flags < 4; ++flags) {
        Config k;
        k.dtype = dtype, k.ring = flags & 1, k.rotate = flags & 2;
        k.D = 64, k.capacity = 40, k.bt = 8;
        // 16 of the 64 option mixes, each bit set in half of them.
        const int bits = (variant * 13 + 5) % 64;
        Variant w;
        w.interleaved = bits & 1, w.norm = bits & 2, w.partial = bits & 4;
        w.k_f16 = bits & 8, w.q_f16 = bits & 16, w.positions = bits & 32;
        ++variant;
        CAPTURE(dtype);
        CAPTURE(flags);
        CAPTURE(variant);
        Cache a(k, 3), b(k, 3);
        FusedStep(k, w, 12, 4, &a, &b, &rng);  // prefill
        for (int step = 0; step < 3; ++step) {
          FusedStep(k, w, 1, 4, &a, &b, &rng);  // decode
        }
        FusedStep(k, w, 4, 4, &a, &b, &rng);  // a verify step
      }
    }
  });
}

// A v1 cache and its memory.
struct V1Cache {
  gqa_kv_cache c{};
  std::vector<unsigned char> k, v;
  std::vector<int64_t> lengths, held;
  V1Cache(int64_t B, int64_t C, int64_t Hkv, int64_t D, int32_t dtype,
          bool ring) {
    const size_t bytes =
        static_cast<size_t>(B * C * Hkv * D) * (dtype == GQA_DTYPE_F16 ? 2 : 4);
    k.assign(bytes, 0x5A), v.assign(bytes, 0x5A);
    lengths.assign(static_cast<size_t>(B), 0);
    held.assign(static_cast<size_t>(B), 0);
    c.batch = B, c.capacity = C, c.kv_heads = Hkv, c.head_dim = D;
    c.dtype = dtype, c.ring = ring;
    c.k = k.data(), c.v = v.data();
    c.lengths = lengths.data(), c.held_from = held.data();
  }
};

TEST_CASE("v1 cache: append_rope + q_rope against the float64 oracles") {
  gqa::test::ForEachTarget([](int64_t) {
    for (int32_t dtype : {GQA_DTYPE_F32, GQA_DTYPE_F16}) {
      for (int ring = 0; ring < 2; ++ring) {
        CAPTURE(dtype);
        CAPTURE(ring);
        std::mt19937 rng(5 + ring);
        const int64_t B = 2, C = ring ? 40 : 64, Hkv = 2, Hq = 6, D = 32;
        V1Cache fused(B, C, Hkv, D, dtype, ring);
        const std::vector<float> norm = Random(D, &rng);
        Variant w;
        w.norm = ring, w.interleaved = !ring, w.k_f16 = dtype == GQA_DTYPE_F16;
        const gqa_rope_params p = ParamsOf(w, D, norm);
        // The oracle's rows: every appended k (rotated in float64) and v.
        std::vector<std::vector<double>> ks(B), vs(B);
        const int64_t steps[] = {20, 1, 1, 3, 1, 30, 1};
        for (int64_t n : steps) {
          const std::vector<float> kf = Random(B * n * Hkv * D, &rng);
          const std::vector<float> vf = Random(B * n * Hkv * D, &rng);
          const std::vector<uint16_t> kh = ToHalf(kf), vh = ToHalf(vf);
          const void* kx =
              w.k_f16 ? static_cast<const void*>(kh.data()) : kf.data();
          const void* vx =
              w.k_f16 ? static_cast<const void*>(vh.data()) : vf.data();
          REQUIRE(
              gqa_kv_cache_append_rope(&fused.c, n, nullptr, kx, vx,
                                       w.k_f16 ? GQA_DTYPE_F16 : GQA_DTYPE_F32,
                                       &p, nullptr) == GQA_STATUS_OK);
          gqa::reference::RopeCall kc;
          kc.batch = B, kc.tokens = n, kc.heads = Hkv, kc.head_dim = D;
          kc.interleaved = w.interleaved, kc.theta = p.theta;
          if (w.norm) kc.norm_weight.assign(norm.begin(), norm.end());
          kc.eps = 1e-5;
          for (int64_t b = 0; b < B; ++b) {
            for (int64_t i = 0; i < n; ++i) {
              kc.positions.push_back(fused.lengths[b] - n + i);
            }
          }
          for (size_t i = 0; i < kf.size(); ++i) {
            kc.x.push_back(w.k_f16 ? gqa::HalfToFloat(kh[i]) : kf[i]);
          }
          const std::vector<double> kr = gqa::reference::Rope(kc);
          const size_t row = static_cast<size_t>(n * Hkv * D);
          for (int64_t b = 0; b < B; ++b) {
            for (size_t i = 0; i < row; ++i) {
              double x = kr[b * row + i];
              if (dtype == GQA_DTYPE_F16) {
                x = gqa::HalfToFloat(gqa::FloatToHalf(static_cast<float>(x)));
              }
              ks[b].push_back(x);
              double y = vf[b * row + i];
              if (dtype == GQA_DTYPE_F16) {
                y = gqa::HalfToFloat(gqa::FloatToHalf(vf[b * row + i]));
              }
              vs[b].push_back(y);
            }
          }
          // Attend with the newest T = min(n, 4) queries, rotated in the call.
          const int64_t T = n < 4 ? n : 4;
          const std::vector<float> qf = Random(B * T * Hq * D, &rng);
          std::vector<float> out(qf.size(), NAN);
          gqa_kv_attend_params a =
              AttendOf(T, Hq, qf.data(), false, out.data());
          a.q_rope = &p;
          size_t wbytes = 0;
          REQUIRE(gqa_kv_cache_attend_workspace_size(&fused.c, &a, 2,
                                                     &wbytes) == GQA_STATUS_OK);
          std::vector<unsigned char> ws(wbytes + 64);
          void* al =
              ws.data() + (64 - reinterpret_cast<uintptr_t>(ws.data()) % 64);
          REQUIRE(gqa_kv_cache_attend(&fused.c, &a, al, wbytes, nullptr) ==
                  GQA_STATUS_OK);
          for (int64_t b = 0; b < B; ++b) {
            const int64_t len = fused.lengths[b];
            gqa::reference::RopeCall qc = kc;
            qc.batch = 1, qc.tokens = T, qc.heads = Hq;
            qc.positions.clear();
            for (int64_t t = 0; t < T; ++t) qc.positions.push_back(len - T + t);
            qc.x.assign(qf.begin() + b * T * Hq * D,
                        qf.begin() + (b + 1) * T * Hq * D);
            gqa::reference::AttentionCall r;
            r.batch = 1, r.q_len = T, r.kv_len = len;
            r.q_heads = Hq, r.kv_heads = Hkv, r.head_dim = D;
            r.q = gqa::reference::Rope(qc);
            r.k = ks[b], r.v = vs[b];
            r.scale = 1.0 / std::sqrt(static_cast<double>(D));
            r.causal = true, r.position_offset = len - T;
            r.sliding_window = 16;
            const std::vector<double> want = gqa::reference::Attention(r).out;
            const double tol =
                gqa::test::F16KvTol(dtype == GQA_DTYPE_F16, 2e-4);
            for (size_t i = 0; i < want.size(); ++i) {
              REQUIRE(std::fabs(out[b * T * Hq * D + i] - want[i]) <=
                      tol + tol * std::fabs(want[i]));
            }
          }
        }
      }
    }
  });
}

// A tree of drafts appended at their depths (positions len + depth), then
// its accepted path kept: the cache holds what appending the path in order
// at the next positions gives, bit for bit.
TEST_CASE(
    "block cache: a kept path of a rope'd tree equals the path appended") {
  Config k;
  k.B = 1, k.D = 32, k.capacity = 64, k.bt = 8, k.dtype = GQA_DTYPE_Q8;
  std::mt19937 rng(9);
  const std::vector<float> norm = Random(k.D, &rng);
  Variant w;
  const gqa_rope_params p = ParamsOf(w, k.D, norm);
  Cache tree(k, 1), path(k, 2);
  const std::vector<float> k0 = Random(10 * k.Hkv * k.D, &rng);
  const std::vector<float> v0 = Random(10 * k.Hkv * k.D, &rng);
  for (Cache* c : {&tree, &path}) {
    REQUIRE(gqa_block_cache_append_rope(&c->c, 10, nullptr, k0.data(),
                                        v0.data(), GQA_DTYPE_F32, &p,
                                        nullptr) == GQA_STATUS_OK);
  }
  // Drafts 0..5 with depths 0,1,1,2,2,3; accepted path 0 -> 2 -> 4 -> 5.
  const int64_t depth[6] = {0, 1, 1, 2, 2, 3};
  const int64_t keep[4] = {0, 2, 4, 5};
  const size_t row = static_cast<size_t>(k.Hkv * k.D);
  const std::vector<float> kd = Random(6 * row, &rng);
  const std::vector<float> vd = Random(6 * row, &rng);
  std::vector<int64_t> pos(6);
  for (int i = 0; i < 6; ++i) pos[i] = 10 + depth[i];
  REQUIRE(gqa_block_cache_append_rope(&tree.c, 6, nullptr, kd.data(), vd.data(),
                                      GQA_DTYPE_F32, &p,
                                      pos.data()) == GQA_STATUS_OK);
  REQUIRE(gqa_block_cache_keep(&tree.c, 0, 6, keep, 4) == GQA_STATUS_OK);
  std::vector<float> kp, vp;
  for (int64_t i : keep) {
    kp.insert(kp.end(), kd.begin() + i * row, kd.begin() + (i + 1) * row);
    vp.insert(vp.end(), vd.begin() + i * row, vd.begin() + (i + 1) * row);
  }
  REQUIRE(gqa_block_cache_append_rope(&path.c, 4, nullptr, kp.data(), vp.data(),
                                      GQA_DTYPE_F32, &p,
                                      nullptr) == GQA_STATUS_OK);
  REQUIRE(tree.lengths[0] == 14);
  REQUIRE(path.lengths[0] == 14);
  std::vector<float> ka(k.D), va(k.D), kb(k.D), vb(k.D);
  for (int64_t q = 0; q < 14; ++q) {
    for (int64_t g = 0; g < k.Hkv; ++g) {
      REQUIRE(gqa_block_cache_read(&tree.c, 0, q, g, ka.data(), va.data()) ==
              GQA_STATUS_OK);
      REQUIRE(gqa_block_cache_read(&path.c, 0, q, g, kb.data(), vb.data()) ==
              GQA_STATUS_OK);
      REQUIRE(memcmp(ka.data(), kb.data(), ka.size() * 4) == 0);
      REQUIRE(memcmp(va.data(), vb.data(), va.size() * 4) == 0);
    }
  }
}

// Bad RoPE values: a status, a message, and nothing written (pool, table,
// lengths; out on an attend).
TEST_CASE("cache rope: bad params and positions write nothing") {
  Config k;
  k.D = 32, k.capacity = 32, k.bt = 8;
  Cache c(k, 4);
  std::mt19937 rng(2);
  const size_t row = static_cast<size_t>(k.Hkv * k.D);
  const std::vector<float> kx = Random(k.B * 3 * row, &rng);
  const std::vector<float> vx = Random(k.B * 3 * row, &rng);
  REQUIRE(gqa_block_cache_append(&c.c, 3, nullptr, kx.data(), vx.data(),
                                 GQA_DTYPE_F32) == GQA_STATUS_OK);
  V1Cache v1(k.B, k.capacity, k.Hkv, k.D, GQA_DTYPE_F32, false);
  REQUIRE(gqa_kv_cache_append(&v1.c, 3, nullptr, kx.data(), vx.data(),
                              GQA_DTYPE_F32) == GQA_STATUS_OK);
  gqa_rope_params good;
  gqa_rope_params_init(&good);
  struct Bad {
    const char* what;
    gqa_rope_params p;
    bool null_params;
    std::vector<int64_t> positions;  // empty: NULL
  };
  std::vector<Bad> bad;
  auto with = [&](const char* what, void (*edit)(gqa_rope_params*)) {
    Bad b{what, good, false, {}};
    edit(&b.p);
    bad.push_back(b);
  };
  with("odd rotary_dim", [](gqa_rope_params* p) { p->rotary_dim = 7; });
  with("rotary_dim > D", [](gqa_rope_params* p) { p->rotary_dim = 34; });
  with("theta <= 1", [](gqa_rope_params* p) { p->theta = 1.0; });
  with("NaN theta", [](gqa_rope_params* p) { p->theta = NAN; });
  with("unknown style", [](gqa_rope_params* p) { p->style = 9; });
  with("bad linear factor", [](gqa_rope_params* p) {
    p->scaling = GQA_ROPE_SCALING_LINEAR, p->factor = -1.0;
  });
  bad.push_back({"negative position", good, false, {0, -1, 2, 3, 4, 5}});
  bad.push_back({"position 2^24", good, false, {0, 1, 2, 3, 4, 1 << 24}});
  bad.push_back({"positions without params", good, true, {0, 1, 2, 3, 4, 5}});
  const std::vector<unsigned char> pool_before(
      static_cast<unsigned char*>(c.pool),
      static_cast<unsigned char*>(c.pool) + c.PoolBytes());
  const std::vector<unsigned char> k1_before = v1.k;
  const std::vector<int64_t> len_before = c.lengths;
  for (const Bad& b : bad) {
    CAPTURE(b.what);
    const gqa_rope_params* p = b.null_params ? nullptr : &b.p;
    const int64_t* pos = b.positions.empty() ? nullptr : b.positions.data();
    // Append: 3 new tokens per batch (positions [2, 3]).
    CHECK(gqa_block_cache_append_rope(&c.c, 3, nullptr, kx.data(), vx.data(),
                                      GQA_DTYPE_F32, p, pos) != GQA_STATUS_OK);
    CHECK(strlen(gqa_last_error_message()) > 0);
    CHECK(gqa_kv_cache_append_rope(&v1.c, 3, nullptr, kx.data(), vx.data(),
                                   GQA_DTYPE_F32, p, pos) != GQA_STATUS_OK);
    CHECK(c.lengths == len_before);
    CHECK(v1.lengths == len_before);
    CHECK(memcmp(c.pool, pool_before.data(), pool_before.size()) == 0);
    CHECK(v1.k == k1_before);
    // Attend: T = 3 queries per batch (q_positions [2, 3]).
    const std::vector<float> q = Random(k.B * 3 * 4 * k.D, &rng);
    std::vector<float> out(q.size(), 7.0f);
    gqa_kv_attend_params a = AttendOf(3, 4, q.data(), false, out.data());
    a.q_rope = p;
    a.q_positions = pos;
    std::vector<unsigned char> ws(1 << 20);
    void* al = ws.data() + (64 - reinterpret_cast<uintptr_t>(ws.data()) % 64);
    CHECK(gqa_block_cache_attend(&c.c, &a, al, ws.size() - 64, nullptr) !=
          GQA_STATUS_OK);
    CHECK(gqa_kv_cache_attend(&v1.c, &a, al, ws.size() - 64, nullptr) !=
          GQA_STATUS_OK);
    for (float x : out) REQUIRE(x == 7.0f);
    size_t bytes = 0;
    if (pos == nullptr || b.null_params) {  // size queries read no positions
      CHECK(gqa_block_cache_attend_workspace_size(&c.c, &a, 1, &bytes) !=
            GQA_STATUS_OK);
      CHECK(gqa_kv_cache_attend_workspace_size(&v1.c, &a, 1, &bytes) !=
            GQA_STATUS_OK);
    }
  }
  // Positions that overlap what the call writes.
  CHECK(gqa_block_cache_append_rope(&c.c, 1, nullptr, kx.data(), vx.data(),
                                    GQA_DTYPE_F32, &good,
                                    c.lengths.data()) != GQA_STATUS_OK);
  CHECK(gqa_kv_cache_append_rope(&v1.c, 1, nullptr, kx.data(), vx.data(),
                                 GQA_DTYPE_F32, &good,
                                 v1.lengths.data()) != GQA_STATUS_OK);
  CHECK(c.lengths == len_before);
  std::vector<float> q(static_cast<size_t>(k.B * 4 * k.D), 0.5f);
  std::vector<float> out(q.size() + 8, 7.0f);
  gqa_kv_attend_params a = AttendOf(1, 4, q.data(), false, out.data());
  a.q_rope = &good;
  int64_t* in_out = reinterpret_cast<int64_t*>(out.data() + 2);
  a.q_positions = in_out;
  in_out[0] = in_out[1] = 1;
  std::vector<unsigned char> ws(1 << 20);
  void* al = ws.data() + (64 - reinterpret_cast<uintptr_t>(ws.data()) % 64);
  CHECK(gqa_block_cache_attend(&c.c, &a, al, ws.size() - 64, nullptr) !=
        GQA_STATUS_OK);
  CHECK(gqa_kv_cache_attend(&v1.c, &a, al, ws.size() - 64, nullptr) !=
        GQA_STATUS_OK);
  CHECK(out[0] == 7.0f);
  // The fused attend's workspace holds the rotated queries.
  a.q_positions = nullptr;
  size_t with_rope = 0, without = 0;
  REQUIRE(gqa_kv_cache_attend_workspace_size(&v1.c, &a, 1, &with_rope) ==
          GQA_STATUS_OK);
  a.q_rope = nullptr;
  REQUIRE(gqa_kv_cache_attend_workspace_size(&v1.c, &a, 1, &without) ==
          GQA_STATUS_OK);
  CHECK(with_rope >= without + static_cast<size_t>(k.B * 4 * k.D * 4));
}

}  // namespace
