// libFuzzer target over the whole gqa C ABI (layer, attention core, KV
// cache, KV cache v2, draft verification, RoPE): errors must write nothing
// and leave a message; small successful calls must match a float64
// reference. Build and run: run_fuzz.sh.
#include "gqa/attention.h"
#include "gqa/gqa.h"
#include "gqa/kv_cache.h"
#include "tests/fuzz/fuzz_block_cache.h"
#include "tests/fuzz/fuzz_decode.h"
#include "tests/fuzz/fuzz_drafts.h"
#include "tests/fuzz/fuzz_layer.h"
#include "tests/fuzz/fuzz_reference.h"
#include "tests/fuzz/fuzz_rope.h"

namespace gqa_fuzz {
namespace {

int64_t Clamp(i128 x) { return x > INT64_MAX ? INT64_MAX : (int64_t)x; }

// Strides of a [n0, n1, n2, d] tensor: default, head-major, padded or raw.
void PickStrides(Reader& r, int64_t n1, int64_t n2, int64_t d, int64_t* s) {
  const int mode = r.U8() % 4;
  if (mode == 0) {
    s[0] = s[1] = s[2] = 0;
  } else if (mode == 1) {  // [n0][n2][n1][d]
    s[1] = d, s[2] = Clamp(Prod({n1, d})), s[0] = Clamp(Prod({n1, n2, d}));
  } else if (mode == 2) {  // padded token-major
    s[2] = Clamp(i128{d} + 1), s[1] = Clamp(Prod({n2, s[2]}) + 2);
    s[0] = Clamp(Prod({n1, s[1]}) + 3);
  } else {
    for (int i = 0; i < 3; ++i) s[i] = r.Dim(0, 40);
  }
}
// Resolved strides (all zero: token-major) as i128 for the harness' sizing.
void Resolve(const int64_t* s, int64_t n1, int64_t n2, int64_t d, i128* o) {
  if (s[0] == 0 && s[1] == 0 && s[2] == 0) {
    o[2] = d, o[1] = Prod({n2, d}), o[0] = Prod({n1, n2, d});
  } else {
    o[0] = s[0], o[1] = s[1], o[2] = s[2];
  }
}
i128 End(int64_t e0, int64_t e1, int64_t e2, int64_t d, const i128* s) {
  if (e0 < 1 || e1 < 1 || e2 < 1 || d < 1) return -1;
  return Prod({e0 - 1, s[0]}) + Prod({e1 - 1, s[1]}) + Prod({e2 - 1, s[2]}) + d;
}

void FuzzAttention(Reader& r, Rng& rng) {
  const int64_t B = r.Dim(1, 2), T = r.Dim(1, 4), S = r.Dim(1, 5);
  const int64_t Hkv = r.Dim(1, 2), D = r.Dim(1, 9);
  int64_t Hq = Group(Hkv, r.U8() % 3);
  if (r.hostile && r.U8() >= 240) Hq = r.Dim(1, 7);
  gqa_attention_params p;
  gqa_attention_params_init(&p);
  p.batch = B, p.q_len = T, p.kv_len = S, p.q_heads = Hq, p.kv_heads = Hkv;
  p.head_dim = D;
  p.q_dtype = r.U8() % 2, p.kv_dtype = r.U8() % 2, p.out_dtype = r.U8() % 2;
  p.scores_dtype = r.U8() % 2;
  if (r.hostile && r.U8() >= 248) p.kv_dtype = r.Bit() ? 2 : -1;
  int64_t qs[3], ks[3], vs[3], os[3];
  PickStrides(r, T, Hq, D, qs), PickStrides(r, S, Hkv, D, ks);
  PickStrides(r, S, Hkv, D, vs), PickStrides(r, T, Hq, D, os);
  p.q_stride_batch = qs[0], p.q_stride_token = qs[1], p.q_stride_head = qs[2];
  p.k_stride_batch = ks[0], p.k_stride_token = ks[1], p.k_stride_head = ks[2];
  p.v_stride_batch = vs[0], p.v_stride_token = vs[1], p.v_stride_head = vs[2];
  p.out_stride_batch = os[0], p.out_stride_token = os[1];
  p.out_stride_head = os[2];
  p.scale = r.Bit() ? 0.0f : r.Param(0.05f, 2.0f);
  p.causal = r.Bit();
  p.position_offset = r.Dim(0, 6);
  p.sliding_window = r.Bit() ? 0 : r.Dim(0, 6);
  p.fully_masked_policy = r.hostile && r.U8() >= 248 ? 3 : r.U8() % 3;
  const bool use_kl = r.Bit(), use_km = r.Bit(), use_mask = r.Bit();
  const bool use_scores = r.Bit(), use_pool = r.Bit();
  const int64_t max_threads = r.Bit() ? 1 : r.Dim(1, 4);
  const uint8_t ws_mode = r.U8();

  bool must_fail = B < 1 || T < 1 || S < 0 || Hq < 1 || Hkv < 1 || D < 1 ||
                   Hq % Hkv != 0 || !ValidDtype(p.kv_dtype) ||
                   !ValidPolicy(p.fully_masked_policy) || !(p.scale >= 0) ||
                   isinf(p.scale) || p.sliding_window < 0 ||
                   p.position_offset < 0;
  for (int i = 0; i < 3; ++i)
    must_fail |= qs[i] < 0 || ks[i] < 0 || vs[i] < 0 || os[i] < 0;
  // skip: a buffer too big to allocate, yet possible.
  bool skip = false, impossible = false;
  auto size_ok = [&](i128 elems, int64_t es) {
    if (Prod({elems, es}) > kImpossibleBytes)
      return impossible = must_fail = true;
    if (Prod({elems, es}) > kMaxAlloc) skip = true;
    return elems >= 0;
  };
  i128 rq[3], rk[3], rv[3], ro[3];
  Resolve(qs, T, Hq, D, rq), Resolve(ks, S, Hkv, D, rk);
  Resolve(vs, S, Hkv, D, rv), Resolve(os, T, Hq, D, ro);
  const i128 q_end = End(B, T, Hq, D, rq), k_end = End(B, S, Hkv, D, rk);
  const i128 v_end = End(B, S, Hkv, D, rv), o_end = End(B, T, Hq, D, ro);
  const i128 n_scores = Prod({B, Hq, T, S});
  size_ok(q_end, 4), size_ok(k_end, 4), size_ok(v_end, 4), size_ok(o_end, 4);
  if (use_scores) size_ok(n_scores, 4);
  // Mask [B, Hq, T, S] strides: broadcast (0) or contiguous, raw if hostile.
  int64_t ms[4] = {0, 0, 0, 0};
  const int64_t mext[4] = {B, Hq, T, S};
  i128 m_end = 1;
  if (use_mask) {
    int64_t run = 1;
    for (int i = 3; i >= 0; --i) {
      ms[i] = r.Bit() ? 0 : run;
      if (r.hostile && r.U8() >= 240) ms[i] = r.Dim(0, 3);
      run = (int64_t)((i128)run * (mext[i] > 0 ? mext[i] : 1) % INT64_MAX);
      must_fail |= ms[i] < 0;
      if (mext[i] > 0 && ms[i] > 0) m_end += Prod({mext[i] - 1, ms[i]});
    }
    size_ok(m_end, 1);
  }
  if (use_kl) size_ok(B, 8);
  if (use_km) size_ok(Prod({B, S}), 1);
  if (skip) return;

  Tensor q = MakeTensor(q_end, p.q_dtype, rng, 1.0);
  Tensor k = MakeTensor(k_end, p.kv_dtype == 1, rng, 1.0);
  Tensor v = MakeTensor(v_end, p.kv_dtype == 1, rng, 1.0);
  Tensor out = MakeTensor(o_end, p.out_dtype, rng, 0);
  Tensor scores = MakeTensor(use_scores ? n_scores : 0, p.scores_dtype, rng, 0);
  bool finite =
      MaybeNonFinite(r, q) + MaybeNonFinite(r, k) + MaybeNonFinite(r, v) == 0;
  std::vector<int64_t> kl(B >= 1 && B <= kMaxAlloc / 8 ? B : 2);
  for (auto& x : kl) {
    x = r.Dim(0, S >= 0 && S < 6 ? S : 5);
    must_fail |= use_kl && (x < 0 || x > S);
  }
  const i128 n_km = Prod({B, S});
  std::vector<uint8_t> km(n_km >= 0 && n_km <= kMaxAlloc ? (size_t)n_km : 8);
  std::vector<uint8_t> mask(m_end > 0 && m_end <= kMaxAlloc ? (size_t)m_end
                                                            : 8);
  for (auto& x : km) x = rng.Next() % 4 != 0;
  for (auto& x : mask) x = rng.Next() % 4 != 0;
  p.q = q.data(), p.k = k.data(), p.v = v.data(), p.out = out.data();
  p.key_lengths = use_kl ? kl.data() : nullptr;
  p.key_mask = use_km ? km.data() : nullptr;
  p.mask = use_mask ? mask.data() : nullptr;
  p.mask_stride_batch = ms[0], p.mask_stride_head = ms[1];
  p.mask_stride_query = ms[2], p.mask_stride_key = ms[3];
  p.scores = use_scores ? scores.data() : nullptr;
  if (r.U8() >= 248) p.out = q.data(), must_fail = true;  // out aliases q

  if (!must_fail &&
      static_cast<double>(B) * Hq * T * S * (D + 16) > kRunBudget) {
    return;  // valid, but too much work for one input
  }
  size_t ws_size = 0;
  gqa_status st = gqa_attention_workspace_size(&p, max_threads, &ws_size);
  Workspace ws;
  if (!ws.FromQuery(st, ws_size, ws_mode, max_threads == 1, &must_fail)) return;
  Poison(out.bytes), Poison(scores.bytes);
  const std::vector<uint8_t> out0 = out.bytes, scores0 = scores.bytes;
  const std::vector<uint8_t> q0 = q.bytes;
  if (getenv("GQA_FUZZ_DEBUG")) {
    fprintf(stderr,
            "attention: B=%lld T=%lld S=%lld Hq=%lld Hkv=%lld D=%lld "
            "strides q(%lld,%lld,%lld) k(%lld,%lld,%lld) v(%lld,%lld,%lld) "
            "out(%lld,%lld,%lld) mask(%lld,%lld,%lld,%lld) kl=%d km=%d\n",
            (long long)B, (long long)T, (long long)S, (long long)Hq,
            (long long)Hkv, (long long)D, (long long)qs[0], (long long)qs[1],
            (long long)qs[2], (long long)ks[0], (long long)ks[1],
            (long long)ks[2], (long long)vs[0], (long long)vs[1],
            (long long)vs[2], (long long)os[0], (long long)os[1],
            (long long)os[2], (long long)ms[0], (long long)ms[1],
            (long long)ms[2], (long long)ms[3], use_kl, use_km);
  }
  st = gqa_attention(&p, ws.ptr, ws.size, use_pool ? Pool() : nullptr);
  ExpectErrorMessage(st);
  if (st != GQA_STATUS_OK) {
    ExpectUnchanged(out.bytes, out0, "out");
    ExpectUnchanged(scores.bytes, scores0, "scores");
    ExpectUnchanged(q.bytes, q0, "q");
    return;
  }
  if (must_fail) {
    fprintf(stderr,
            "B=%lld T=%lld S=%lld Hq=%lld Hkv=%lld D=%lld dtypes=%d%d%d%d "
            "scale=%g window=%lld offset=%lld policy=%d ws_bad=%d kl=%d "
            "kl0=%lld\n",
            (long long)B, (long long)T, (long long)S, (long long)Hq,
            (long long)Hkv, (long long)D, p.q_dtype, p.kv_dtype, p.out_dtype,
            p.scores_dtype, p.scale, (long long)p.sliding_window,
            (long long)p.position_offset, p.fully_masked_policy, ws.bad, use_kl,
            (long long)kl[0]);
    Finding("gqa_attention accepted an invalid call");
  }
  if ((!finite && !Strict()) || !(p.scale <= 2.0f) || S == 0) return;

  CoreRef c{B, T, S, Hq, Hkv, D, 0, false, {}, {}, {}, {}};
  c.scale = p.scale > 0 ? p.scale : 1.0 / sqrt((double)D);
  c.uniform_when_masked = p.fully_masked_policy == GQA_FULLY_MASKED_UNIFORM ||
                          (p.fully_masked_policy == 0 && !use_scores);
  c.q = [&](int64_t b, int64_t t, int64_t h, int64_t d) {
    return q.Get((int64_t)(b * rq[0] + t * rq[1] + h * rq[2] + d));
  };
  c.k = [&](int64_t b, int64_t s, int64_t h, int64_t d) {
    return k.Get((int64_t)(b * rk[0] + s * rk[1] + h * rk[2] + d));
  };
  c.v = [&](int64_t b, int64_t s, int64_t h, int64_t d) {
    return v.Get((int64_t)(b * rv[0] + s * rv[1] + h * rv[2] + d));
  };
  c.allowed = [&](int64_t b, int64_t u, int64_t t, int64_t s) {
    if (use_kl && s >= kl[b]) return false;
    if (use_km && !km[b * S + s]) return false;
    if (use_mask &&
        !mask[(int64_t)(b * ms[0] + u * ms[1] + t * ms[2] + s * ms[3])])
      return false;
    const i128 pos = i128{p.position_offset} + t;
    if (p.causal && s > pos) return false;
    const i128 dist = pos > s ? pos - s : s - pos;
    return p.sliding_window == 0 || dist < p.sliding_window;
  };
  std::vector<double> want, want_scores;
  if (RefWork(c) > kRefBudget) return;
  RunCoreRef(c, &want, &want_scores);
  const bool half = p.q_dtype || p.kv_dtype || p.out_dtype;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t u = 0; u < Hq; ++u)
        for (int64_t d = 0; d < D; ++d) {
          const int64_t i = ((b * T + t) * Hq + u) * D + d;
          ExpectClose(out.Get((int64_t)(b * ro[0] + t * ro[1] + u * ro[2] + d)),
                      want[i], half ? 1e-2 : 1e-4, "attention out", i);
        }
  for (int64_t i = 0; use_scores && i < (int64_t)want_scores.size(); ++i)
    ExpectClose(scores.Get(i), want_scores[i],
                half || p.scores_dtype ? 1e-2 : 1e-4, "attention scores", i);
}

// A cache [B, capacity, Hkv, D] with random history; append, attend or both.
void FuzzKvCache(Reader& r, Rng& rng) {
  gqa_kv_cache c = {};
  c.batch = r.Dim(1, 2), c.capacity = r.Dim(1, 8), c.kv_heads = r.Dim(1, 2);
  c.head_dim = r.Dim(1, 6), c.dtype = r.U8() % 2, c.ring = r.Bit();
  if (r.hostile && r.U8() >= 248) c.dtype = 5;
  const int64_t B = c.batch, cap = c.capacity, Hkv = c.kv_heads;
  const int64_t D = c.head_dim;
  bool bad_cache = B < 1 || cap < 1 || Hkv < 1 || D < 1 || !ValidDtype(c.dtype);
  const i128 n_cache = Prod({B, cap, Hkv, D});
  bool skip = false, impossible = false;
  auto size_ok = [&](i128 bytes, bool* fail) {
    if (bytes > kImpossibleBytes)
      impossible = *fail = true;
    else if (bytes > kMaxAlloc)
      skip = true;
  };
  size_ok(Prod({n_cache, 4}), &bad_cache);
  Tensor k = MakeTensor(bad_cache ? 0 : n_cache, c.dtype == 1, rng, 1.0);
  Tensor v = MakeTensor(bad_cache ? 0 : n_cache, c.dtype == 1, rng, 1.0);
  size_ok(Prod({B, 8}), &bad_cache);  // lengths [B]
  // The cache (lengths included) is validated first: it must be real.
  if (skip) return;
  std::vector<int64_t> len(B >= 1 && B <= kMaxAlloc / 8 ? B : 2);
  for (auto& x : len) {
    x = r.Dim(0, c.ring ? 3 * (cap > 0 && cap < 9 ? cap : 1) : cap);
    bad_cache |= x < 0 || (!c.ring && x > cap);
  }
  c.k = k.data(), c.v = v.data(), c.lengths = len.data();
  const int op = r.U8() % 3;  // 0 append, 1 attend, 2 both
  bool finite = true;
  if (op != 1) {
    const int64_t n = r.Dim(0, 4);
    const bool use_counts = r.Bit();
    const int32_t src_dtype = r.hostile && r.U8() >= 248 ? 9 : r.U8() % 2;
    std::vector<int64_t> counts(len.size());
    bool must_fail = bad_cache || n < 0 || !ValidDtype(src_dtype);
    for (size_t b = 0; b < counts.size(); ++b) {
      counts[b] = use_counts ? r.Dim(0, n >= 0 && n < 5 ? n : 4) : n;
      if (counts[b] < 0 || counts[b] > n) must_fail = true;
      const i128 after = i128{len[b]} + counts[b];
      if (!c.ring && after > cap) must_fail = true;
      if (c.ring && counts[b] > cap) must_fail = true;
    }
    const i128 n_src = Prod({B, n, Hkv, D});
    size_ok(Prod({n_src, 4}), &must_fail);
    if (skip) return;
    Tensor kn = MakeTensor(n_src, src_dtype == 1, rng, 1.0);
    Tensor vn = MakeTensor(n_src, src_dtype == 1, rng, 1.0);
    finite &= MaybeNonFinite(r, kn) + MaybeNonFinite(r, vn) == 0;
    const std::vector<uint8_t> k0 = k.bytes, v0 = v.bytes;
    const std::vector<int64_t> len0 = len;
    const gqa_status st =
        gqa_kv_cache_append(&c, n, use_counts ? counts.data() : nullptr,
                            kn.data(), vn.data(), src_dtype);
    ExpectErrorMessage(st);
    if (st != GQA_STATUS_OK) {
      ExpectUnchanged(k.bytes, k0, "cache k");
      ExpectUnchanged(v.bytes, v0, "cache v");
      if (len != len0) Finding("failed append changed lengths");
      return;
    }
    if (must_fail) Finding("gqa_kv_cache_append accepted an invalid call");
    for (int64_t b = 0; b < B; ++b) {
      if (len[b] != len0[b] + counts[b]) Finding("append: wrong lengths");
      if (!finite && !Strict()) continue;
      for (int64_t j = counts[b] > cap ? counts[b] - cap : 0; j < counts[b];
           ++j) {
        const int64_t slot = c.ring ? (len0[b] + j) % cap : len0[b] + j;
        for (int64_t i = 0; i < Hkv * D; ++i) {
          const int64_t dst = (b * cap + slot) * Hkv * D + i;
          const int64_t src = (b * n + j) * Hkv * D + i;
          const double tol = c.dtype == 1 ? 1e-3 : 0;
          ExpectClose(k.Get(dst), kn.Get(src), tol, "appended k", dst);
          ExpectClose(v.Get(dst), vn.Get(src), tol, "appended v", dst);
        }
      }
    }
  }
  if (op == 0) return;

  gqa_kv_attend_params a = {};
  a.q_len = r.Dim(1, 3);
  a.q_heads = Group(Hkv, r.U8() % 3);
  if (r.hostile && r.U8() >= 240) a.q_heads = r.Dim(1, 5);
  a.q_dtype = r.U8() % 2, a.out_dtype = r.U8() % 2;
  a.scale = r.Bit() ? 0.0f : r.Param(0.05f, 2.0f);
  a.sliding_window = r.Bit() ? 0 : r.Dim(0, 9);
  a.fully_masked_policy = r.hostile && r.U8() >= 248 ? -1 : r.U8() % 3;
  const bool use_pool = r.Bit();
  const int64_t max_threads = r.Bit() ? 1 : r.Dim(1, 4);
  const uint8_t ws_mode = r.U8();
  const int64_t T = a.q_len, Hq = a.q_heads, W = a.sliding_window;
  bool must_fail = bad_cache || T < 1 || Hq < 1 || Hq % Hkv != 0 ||
                   !ValidPolicy(a.fully_masked_policy) || !(a.scale >= 0) ||
                   isinf(a.scale) || W < 0 ||
                   (c.ring && (W == 0 || i128{W} + T - 1 > cap));
  for (int64_t x : len) must_fail |= x < T;
  const i128 n_q = Prod({B, T, Hq, D});
  size_ok(Prod({n_q, 4}), &must_fail);
  if (skip) return;
  Tensor q = MakeTensor(n_q, a.q_dtype, rng, 1.0);
  Tensor out = MakeTensor(n_q, a.out_dtype, rng, 0);
  finite &= !MaybeNonFinite(r, q);
  a.q = q.data(), a.out = out.data();
  size_t ws_size = 0;
  gqa_status st =
      gqa_kv_cache_attend_workspace_size(&c, &a, max_threads, &ws_size);
  Workspace ws;
  if (!ws.FromQuery(st, ws_size, ws_mode, max_threads == 1, &must_fail)) return;
  Poison(out.bytes);
  const std::vector<uint8_t> out0 = out.bytes, k0 = k.bytes, v0 = v.bytes;
  st =
      gqa_kv_cache_attend(&c, &a, ws.ptr, ws.size, use_pool ? Pool() : nullptr);
  ExpectErrorMessage(st);
  ExpectUnchanged(k.bytes, k0, "cache k (attend)");
  ExpectUnchanged(v.bytes, v0, "cache v (attend)");
  if (st != GQA_STATUS_OK) return ExpectUnchanged(out.bytes, out0, "out");
  if (must_fail) Finding("gqa_kv_cache_attend accepted an invalid call");
  if ((!finite && !Strict()) || !(a.scale <= 2.0f)) return;

  int64_t S = 0;  // positions 0..S-1 of the longest batch
  for (int64_t x : len) S = x > S ? x : S;
  CoreRef ref{B,  T,  S,  Hq, Hkv, D, 0, a.fully_masked_policy != 1,
              {}, {}, {}, {}};
  ref.scale = a.scale > 0 ? a.scale : 1.0 / sqrt((double)D);
  ref.q = [&](int64_t b, int64_t t, int64_t h, int64_t d) {
    return q.Get(((b * T + t) * Hq + h) * D + d);
  };
  auto at = [&](int64_t b, int64_t s, int64_t h, int64_t d) {
    return ((b * cap + (c.ring ? s % cap : s)) * Hkv + h) * D + d;
  };
  ref.k = [&](int64_t b, int64_t s, int64_t h, int64_t d) {
    return k.Get(at(b, s, h, d));
  };
  ref.v = [&](int64_t b, int64_t s, int64_t h, int64_t d) {
    return v.Get(at(b, s, h, d));
  };
  ref.allowed = [&](int64_t b, int64_t, int64_t t, int64_t s) {
    const int64_t pos = len[b] - T + t;
    if (s > pos || (c.ring && s < len[b] - cap)) return false;
    return W == 0 || pos - s < W;
  };
  if (RefWork(ref) > kRefBudget) return;
  std::vector<double> want, unused;
  RunCoreRef(ref, &want, &unused);
  const double tol = a.q_dtype || a.out_dtype || c.dtype ? 1e-2 : 1e-4;
  for (int64_t i = 0; i < (int64_t)want.size(); ++i)
    ExpectClose(out.Get(i), want[i], tol, "kv attend out", i);
}

}  // namespace
}  // namespace gqa_fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  gqa_fuzz::Reader r{data, size};
  const uint8_t head = r.U8();
  r.hostile = (head & 0x30) == 0x30;
  gqa_fuzz::Rng rng{r.U64()};
  // Heads 0xC0..0xFF by bits 0x0C: 0x00 and 0x04 the KV cache v2 (block
  // cache) family, 0x08 draft verification on both caches (truncate, keep,
  // tree mask, held_from), 0x0C RoPE; other heads decode as before
  // (head % 4), so the seeds of the other families stay.
  if ((head & 0xC0) == 0xC0) {
    if ((head & 0x0C) == 0x08)
      gqa_fuzz::FuzzDrafts(r, rng);
    else if ((head & 0x0C) == 0x0C)
      gqa_fuzz::FuzzRope(r, rng);
    else
      gqa_fuzz::FuzzBlockCache(r, rng);
    return 0;
  }
  switch (head % 4) {
    case 0:
      gqa_fuzz::FuzzAttention(r, rng);
      break;
    case 1:
      gqa_fuzz::FuzzKvCache(r, rng);
      break;
    case 2:
      gqa_fuzz::FuzzLayer(r, rng, false);
      break;
    default:
      gqa_fuzz::FuzzLayer(r, rng, true);
      break;
  }
  return 0;
}
