// Test builder for attention-core calls (gqa_attention): random q/k/v in
// f32 or f16, optional key lengths, key mask and general mask (dense or
// broadcast), the LLM options (softcap, ALiBi, bias, sinks), token- or
// head-major strides, f16 out and scores; runs the
// public C API on poisoned outputs and computes the float64 reference
// (reference::Attention) once per case. Usage:
//   CoreCase().heads(8, 2).head_dim(64).lens(7, 37).causal().f16().Check();
#ifndef GQA_TESTS_CORE_CASE_H_
#define GQA_TESTS_CORE_CASE_H_

#include <math.h>
#include <pthreadpool.h>
#include <stdint.h>
#include <stdio.h>

#include <random>
#include <string>
#include <vector>

#include "doctest/doctest.h"
#include "gqa/attention.h"
#include "gqa/gqa.hpp"
#include "src/reference/attention_ref.h"
#include "src/reference/f16_util.h"
#include "tests/check.h"
#include "tests/f16_kv_tol.h"

namespace gqa {
namespace test {

// Inputs of a core case: logical q [B,T,Hq,D], k [B,S,Hkv,D], v
// [B,S,Hkv,Dv] (already
// rounded to f16 where the case stores f16), masks as the call gets them.
struct CoreData {
  std::vector<float> q, k, v;
  std::vector<int64_t> lengths;         // [B]
  std::vector<uint8_t> key_mask, mask;  // [B,S]; mask per mask_rank_kind
  int64_t ms[4] = {0, 0, 0, 0};         // mask strides b, h, t, s
  std::vector<float> slopes, sinks;     // [Hq] each
  std::vector<float> bias;              // per bias_kind
  int64_t bs[4] = {0, 0, 0, 0};         // bias strides b, h, t, s
};

struct CoreCase {
  int64_t B = 1, T = 5, S = 7, Hq = 4, Hkv = 2, D = 8;
  int64_t value_dim = 0;  // Dv; 0: D
  bool q16 = false, kv16 = false, out16 = false, scores16 = false;
  bool head_major = false;
  bool causal = false;
  int64_t offset = 0, window = 0;
  bool key_lengths = false, key_mask = false, mask = false, scores = false;
  int mask_rank_kind = 0;  // 0: [B,Hq,T,S]; 1: [T,S] broadcast; 2: [B,1,1,S]
  int32_t policy = GQA_FULLY_MASKED_KERAS;
  double mask_p = 0.7;
  uint64_t seed = 1;
  // LLM options: softcap (0: off), ALiBi slopes, sinks; bias_kind 0 none,
  // 1 [B,Hq,T,S], 2 [1,Hq,1,S] broadcast, 3 [B,1,T,1]; with bias_neg_inf
  // about 1 in 8 bias values are -inf (masking the key).
  double softcap = 0.0;
  bool alibi = false, sinks = false, bias_neg_inf = false;
  int bias_kind = 0;

  CoreCase& batch(int64_t b) { return B = b, *this; }
  CoreCase& heads(int64_t hq, int64_t hkv) { return Hq = hq, Hkv = hkv, *this; }
  CoreCase& head_dim(int64_t d) { return D = d, *this; }
  int64_t Dv() const { return value_dim > 0 ? value_dim : D; }
  CoreCase& lens(int64_t t, int64_t s) { return T = t, S = s, *this; }
  CoreCase& f16(bool h = true) { return q16 = kv16 = h, *this; }
  CoreCase& with_causal(int64_t off = 0) {
    return causal = true, offset = off, *this;
  }
  CoreCase& with_scores(bool half = false) {
    return scores = true, scores16 = half, *this;
  }
  CoreCase& with_key_mask() { return key_mask = true, *this; }

  std::string Describe() const {
    char buf[480];
    snprintf(buf, sizeof(buf),
             "B%lld T%lld S%lld Hq%lld Hkv%lld D%lld Dv%lld q16%d kv16%d "
             "out16%d hm%d "
             "causal%d off%lld win%lld kl%d km%d mask%d/%d/%.2f scores%d/%d "
             "pol%d cap%g alibi%d sinks%d bias%d/%d seed%llu",
             (long long)B, (long long)T, (long long)S, (long long)Hq,
             (long long)Hkv, (long long)D, (long long)Dv(), q16, kv16, out16,
             head_major, causal, (long long)offset, (long long)window,
             key_lengths, key_mask, mask, mask_rank_kind, mask_p, scores,
             scores16, policy, softcap, alibi, sinks, bias_kind, bias_neg_inf,
             (unsigned long long)seed);
    return buf;
  }

  // The inputs, drawn from `seed` once (redrawn if the case changed since).
  const CoreData& Data() {
    const std::string key = Describe();
    if (key != data_key_) {
      data_ = MakeData();
      data_key_ = key;
      want_key_.clear();
    }
    return data_;
  }

  // The float64 reference of the case, computed once: out [B,T,Hq,D],
  // scores [B,Hq,T,S].
  const reference::AttentionResult& Reference() {
    const CoreData& d = Data();
    if (want_key_ == data_key_) return want_;
    reference::AttentionCall a;
    a.batch = B, a.q_len = T, a.kv_len = S;
    a.q_heads = Hq, a.kv_heads = Hkv, a.head_dim = D;
    a.value_dim = Dv();
    a.q = reference::ToDouble(d.q);
    a.k = reference::ToDouble(d.k);
    a.v = reference::ToDouble(d.v);
    a.scale = 1.0 / sqrt(static_cast<double>(D));  // the call's scale 0
    a.causal = causal;
    a.position_offset = offset;
    a.sliding_window = window;
    if (key_lengths) a.key_lengths = d.lengths;
    if (key_mask) a.key_masks.push_back(d.key_mask);
    if (mask) {  // read through the call's (broadcast) strides
      a.mask.resize(static_cast<size_t>(B * Hq * T * S));
      for (int64_t b = 0; b < B; ++b)
        for (int64_t u = 0; u < Hq; ++u)
          for (int64_t t = 0; t < T; ++t)
            for (int64_t s = 0; s < S; ++s)
              a.mask[((b * Hq + u) * T + t) * S + s] =
                  d.mask[b * d.ms[0] + u * d.ms[1] + t * d.ms[2] + s * d.ms[3]];
    }
    a.softcap = softcap;
    if (alibi) a.alibi_slopes = reference::ToDouble(d.slopes);
    if (sinks) a.sinks = reference::ToDouble(d.sinks);
    if (bias_kind != 0) {
      a.bias.resize(static_cast<size_t>(B * Hq * T * S));
      for (int64_t b = 0; b < B; ++b)
        for (int64_t u = 0; u < Hq; ++u)
          for (int64_t t = 0; t < T; ++t)
            for (int64_t s = 0; s < S; ++s)
              a.bias[((b * Hq + u) * T + t) * S + s] =
                  d.bias[b * d.bs[0] + u * d.bs[1] + t * d.bs[2] + s * d.bs[3]];
    }
    // Keras' policy: uniform rows unless the probabilities are returned.
    a.fully_masked_uniform = policy == GQA_FULLY_MASKED_UNIFORM ||
                             (policy == GQA_FULLY_MASKED_KERAS && !scores);
    a.want_scores = scores;
    want_ = reference::Attention(a);
    want_key_ = data_key_;
    return want_;
  }

  // Runs the public API on the current target; out and scores widened to
  // float in their logical layouts.
  gqa_status Run(int threads, std::vector<float>* out,
                 std::vector<float>* scores_out) {
    const CoreData& d = Data();
    std::vector<unsigned char> q, k, v;
    int64_t qs[3], ks[3], vs[3];
    Store(d.q, q16, T, Hq, D, &q, qs);
    Store(d.k, kv16, S, Hkv, D, &k, ks);
    Store(d.v, kv16, S, Hkv, Dv(), &v, vs);
    const size_t n_out = B * T * Hq * Dv(), n_sc = B * Hq * T * S;
    // Poison (all-ones bytes: NaN in f32 and f16): every element is written.
    std::vector<unsigned char> o(n_out * (out16 ? 2 : 4), 0xFF);
    std::vector<unsigned char> sc(scores ? n_sc * (scores16 ? 2 : 4) : 0, 0xFF);
    gqa_attention_params p;
    gqa_attention_params_init(&p);
    p.batch = B, p.q_len = T, p.kv_len = S, p.q_heads = Hq, p.kv_heads = Hkv;
    p.head_dim = D;
    p.value_dim = value_dim;
    p.q = q.data(), p.k = k.data(), p.v = v.data(), p.out = o.data();
    if (head_major) {
      p.q_stride_batch = qs[0], p.q_stride_token = qs[1];
      p.q_stride_head = qs[2];
      p.k_stride_batch = ks[0], p.k_stride_token = ks[1];
      p.k_stride_head = ks[2];
      p.v_stride_batch = vs[0], p.v_stride_token = vs[1];
      p.v_stride_head = vs[2];
    }
    p.q_dtype = q16 ? GQA_DTYPE_F16 : GQA_DTYPE_F32;
    p.kv_dtype = kv16 ? GQA_DTYPE_F16 : GQA_DTYPE_F32;
    p.out_dtype = out16 ? GQA_DTYPE_F16 : GQA_DTYPE_F32;
    p.causal = causal, p.position_offset = offset, p.sliding_window = window;
    p.key_lengths = key_lengths ? d.lengths.data() : nullptr;
    p.key_mask = key_mask ? d.key_mask.data() : nullptr;
    if (mask) {
      p.mask = d.mask.data();
      p.mask_stride_batch = d.ms[0], p.mask_stride_head = d.ms[1];
      p.mask_stride_query = d.ms[2], p.mask_stride_key = d.ms[3];
    }
    p.softcap = static_cast<float>(softcap);
    p.alibi_slopes = alibi ? d.slopes.data() : nullptr;
    p.sinks = sinks ? d.sinks.data() : nullptr;
    if (bias_kind != 0) {
      p.bias = d.bias.data();
      p.bias_stride_batch = d.bs[0], p.bias_stride_head = d.bs[1];
      p.bias_stride_query = d.bs[2], p.bias_stride_key = d.bs[3];
    }
    p.fully_masked_policy = policy;
    p.scores = scores ? sc.data() : nullptr;
    p.scores_dtype = scores16 ? GQA_DTYPE_F16 : GQA_DTYPE_F32;
    size_t bytes = 0;
    gqa_status s = gqa_attention_workspace_size(&p, threads, &bytes);
    if (s != GQA_STATUS_OK) return s;
    Workspace ws(bytes);
    pthreadpool_t pool = threads > 1 ? pthreadpool_create(threads) : nullptr;
    s = gqa_attention(&p, ws.data(), ws.size(), pool);
    if (pool) pthreadpool_destroy(pool);
    if (s != GQA_STATUS_OK) return s;
    *out = reference::Widen(o.data(), n_out, out16);  // token-major out
    if (scores) *scores_out = reference::Widen(sc.data(), n_sc, scores16);
    return GQA_STATUS_OK;
  }

  // Runs on the current target against the (cached) reference. f32: 1e-4
  // (as the golden cases). f16 out/scores: the final rounding to binary16
  // adds up to 2^-11 relative (~5e-4); inputs are already f16.
  void Check(int threads = 1) {
    INFO(Describe() << " threads " << threads);
    const reference::AttentionResult& want = Reference();
    std::vector<float> out, sc;
    REQUIRE(Run(threads, &out, &sc) == GQA_STATUS_OK);
    const double rtol = F16KvTol(kv16, (out16 || scores16) ? 1.5e-3 : 1e-4);
    const double atol = F16KvTol(kv16, 1e-4);
    CheckClose(out, want.out, rtol, atol, "out");
    if (scores) CheckClose(sc, want.scores, rtol, atol, "scores");
  }

 private:
  CoreData MakeData() const {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> u(-2.0f, 2.0f);
    CoreData d;
    auto fill = [&](std::vector<float>& v, size_t n, bool half) {
      v.resize(n);
      for (float& x : v) x = reference::RoundIf(u(rng), half);
    };
    fill(d.q, B * T * Hq * D, q16);
    fill(d.k, B * S * Hkv * D, kv16);
    fill(d.v, B * S * Hkv * Dv(), kv16);
    std::bernoulli_distribution coin(mask_p);
    if (key_lengths) {
      std::uniform_int_distribution<int64_t> len(0, S);
      for (int64_t b = 0; b < B; ++b) d.lengths.push_back(len(rng));
    }
    if (key_mask) {
      d.key_mask.resize(B * S);
      for (auto& x : d.key_mask) x = coin(rng);
    }
    if (mask) {
      if (mask_rank_kind == 0) {
        d.mask.resize(B * Hq * T * S);
        d.ms[0] = Hq * T * S, d.ms[1] = T * S, d.ms[2] = S, d.ms[3] = 1;
      } else if (mask_rank_kind == 1) {
        d.mask.resize(T * S);
        d.ms[2] = S, d.ms[3] = 1;
      } else {
        d.mask.resize(B * S);
        d.ms[0] = S, d.ms[3] = 1;
      }
      for (auto& x : d.mask) x = coin(rng);
    }
    if (alibi) {
      d.slopes.resize(Hq);
      REQUIRE(gqa_alibi_slopes(Hq, 8.0f, d.slopes.data()) == GQA_STATUS_OK);
    }
    if (sinks) {
      std::uniform_real_distribution<float> sink(-1.0f, 3.0f);
      for (int64_t u = 0; u < Hq; ++u) d.sinks.push_back(sink(rng));
    }
    if (bias_kind != 0) {
      const int64_t dims[4][4] = {
          {0, 0, 0, 0}, {B, Hq, T, S}, {1, Hq, 1, S}, {B, 1, T, 1}};
      const int64_t* n = dims[bias_kind];
      d.bias.resize(static_cast<size_t>(n[0] * n[1] * n[2] * n[3]));
      int64_t stride = 1;
      for (int i = 3; i >= 0; --i) {
        d.bs[i] = n[i] == 1 ? 0 : stride;
        stride *= n[i];
      }
      std::uniform_int_distribution<int> eighth(0, 7);
      for (auto& x : d.bias) {
        x = u(rng);
        if (bias_neg_inf && eighth(rng) == 0) x = -INFINITY;
      }
    }
    return d;
  }

  // src [B,L,H,n] logical into raw f16/f32 storage, token- or head-major;
  // st: strides b, token, head in elements.
  void Store(const std::vector<float>& src, bool half, int64_t L, int64_t H,
             int64_t n, std::vector<unsigned char>* raw, int64_t st[3]) const {
    raw->assign(src.size() * (half ? 2 : 4), 0);
    if (head_major) {
      st[0] = H * L * n, st[1] = n, st[2] = L * n;
    } else {
      st[0] = L * H * n, st[1] = H * n, st[2] = n;
    }
    for (int64_t b = 0; b < B; ++b)
      for (int64_t l = 0; l < L; ++l)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t x = 0; x < n; ++x) {
            const size_t at =
                static_cast<size_t>(b * st[0] + l * st[1] + h * st[2] + x);
            reference::StoreAs(src[((b * L + l) * H + h) * n + x], half,
                               raw->data(), at);
          }
  }

  CoreData data_;
  reference::AttentionResult want_;
  std::string data_key_, want_key_;
};

}  // namespace test
}  // namespace gqa

#endif  // GQA_TESTS_CORE_CASE_H_
