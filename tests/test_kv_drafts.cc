// Draft verification on the KV caches (spec 4.4): attends with a tree mask,
// truncate and keep on the v2 block cache (every element type, rings with
// held_from, shuffled blocks) and the v1 cache, against the float64 oracle
// over a model of which rows each position holds; read-back after keep;
// the uniform policy on a tree row without its diagonal; thread-count
// independence; and every error writes nothing.
#include <pthreadpool.h>
#include <stdlib.h>
#include <string.h>

#include <cmath>
#include <random>
#include <vector>

#include "doctest/doctest.h"
#include "gqa/block_cache.h"
#include "gqa/kv_cache.h"
#include "tests/block_cache_util.h"
#include "tests/check.h"
#include "tests/kv_drafts_util.h"
#include "tests/layer_case.h"

namespace {

using gqa::test::Append;
using gqa::test::Attend;
using gqa::test::Cache;
using gqa::test::CheckAttend;
using gqa::test::CheckReadBack;
using gqa::test::Config;
using gqa::test::Keep;
using gqa::test::Model;
using gqa::test::Oracle;
using gqa::test::Params;
using gqa::test::Random;
using gqa::test::RandomTree;
using gqa::test::Truncate;

// A speculative decoding loop: prefix, then rounds of T drafts attended
// with a tree, an accepted path kept, a truncate, and decode steps.
void RunDrafts(const Config& k, int64_t window, uint32_t seed) {
  INFO("dtype " << k.dtype << " ring " << k.ring << " rotate " << k.rotate
                << " bt " << k.bt << " W " << window);
  Cache cache(k, seed);
  std::vector<int64_t> held(static_cast<size_t>(k.B), 0);
  cache.c.held_from = held.data();
  Model m;
  m.k.resize(static_cast<size_t>(k.B));
  m.v.resize(static_cast<size_t>(k.B));
  m.held_from.assign(static_cast<size_t>(k.B), 0);
  std::mt19937 rng(seed);
  const int64_t Hq = 2 * k.Hkv, T = 5;
  Append(&cache, &m, k, 19, {19, 12}, &rng);
  for (int round = 0; round < 3; ++round) {
    INFO("round " << round);
    Append(&cache, &m, k, T, {T, T}, &rng);
    const std::vector<uint8_t> tree = RandomTree(k.B, T, &rng);
    CheckAttend(cache, m, k, T, Hq, window, tree, false, &rng);
    Keep(&cache, &m, 0, T, {0, 2, 3});
    Keep(&cache, &m, 1, T, {1});
    CheckReadBack(cache, m, k);
    CheckAttend(cache, m, k, 1, Hq, window, {}, false, &rng);
    Truncate(&cache, &m, {cache.lengths[0] - 1, cache.lengths[1]});
    Append(&cache, &m, k, 2, {2, 1}, &rng);
    CheckAttend(cache, m, k, 2, Hq, window, {}, false, &rng);
    CheckReadBack(cache, m, k);
  }
}

}  // namespace

TEST_CASE("block cache: tree attend, keep, truncate against the oracle") {
  gqa::test::ForEachTarget([](int64_t) {
    Config k;
    k.B = 2, k.Hkv = 2, k.D = 32, k.capacity = 48, k.bt = 5;
    for (int32_t dtype :
         {GQA_DTYPE_F32, GQA_DTYPE_F16, GQA_DTYPE_Q8, GQA_DTYPE_Q4}) {
      k.dtype = dtype;
      k.ring = false, k.rotate = false;
      RunDrafts(k, 0, 3);
      RunDrafts(k, 9, 4);
      k.ring = true, k.capacity = 20;  // W + T - 1 <= C
      RunDrafts(k, 12, 5);
      k.rotate = true;
      RunDrafts(k, 16, 6);
      k.capacity = 48;
    }
  });
}

TEST_CASE("block cache: a tree row without its diagonal follows the policy") {
  Config k;
  k.B = 2, k.Hkv = 1, k.D = 32, k.capacity = 16, k.bt = 4;
  for (bool ring : {false, true}) {
    k.ring = ring;
    Cache cache(k, 9);
    std::vector<int64_t> held(2, 0);
    cache.c.held_from = held.data();
    Model m;
    m.k.resize(2), m.v.resize(2), m.held_from.assign(2, 0);
    std::mt19937 rng(9);
    // Batch 0 holds only its 3 drafts; batch 1 an older token too. On the
    // ring, batch 1 wrapped and truncated: it holds fewer than C.
    Append(&cache, &m, k, 3, {3, 3}, &rng);
    if (ring) {
      Append(&cache, &m, k, 16, {0, 16}, &rng);
      Truncate(&cache, &m, {3, 12});
      Append(&cache, &m, k, 3, {0, 3}, &rng);
    } else {
      Append(&cache, &m, k, 3, {0, 3}, &rng);
    }
    // Row 0 sees nothing (no diagonal); rows 1, 2 a chain.
    std::vector<uint8_t> tree = {0, 0, 0, 1, 1, 0, 1, 1, 1};
    tree.insert(tree.end(), tree.begin(), tree.end());
    for (bool uniform : {false, true}) {
      INFO("ring " << ring << " uniform " << uniform);
      // Batch 0 is fully masked in row 0; batch 1 sees its older tokens,
      // except on the ring with W = 3 (its window ends at the drafts).
      CheckAttend(cache, m, k, 3, 2, ring ? 3 : 0, tree, uniform, &rng);
    }
  }
}

TEST_CASE("block cache: truncate, keep and tree errors write nothing") {
  Config k;
  k.B = 2, k.Hkv = 1, k.D = 32, k.capacity = 8, k.bt = 3, k.ring = true;
  Cache cache(k, 11);
  std::vector<int64_t> held(2, 0);
  cache.c.held_from = held.data();
  Model m;
  m.k.resize(2), m.v.resize(2), m.held_from.assign(2, 0);
  std::mt19937 rng(11);
  Append(&cache, &m, k, 11, {11, 9}, &rng);
  const std::vector<unsigned char> pool_before(
      static_cast<unsigned char*>(cache.pool),
      static_cast<unsigned char*>(cache.pool) + cache.PoolBytes());
  auto unchanged = [&](const char* what) {
    INFO(what);
    CHECK(cache.lengths[0] == 11);
    CHECK(cache.lengths[1] == 9);
    CHECK(held[0] == 3);
    CHECK(held[1] == 1);
    CHECK(memcmp(cache.pool, pool_before.data(), cache.PoolBytes()) == 0);
  };
  const std::vector<int64_t> too_long = {12, 9}, negative = {11, -1};
  CHECK(gqa_block_cache_truncate(&cache.c, too_long.data()) ==
        GQA_STATUS_INVALID_ARGUMENT);
  CHECK(gqa_block_cache_truncate(&cache.c, negative.data()) ==
        GQA_STATUS_INVALID_ARGUMENT);
  CHECK(gqa_block_cache_truncate(&cache.c, nullptr) == GQA_STATUS_NULL_POINTER);
  CHECK(gqa_block_cache_truncate(&cache.c, cache.lengths.data()) ==
        GQA_STATUS_INVALID_ARGUMENT);  // overlaps the lengths
  unchanged("truncate");
  const std::vector<int64_t> desc = {2, 1}, dup = {1, 1}, out_of = {0, 4},
                             ok = {0, 2};
  CHECK(gqa_block_cache_keep(&cache.c, 0, 4, desc.data(), 2) ==
        GQA_STATUS_INVALID_ARGUMENT);
  CHECK(gqa_block_cache_keep(&cache.c, 0, 4, dup.data(), 2) ==
        GQA_STATUS_INVALID_ARGUMENT);
  CHECK(gqa_block_cache_keep(&cache.c, 0, 4, out_of.data(), 2) ==
        GQA_STATUS_INVALID_ARGUMENT);
  CHECK(gqa_block_cache_keep(&cache.c, 0, 4, ok.data(), 5) ==
        GQA_STATUS_INVALID_ARGUMENT);  // more indices than drafts
  CHECK(gqa_block_cache_keep(&cache.c, 2, 4, ok.data(), 2) ==
        GQA_STATUS_INVALID_ARGUMENT);  // batch
  CHECK(gqa_block_cache_keep(&cache.c, -1, 4, ok.data(), 2) ==
        GQA_STATUS_INVALID_ARGUMENT);
  CHECK(gqa_block_cache_keep(&cache.c, 1, 10, ok.data(), 2) ==
        GQA_STATUS_INVALID_ARGUMENT);  // more drafts than tokens
  CHECK(gqa_block_cache_keep(&cache.c, 0, 9, ok.data(), 2) ==
        GQA_STATUS_INVALID_ARGUMENT);  // drafts not all held (from 3)
  CHECK(gqa_block_cache_keep(&cache.c, 0, 4, nullptr, 2) ==
        GQA_STATUS_NULL_POINTER);
  unchanged("keep");
  // A ring without held_from cannot truncate or keep.
  cache.c.held_from = nullptr;
  const std::vector<int64_t> shorter = {10, 9};
  CHECK(gqa_block_cache_truncate(&cache.c, shorter.data()) ==
        GQA_STATUS_INVALID_ARGUMENT);
  CHECK(gqa_block_cache_keep(&cache.c, 0, 4, ok.data(), 2) ==
        GQA_STATUS_INVALID_ARGUMENT);
  cache.c.held_from = held.data();
  unchanged("no held_from");
  // held_from outside [max(0, len - C), len] is refused by every call.
  held[0] = 2;
  std::vector<float> kr(32), vr(32);
  CHECK(gqa_block_cache_read(&cache.c, 0, 5, 0, kr.data(), vr.data()) ==
        GQA_STATUS_INVALID_ARGUMENT);
  held[0] = 12;
  CHECK(gqa_block_cache_truncate(&cache.c, shorter.data()) ==
        GQA_STATUS_INVALID_ARGUMENT);
  held[0] = 3;
  unchanged("bad held_from");
  // After a truncate the ring holds [3, 9): a window reaching 2 is refused.
  const std::vector<int64_t> nine = {9, 9};
  Truncate(&cache, &m, nine);
  CHECK(held[0] == 3);
  const std::vector<float> q = Random(2 * 1 * 2 * 32, &rng);
  std::vector<float> out(2 * 2 * 32, -7.0f);
  const std::vector<float> out_before = out;
  CHECK(Attend(cache, Params(1, 2, q, &out, 7, {}, false), 1) ==
        GQA_STATUS_INVALID_ARGUMENT);
  CHECK(std::string(gqa_last_error_message()).find("no longer holds") !=
        std::string::npos);
  CHECK(Attend(cache, Params(1, 2, q, &out, 6, {}, false), 1) == GQA_STATUS_OK);
  out = out_before;
  // A tree overlapping out is refused.
  std::vector<float> q2 = Random(2 * 2 * 2 * 32, &rng);
  std::vector<float> out2(2 * 2 * 2 * 32, -7.0f);
  std::vector<uint8_t> tree(reinterpret_cast<uint8_t*>(out2.data()),
                            reinterpret_cast<uint8_t*>(out2.data()) + 8);
  gqa_kv_attend_params a = Params(2, 2, q2, &out2, 4, tree, false);
  a.tree_mask = reinterpret_cast<const uint8_t*>(out2.data());
  CHECK(Attend(cache, a, 1) == GQA_STATUS_INVALID_ARGUMENT);
  CHECK(out2[0] == -7.0f);
  CheckReadBack(cache, m, k);
}

TEST_CASE("v1 cache: tree attend, keep and truncate against the oracle") {
  // The same operations on a v1 f16 ring and a linear f32 cache: outputs
  // against the oracle over the model's rows.
  for (bool ring : {false, true}) {
    Config k;
    k.B = 2, k.Hkv = 2, k.D = 16, k.capacity = ring ? 12 : 40;
    k.dtype = ring ? GQA_DTYPE_F16 : GQA_DTYPE_F32;
    k.ring = ring;
    INFO("ring " << ring);
    const int64_t row = k.Hkv * k.D, es = ring ? 2 : 4;
    std::vector<unsigned char> kc(k.B * k.capacity * row * es), vc(kc.size());
    std::vector<int64_t> lengths(2, 0), held(2, 0);
    gqa_kv_cache c{
        k.B,       k.capacity, k.Hkv,          k.D,        k.dtype, ring,
        kc.data(), vc.data(),  lengths.data(), held.data()};
    Model m;
    m.k.resize(2), m.v.resize(2), m.held_from.assign(2, 0);
    std::mt19937 rng(21);
    auto append = [&](int64_t n, const std::vector<int64_t>& counts) {
      const std::vector<float> kn = Random(k.B * n * row, &rng);
      const std::vector<float> vn = Random(k.B * n * row, &rng);
      REQUIRE(gqa_kv_cache_append(&c, n, counts.data(), kn.data(), vn.data(),
                                  GQA_DTYPE_F32) == GQA_STATUS_OK);
      for (int64_t b = 0; b < k.B; ++b) {
        for (int64_t i = 0; i < counts[b]; ++i) {
          m.k[b].emplace_back(kn.data() + (b * n + i) * row,
                              kn.data() + (b * n + i + 1) * row);
          m.v[b].emplace_back(vn.data() + (b * n + i) * row,
                              vn.data() + (b * n + i + 1) * row);
        }
        const int64_t len = static_cast<int64_t>(m.k[b].size());
        if (ring && m.held_from[b] < len - k.capacity)
          m.held_from[b] = len - k.capacity;
      }
    };
    auto attend = [&](int64_t T, int64_t W, const std::vector<uint8_t>& tree) {
      const std::vector<float> q = Random(k.B * T * 4 * k.D, &rng);
      std::vector<float> out(static_cast<size_t>(k.B * T * 4 * k.D));
      const gqa_kv_attend_params a = Params(T, 4, q, &out, W, tree, false);
      size_t bytes = 0;
      REQUIRE(gqa_kv_cache_attend_workspace_size(&c, &a, 1, &bytes) ==
              GQA_STATUS_OK);
      std::vector<unsigned char> ws(bytes + 64);
      void* p = ws.data() + (64 - reinterpret_cast<uintptr_t>(ws.data()) % 64);
      REQUIRE_MESSAGE(
          gqa_kv_cache_attend(&c, &a, p, bytes, nullptr) == GQA_STATUS_OK,
          gqa_last_error_message());
      const double tol = ring ? 2e-3 : 2e-5;
      gqa::test::CheckClose(out, Oracle(m, k, T, 4, q, W, tree, false), tol,
                            tol, "out");
    };
    const int64_t W = ring ? 8 : 0, T = 4;
    append(9, {9, 6});
    for (int round = 0; round < 3; ++round) {
      append(T, {T, T});
      attend(T, W, RandomTree(k.B, T, &rng));
      const std::vector<int64_t> i0 = {0, 1}, i1 = {2};
      REQUIRE(gqa_kv_cache_keep(&c, 0, T, i0.data(), 2) == GQA_STATUS_OK);
      REQUIRE(gqa_kv_cache_keep(&c, 1, T, i1.data(), 1) == GQA_STATUS_OK);
      for (int b = 0; b < 2; ++b) {
        const std::vector<int64_t>& idx = b == 0 ? i0 : i1;
        const size_t base = m.k[b].size() - T;
        std::vector<std::vector<float>> ks, vs;
        for (int64_t i : idx) {
          ks.push_back(m.k[b][base + i]);
          vs.push_back(m.v[b][base + i]);
        }
        m.k[b].resize(base), m.v[b].resize(base);
        m.k[b].insert(m.k[b].end(), ks.begin(), ks.end());
        m.v[b].insert(m.v[b].end(), vs.begin(), vs.end());
        CHECK(lengths[b] == static_cast<int64_t>(m.k[b].size()));
      }
      attend(1, W, {});
      const std::vector<int64_t> cut = {lengths[0] - 1, lengths[1]};
      REQUIRE(gqa_kv_cache_truncate(&c, cut.data()) == GQA_STATUS_OK);
      m.k[0].pop_back(), m.v[0].pop_back();
      if (m.held_from[0] > cut[0]) m.held_from[0] = cut[0];
      append(2, {2, 1});
      attend(2, W, {});
      CHECK(held[0] == (ring ? m.held_from[0] : 0));
    }
    const std::vector<int64_t> bad = {0, 0};
    const std::vector<int64_t> before = lengths;
    CHECK(gqa_kv_cache_keep(&c, 0, T, bad.data(), 2) ==
          GQA_STATUS_INVALID_ARGUMENT);
    // A batch far out of range is refused before any arithmetic on it
    // (batch * capacity overflowed: found by the fuzzer, UBSan).
    for (int64_t b : {int64_t{2}, int64_t{1} << 62, INT64_MAX, INT64_MIN}) {
      CHECK(gqa_kv_cache_keep(&c, b, 0, nullptr, 0) ==
            GQA_STATUS_INVALID_ARGUMENT);
    }
    CHECK(lengths == before);
  }
}
