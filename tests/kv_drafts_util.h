// Test helpers of the draft-verification suite (test_kv_drafts.cc): a
// model of the rows each cache position holds, the float64 oracle over it
// with a tree mask, random trees, and keep / truncate mirrored in the model.
#ifndef GQA_TESTS_KV_DRAFTS_UTIL_H_
#define GQA_TESTS_KV_DRAFTS_UTIL_H_

#include <pthreadpool.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "doctest/doctest.h"
#include "gqa/block_cache.h"
#include "src/reference/attention_ref.h"
#include "tests/block_cache_util.h"
#include "tests/check.h"

namespace gqa {
namespace test {

// The source rows each position of each batch holds now (after keeps), and
// the first held position.
struct Model {
  std::vector<std::vector<std::vector<float>>> k, v;  // [b][pos] -> row
  std::vector<int64_t> held_from;
};

inline void Append(Cache* cache, Model* m, const Config& k, int64_t n,
                   const std::vector<int64_t>& counts, std::mt19937* rng) {
  const size_t row = static_cast<size_t>(k.Hkv * k.D);
  const size_t vrow = static_cast<size_t>(k.Hkv * k.Dv());
  const std::vector<float> kn = Random(k.B * n * row, rng);
  const std::vector<float> vn = Random(k.B * n * vrow, rng);
  REQUIRE(gqa_block_cache_append(&cache->c, n, counts.data(), kn.data(),
                                 vn.data(), GQA_DTYPE_F32) == GQA_STATUS_OK);
  for (int64_t b = 0; b < k.B; ++b) {
    for (int64_t i = 0; i < counts[b]; ++i) {
      const float* kr = kn.data() + (b * n + i) * row;
      const float* vr = vn.data() + (b * n + i) * vrow;
      m->k[b].emplace_back(kr, kr + row);
      m->v[b].emplace_back(vr, vr + vrow);
    }
    const int64_t len = static_cast<int64_t>(m->k[b].size());
    if (k.ring && m->held_from[b] < len - k.capacity)
      m->held_from[b] = len - k.capacity;
  }
}

// Every held position reads back as its model row encodes, bit for bit;
// positions outside the held range are refused.
inline void CheckReadBack(const Cache& cache, const Model& m, const Config& k) {
  std::vector<float> kr(static_cast<size_t>(k.D));
  std::vector<float> vr(static_cast<size_t>(k.Dv()));
  for (int64_t b = 0; b < k.B; ++b) {
    const int64_t len = cache.lengths[b];
    REQUIRE(len == static_cast<int64_t>(m.k[b].size()));
    if (k.ring) REQUIRE(cache.c.held_from[b] == m.held_from[b]);
    for (int64_t p = m.held_from[b]; p < len; ++p) {
      for (int64_t g = 0; g < k.Hkv; ++g) {
        REQUIRE(gqa_block_cache_read(&cache.c, b, p, g, kr.data(), vr.data()) ==
                GQA_STATUS_OK);
        INFO("b " << b << " pos " << p << " head " << g);
        const auto ke = gqa::test::Encode(k, &m.k[b][p][g * k.D], k.D);
        const auto ve = gqa::test::Encode(k, &m.v[b][p][g * k.Dv()], k.Dv());
        REQUIRE(memcmp(kr.data(), ke.data(), kr.size() * 4) == 0);
        REQUIRE(memcmp(vr.data(), ve.data(), vr.size() * 4) == 0);
      }
    }
    if (m.held_from[b] > 0) {
      CHECK(gqa_block_cache_read(&cache.c, b, m.held_from[b] - 1, 0, kr.data(),
                                 vr.data()) != GQA_STATUS_OK);
    }
  }
}

// The oracle: keys are positions 0..L-1 from the model (encoded), unheld
// ones masked, the tree [B, T, T] over the newest T; uniform rows average
// the held keys.
inline std::vector<double> Oracle(const Model& m, const Config& k, int64_t T,
                                  int64_t Hq, const std::vector<float>& q,
                                  int64_t window,
                                  const std::vector<uint8_t>& tree,
                                  bool uniform) {
  const int64_t Dv = k.Dv();
  int64_t S = 0;
  for (int64_t b = 0; b < k.B; ++b)
    S = std::max<int64_t>(S, static_cast<int64_t>(m.k[b].size()));
  gqa::reference::AttentionCall call;
  call.batch = k.B, call.q_len = T, call.kv_len = S;
  call.q_heads = Hq, call.kv_heads = k.Hkv, call.head_dim = k.D;
  call.value_dim = Dv;
  call.scale = 1.0 / std::sqrt(static_cast<double>(k.D));
  call.causal = true;
  call.sliding_window = window;
  call.fully_masked_uniform = uniform;
  call.tree_mask = tree;
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
  for (int64_t b = 0; b < k.B; ++b) {
    const int64_t len = static_cast<int64_t>(m.k[b].size());
    call.position_offsets.push_back(len - T);
    call.key_lengths.push_back(len);
    call.held_from.push_back(m.held_from[b]);
    for (int64_t p = m.held_from[b]; p < len; ++p) {
      key_mask[b * S + p] = 1;
      for (int64_t g = 0; g < k.Hkv; ++g) {
        const auto ke = gqa::test::Encode(k, &m.k[b][p][g * k.D], k.D);
        const auto ve = gqa::test::Encode(k, &m.v[b][p][g * Dv], Dv);
        for (int64_t d = 0; d < k.D; ++d)
          call.k[(b * S + p) * row + g * k.D + d] = ke[d];
        for (int64_t d = 0; d < Dv; ++d)
          call.v[(b * S + p) * vrow + g * Dv + d] = ve[d];
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

inline gqa_kv_attend_params Params(int64_t T, int64_t Hq,
                                   const std::vector<float>& q,
                                   std::vector<float>* out, int64_t window,
                                   const std::vector<uint8_t>& tree,
                                   bool uniform) {
  gqa_kv_attend_params a{};
  a.q_len = T;
  a.q_heads = Hq;
  a.q = q.data();
  a.q_dtype = GQA_DTYPE_F32;
  a.out = out->data();
  a.out_dtype = GQA_DTYPE_F32;
  a.sliding_window = window;
  a.fully_masked_policy =
      uniform ? GQA_FULLY_MASKED_UNIFORM : GQA_FULLY_MASKED_ZERO;
  a.tree_mask = tree.empty() ? nullptr : tree.data();
  return a;
}

// Attend on the block cache with `threads` workers; status returned.
inline gqa_status Attend(const Cache& cache, const gqa_kv_attend_params& a,
                         size_t threads) {
  size_t bytes = 0;
  gqa_status s = gqa_block_cache_attend_workspace_size(
      &cache.c, &a, static_cast<int64_t>(threads), &bytes);
  if (s != GQA_STATUS_OK) return s;
  void* ws = aligned_alloc(64, (bytes + 63) / 64 * 64);
  pthreadpool_t pool = threads > 1 ? pthreadpool_create(threads) : nullptr;
  s = gqa_block_cache_attend(&cache.c, &a, ws, bytes, pool);
  if (pool) pthreadpool_destroy(pool);
  free(ws);
  return s;
}

// A random tree over T drafts per batch: draft i's parent is one of the
// drafts before it or none (then it hangs off the accepted prefix); a
// draft sees its ancestors and itself.
inline std::vector<uint8_t> RandomTree(int64_t B, int64_t T,
                                       std::mt19937* rng) {
  std::vector<uint8_t> tree(static_cast<size_t>(B * T * T), 0);
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int64_t> parent(static_cast<size_t>(T), -1);
    for (int64_t i = 1; i < T; ++i)
      parent[i] = static_cast<int64_t>((*rng)() % (i + 1)) - 1;
    for (int64_t i = 0; i < T; ++i) {
      for (int64_t a = i; a >= 0; a = parent[a]) tree[(b * T + i) * T + a] = 1;
    }
  }
  return tree;
}

inline void CheckAttend(const Cache& cache, const Model& m, const Config& k,
                        int64_t T, int64_t Hq, int64_t window,
                        const std::vector<uint8_t>& tree, bool uniform,
                        std::mt19937* rng) {
  const std::vector<float> q = Random(k.B * T * Hq * k.D, rng);
  std::vector<float> out(static_cast<size_t>(k.B * T * Hq * k.Dv()), -7.0f);
  const gqa_kv_attend_params a = Params(T, Hq, q, &out, window, tree, uniform);
  REQUIRE_MESSAGE(Attend(cache, a, 1) == GQA_STATUS_OK,
                  gqa_last_error_message());
  const double tol = k.dtype == GQA_DTYPE_F32 ? 2e-5 : 2e-3;
  gqa::test::CheckClose(out, Oracle(m, k, T, Hq, q, window, tree, uniform), tol,
                        tol, "out");
  std::vector<float> out2(out.size(), -9.0f);
  const gqa_kv_attend_params a2 =
      Params(T, Hq, q, &out2, window, tree, uniform);
  REQUIRE(Attend(cache, a2, 2) == GQA_STATUS_OK);
  CHECK(memcmp(out.data(), out2.data(), out.size() * 4) == 0);
}

// Keeps `indices` of the newest T drafts of batch b, in the cache and the
// model.
inline void Keep(Cache* cache, Model* m, int64_t b, int64_t T,
                 const std::vector<int64_t>& indices) {
  REQUIRE_MESSAGE(gqa_block_cache_keep(&cache->c, b, T, indices.data(),
                                       static_cast<int64_t>(indices.size())) ==
                      GQA_STATUS_OK,
                  gqa_last_error_message());
  const int64_t base = static_cast<int64_t>(m->k[b].size()) - T;
  std::vector<std::vector<float>> ks, vs;
  for (int64_t i : indices) {
    ks.push_back(m->k[b][base + i]);
    vs.push_back(m->v[b][base + i]);
  }
  m->k[b].resize(static_cast<size_t>(base));
  m->v[b].resize(static_cast<size_t>(base));
  m->k[b].insert(m->k[b].end(), ks.begin(), ks.end());
  m->v[b].insert(m->v[b].end(), vs.begin(), vs.end());
}

inline void Truncate(Cache* cache, Model* m,
                     const std::vector<int64_t>& lengths) {
  REQUIRE_MESSAGE(
      gqa_block_cache_truncate(&cache->c, lengths.data()) == GQA_STATUS_OK,
      gqa_last_error_message());
  for (size_t b = 0; b < lengths.size(); ++b) {
    m->k[b].resize(static_cast<size_t>(lengths[b]));
    m->v[b].resize(static_cast<size_t>(lengths[b]));
    if (m->held_from[b] > lengths[b]) m->held_from[b] = lengths[b];
  }
}

}  // namespace test
}  // namespace gqa

#endif  // GQA_TESTS_KV_DRAFTS_UTIL_H_
