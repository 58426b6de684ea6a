// KV cache v2 (gqa/block_cache.h) errors: every refused call writes
// nothing (blocks, lengths), and the configurations the format refuses.
#include <stdlib.h>
#include <string.h>

#include <random>
#include <vector>

#include "doctest/doctest.h"
#include "gqa/block_cache.h"
#include "gqa/kv_cache.h"
#include "tests/block_cache_util.h"

namespace {

using gqa::test::Cache;
using gqa::test::Config;
using gqa::test::Random;

}  // namespace

TEST_CASE("block cache errors write nothing") {
  Config k;
  k.dtype = GQA_DTYPE_Q8;
  Cache cache(k);
  std::mt19937 rng(9);
  const int64_t row = k.Hkv * k.D;
  std::vector<float> kn = Random(k.B * 8 * row, &rng), vn = kn;
  REQUIRE(gqa_block_cache_append(&cache.c, 8, nullptr, kn.data(), vn.data(),
                                 GQA_DTYPE_F32) == GQA_STATUS_OK);
  std::vector<unsigned char> before(static_cast<size_t>(cache.PoolBytes()));
  memcpy(before.data(), cache.pool, before.size());
  const std::vector<int64_t> lengths = cache.lengths;
  auto unchanged = [&]() {
    CHECK(memcmp(before.data(), cache.pool, before.size()) == 0);
    CHECK(cache.lengths == lengths);
  };
  auto append = [&](int64_t n) {
    std::vector<float> a = Random(k.B * n * row, &rng), b = a;
    return gqa_block_cache_append(&cache.c, n, nullptr, a.data(), b.data(),
                                  GQA_DTYPE_F32);
  };
  SUBCASE("linear overflow") {
    CHECK(append(k.capacity) == GQA_STATUS_CACHE_OVERFLOW);
    unchanged();
  }
  SUBCASE("a column without a block, append and attend") {
    cache.table[1] = -1;  // batch 0, column 1: slots 16..31
    CHECK(append(10) == GQA_STATUS_BLOCK_MISSING);
    CHECK(append(8) == GQA_STATUS_OK);  // fills slots 8..15 only
    cache.lengths[0] = 17;              // now column 1 holds a token
    std::vector<float> q(static_cast<size_t>(k.B * 2 * k.D), 0.5f), o = q;
    gqa_kv_attend_params a{};
    a.q_len = 1, a.q_heads = 2, a.q = q.data(), a.out = o.data();
    size_t bytes = 0;
    CHECK(gqa_block_cache_attend_workspace_size(&cache.c, &a, 1, &bytes) ==
          GQA_STATUS_BLOCK_MISSING);
  }
  SUBCASE("counts inside the cache (read again while it is written)") {
    // lengths are {8, 8}: valid counts for 8 new tokens, so only the
    // overlap refuses them.
    std::vector<float> a = Random(k.B * 8 * row, &rng), b = a;
    CHECK(gqa_block_cache_append(&cache.c, 8, cache.lengths.data(), a.data(),
                                 b.data(),
                                 GQA_DTYPE_F32) == GQA_STATUS_INVALID_ARGUMENT);
    CHECK(gqa_block_cache_append(
              &cache.c, 2, static_cast<const int64_t*>(cache.pool), a.data(),
              b.data(), GQA_DTYPE_F32) == GQA_STATUS_INVALID_ARGUMENT);
    unchanged();
    // The v1 cache takes the same rule.
    std::vector<float> kc(k.B * 8 * row), vc(kc.size());
    std::vector<int64_t> len1(k.B, 0);
    gqa_kv_cache v1{k.B, 8,         k.Hkv,     k.D,        GQA_DTYPE_F32,
                    0,   kc.data(), vc.data(), len1.data(), nullptr};
    CHECK(gqa_kv_cache_append(&v1, 2, len1.data(), a.data(), b.data(),
                              GQA_DTYPE_F32) == GQA_STATUS_INVALID_ARGUMENT);
    CHECK(gqa_kv_cache_append(&v1, 2, reinterpret_cast<int64_t*>(kc.data()),
                              a.data(), b.data(),
                              GQA_DTYPE_F32) == GQA_STATUS_INVALID_ARGUMENT);
    CHECK(len1 == std::vector<int64_t>(k.B, 0));
  }
  SUBCASE("bad table entries and pool fields") {
    cache.table[0] = static_cast<int32_t>(cache.c.num_blocks);
    CHECK(append(1) == GQA_STATUS_INVALID_ARGUMENT);
    cache.table[0] = -2;
    CHECK(append(1) == GQA_STATUS_INVALID_ARGUMENT);
    unchanged();
  }
  SUBCASE("misaligned pool, zero blocks, overlapping sources") {
    cache.c.blocks = static_cast<unsigned char*>(cache.pool) + 2;
    CHECK(append(1) == GQA_STATUS_INVALID_ARGUMENT);
    cache.c.blocks = cache.pool;
    cache.c.num_blocks = 0;
    CHECK(append(1) == GQA_STATUS_INVALID_SIZE);
    cache.c.num_blocks = static_cast<int64_t>(cache.table.size()) + 1;
    CHECK(gqa_block_cache_append(&cache.c, 1, nullptr, cache.pool, vn.data(),
                                 GQA_DTYPE_F32) == GQA_STATUS_INVALID_ARGUMENT);
    unchanged();
  }
  SUBCASE("read-back outside what the cache holds") {
    std::vector<float> kr(static_cast<size_t>(k.D)), vr(kr.size());
    CHECK(gqa_block_cache_read(&cache.c, 0, 8, 0, kr.data(), vr.data()) ==
          GQA_STATUS_INVALID_ARGUMENT);
    CHECK(gqa_block_cache_read(&cache.c, 0, -1, 0, kr.data(), vr.data()) ==
          GQA_STATUS_INVALID_ARGUMENT);
    CHECK(gqa_block_cache_read(&cache.c, 2, 0, 0, kr.data(), vr.data()) ==
          GQA_STATUS_INVALID_ARGUMENT);
    CHECK(gqa_block_cache_read(&cache.c, 0, 0, 2, kr.data(), vr.data()) ==
          GQA_STATUS_INVALID_ARGUMENT);
    CHECK(gqa_block_cache_read(&cache.c, 0, 0, 0, kr.data(),
                               static_cast<float*>(cache.pool)) ==
          GQA_STATUS_INVALID_ARGUMENT);
    unchanged();
  }
  SUBCASE("attend: out overlaps the pool, too few tokens, ring rule") {
    std::vector<float> q(static_cast<size_t>(k.B * 9 * 2 * k.D), 0.5f);
    gqa_kv_attend_params a{};
    a.q_len = 1, a.q_heads = 2, a.q = q.data(), a.out = cache.pool;
    size_t bytes = 0;
    REQUIRE(gqa_block_cache_attend_workspace_size(&cache.c, &a, 1, &bytes) ==
            GQA_STATUS_OK);
    void* ws = aligned_alloc(64, (bytes + 63) / 64 * 64);
    CHECK(gqa_block_cache_attend(&cache.c, &a, ws, bytes, nullptr) ==
          GQA_STATUS_INVALID_ARGUMENT);
    std::vector<float> o(q.size());
    a.out = o.data();
    a.q_len = 9;  // more queries than tokens
    CHECK(gqa_block_cache_attend(&cache.c, &a, ws, bytes, nullptr) !=
          GQA_STATUS_OK);
    a.q_len = 1;
    CHECK(gqa_block_cache_attend(&cache.c, &a, ws, bytes - 64, nullptr) ==
          GQA_STATUS_WORKSPACE_TOO_SMALL);
    cache.c.config.flags = GQA_BLOCK_CACHE_RING;  // ring without a window
    CHECK(gqa_block_cache_attend(&cache.c, &a, ws, bytes, nullptr) !=
          GQA_STATUS_OK);
    cache.c.config.flags = 0;
    free(ws);
    unchanged();
  }
}

TEST_CASE("block cache configurations the format refuses") {
  gqa_block_cache_config c{};
  c.batch = 1, c.kv_heads = 2, c.head_dim = 48, c.capacity = 64;
  c.block_tokens = 16;
  gqa_block_cache_layout l{};
  c.dtype = GQA_DTYPE_Q4;
  CHECK(gqa_block_cache_layout_of(&c, &l) == GQA_STATUS_INVALID_SIZE);
  c.dtype = GQA_DTYPE_Q8;
  CHECK(gqa_block_cache_layout_of(&c, &l) == GQA_STATUS_OK);
  c.flags = GQA_BLOCK_CACHE_ROTATE;  // 48 is not a power of two
  CHECK(gqa_block_cache_layout_of(&c, &l) == GQA_STATUS_INVALID_SIZE);
  c.flags = 8;  // no such flag
  CHECK(gqa_block_cache_layout_of(&c, &l) == GQA_STATUS_INVALID_ARGUMENT);
  c.flags = 0;
  c.dtype = 7;
  CHECK(gqa_block_cache_layout_of(&c, &l) == GQA_STATUS_INVALID_ENUM);
  c.dtype = GQA_DTYPE_F32;
  c.value_dim = 32;  // Dv != D is a format the attend reads
  CHECK(gqa_block_cache_layout_of(&c, &l) == GQA_STATUS_OK);
  c.value_dim = -1;
  CHECK(gqa_block_cache_layout_of(&c, &l) == GQA_STATUS_INVALID_SIZE);
  c.value_dim = 5000;
  CHECK(gqa_block_cache_layout_of(&c, &l) == GQA_STATUS_SIZE_OVERFLOW);
  c.value_dim = 0;
  c.block_tokens = 0;
  CHECK(gqa_block_cache_layout_of(&c, &l) == GQA_STATUS_INVALID_SIZE);
  c.block_tokens = 5000;
  CHECK(gqa_block_cache_layout_of(&c, &l) == GQA_STATUS_SIZE_OVERFLOW);
  c.block_tokens = 16;
  c.capacity = (int64_t{1} << 24) + 1;
  CHECK(gqa_block_cache_layout_of(&c, &l) == GQA_STATUS_SIZE_OVERFLOW);
  // The documented layout of a q4 block: codes, scales, 64-byte regions.
  c.capacity = 100, c.head_dim = 64, c.dtype = GQA_DTYPE_Q4;
  REQUIRE(gqa_block_cache_layout_of(&c, &l) == GQA_STATUS_OK);
  CHECK(l.k_row_bytes == 32);
  CHECK(l.k_row_scales == 2);
  CHECK(l.k_codes == 0);
  CHECK(l.k_scales == 16 * 2 * 32);
  CHECK(l.v_codes == l.k_scales + 128);
  CHECK(l.block_bytes == 2 * (1024 + 128));
  CHECK(l.table_columns == 7);
}
