// The Keras layer decoding through a KV cache v2 (gqa::Layer::ForwardCached
// over a gqa_block_cache): token by token equals the whole causal sequence,
// in every cache element type, with rotation and rings; draft verification
// with a tree equals each path alone; and its errors.
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <random>
#include <vector>

#include "doctest/doctest.h"
#include "gqa/gqa.hpp"
#include "src/reference/f16_util.h"
#include "tests/check.h"

namespace {

using gqa::Layer;
using gqa::Workspace;

struct Case {
  gqa_dtype dtype = GQA_DTYPE_F32;  // the layer's
  int32_t cache_dtype = GQA_DTYPE_F32;
  bool rotate = false, ring = false;
  int64_t window = 0, chunk = 1, block_tokens = 5;
};

void CheckLayerDecode(const Case& c, double tol) {
  INFO("layer " << c.dtype << " cache " << c.cache_dtype << " rotate "
                << c.rotate << " ring " << c.ring << " chunk " << c.chunk);
  const int64_t B = 2, T = 19, F = 24, Hq = 4, Hkv = 2, D = 32;
  const bool f16 = c.dtype == GQA_DTYPE_F16;
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<float> u(-0.5f, 0.5f);
  auto make = [&](size_t n) {
    std::vector<float> f(n);
    for (float& x : f) x = u(rng);
    return std::make_pair(f, gqa::reference::ToHalf(f));
  };
  auto wq = make(F * Hq * D), wk = make(F * Hkv * D), wv = make(F * Hkv * D),
       wo = make(Hq * D * F), bq = make(Hq * D), bk = make(Hkv * D),
       bv = make(Hkv * D), bo = make(F), x = make(B * T * F);
  auto P = [&](const std::pair<std::vector<float>, std::vector<uint16_t>>& a)
      -> const void* {
    return f16 ? static_cast<const void*>(a.second.data()) : a.first.data();
  };
  gqa_layer_config cfg;
  gqa_layer_config_init(&cfg, D, Hq, Hkv, F, F);
  cfg.dtype = c.dtype;
  cfg.sliding_window = c.window;
  gqa_layer_weights w{P(wq), P(bq),   P(wk),   P(bk), P(wv),
                      P(bv), nullptr, nullptr, P(wo), P(bo)};
  Layer layer;
  REQUIRE(Layer::Create(cfg, w, &layer).ok());
  const size_t e = f16 ? 2 : 4;
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

  gqa_block_cache cache{};
  cache.config.batch = B;
  cache.config.kv_heads = Hkv;
  cache.config.head_dim = D;
  cache.config.capacity = c.ring ? c.window + c.chunk - 1 : 24;
  cache.config.block_tokens = c.block_tokens;
  cache.config.dtype = c.cache_dtype;
  cache.config.flags = (c.ring ? GQA_BLOCK_CACHE_RING : 0u) |
                       (c.rotate ? GQA_BLOCK_CACHE_ROTATE : 0u);
  gqa_block_cache_layout l{};
  REQUIRE(gqa::BlockCache::Layout(cache.config, &l).ok());
  std::vector<int32_t> table(static_cast<size_t>(B * l.table_columns));
  for (size_t i = 0; i < table.size(); ++i)
    table[i] = static_cast<int32_t>(table.size() - 1 - i);
  std::vector<int64_t> lengths(B, 0);
  void* pool = aligned_alloc(64, table.size() * l.block_bytes);
  cache.blocks = pool;
  cache.num_blocks = static_cast<int64_t>(table.size());
  cache.block_table = table.data();
  cache.lengths = lengths.data();

  REQUIRE(layer.CachedWorkspaceSize(cache, c.chunk, &bytes).ok());
  Workspace cws(bytes);
  std::vector<unsigned char> step_x(B * c.chunk * F * e),
      step_out(B * c.chunk * F * e);
  std::vector<float> got(B * T * F);
  for (int64_t t0 = 0; t0 < T; t0 += c.chunk) {
    const int64_t n = std::min(c.chunk, T - t0);
    for (int64_t b = 0; b < B; ++b) {
      memcpy(&step_x[b * n * F * e],
             static_cast<const unsigned char*>(P(x)) + (b * T + t0) * F * e,
             n * F * e);
    }
    gqa_forward_args s{};
    s.batch = B, s.query_len = n, s.value_len = n;
    s.query = s.value = step_x.data();
    s.output = step_out.data();
    const gqa::Status st = layer.ForwardCached(s, &cache, cws);
    REQUIRE_MESSAGE(st.ok(), st.message());
    for (int64_t b = 0; b < B; ++b) {
      const std::vector<float> step =
          gqa::reference::Widen(&step_out[b * n * F * e], n * F, f16);
      std::copy(step.begin(), step.end(), got.begin() + (b * T + t0) * F);
    }
  }
  free(pool);
  const std::vector<float> want =
      gqa::reference::Widen(full.data(), got.size(), f16);
  gqa::test::CheckClose(got, std::vector<double>(want.begin(), want.end()), tol,
                        tol, "decode");
}

}  // namespace

TEST_CASE("layer decoding through a v2 cache equals the causal sequence") {
  for (gqa_dtype dtype : {GQA_DTYPE_F32, GQA_DTYPE_F16}) {
    const bool f16 = dtype == GQA_DTYPE_F16;
    for (int64_t chunk : {1, 4}) {
      Case c;
      c.dtype = dtype, c.chunk = chunk;
      CheckLayerDecode(c, f16 ? 3e-3 : 1e-5);
      c.rotate = true;
      CheckLayerDecode(c, f16 ? 3e-3 : 1e-5);
      c.cache_dtype = GQA_DTYPE_F16, c.rotate = false;
      CheckLayerDecode(c, 3e-3);
      c.ring = true, c.window = 6;
      CheckLayerDecode(c, 3e-3);
      // A q8 cache moves k and v by up to half a step (max|row| / 254, ~6e-3
      // here); the output projection sums 128 such errors times weights of
      // ~0.3: measured 2.3e-2. A wrong head, position or rotation moves
      // outputs by ~0.5. (q4's exact semantics: test_block_cache, golden.)
      c.ring = false, c.window = 0;
      c.cache_dtype = GQA_DTYPE_Q8;
      CheckLayerDecode(c, 5e-2);
      c.rotate = true;
      CheckLayerDecode(c, 5e-2);
    }
  }
}

TEST_CASE("layer cached forward over a v2 cache: mismatches are refused") {
  gqa_layer_config cfg;
  gqa_layer_config_init(&cfg, 32, 4, 2, 8, 8);
  cfg.use_bias = 0;
  std::vector<float> wq(8 * 128, 0.1f), wk(8 * 64, 0.1f), wo(128 * 8, 0.1f);
  gqa_layer_weights w{wq.data(), nullptr, wk.data(), nullptr,   wk.data(),
                      nullptr,   nullptr, nullptr,   wo.data(), nullptr};
  Layer layer;
  REQUIRE(Layer::Create(cfg, w, &layer).ok());
  gqa_block_cache cache{};
  cache.config.batch = 1, cache.config.kv_heads = 2, cache.config.head_dim = 16;
  cache.config.capacity = 8, cache.config.block_tokens = 8;
  cache.config.dtype = GQA_DTYPE_F32;
  int32_t table[1] = {0};
  int64_t len[1] = {0};
  void* pool = aligned_alloc(64, 1 << 16);
  cache.blocks = pool, cache.num_blocks = 1, cache.block_table = table;
  cache.lengths = len;
  size_t bytes = 0;
  CHECK(layer.CachedWorkspaceSize(cache, 1, &bytes).code() ==
        GQA_STATUS_SHAPE_MISMATCH);
  cache.config.head_dim = 32;
  REQUIRE(layer.CachedWorkspaceSize(cache, 1, &bytes).ok());
  Workspace ws(bytes);
  std::vector<float> x(8 * 9, 0.5f), out(8 * 9);
  gqa_forward_args a{};
  a.batch = 1, a.query_len = 9, a.value_len = 9;
  a.query = a.value = x.data();
  a.output = out.data();
  CHECK(layer.ForwardCached(a, &cache, ws).code() ==
        GQA_STATUS_CACHE_OVERFLOW);  // 9 tokens, 8 slots
  CHECK(len[0] == 0);
  free(pool);
}

namespace {

// A v2 f32 cache of one sequence in owned memory, with held_from.
struct OwnedCache {
  gqa_block_cache c{};
  std::vector<int32_t> table;
  std::vector<int64_t> lengths{0}, held{0};
  void* pool = nullptr;
  OwnedCache(int64_t Hkv, int64_t D, int64_t capacity) {
    c.config.batch = 1, c.config.kv_heads = Hkv, c.config.head_dim = D;
    c.config.capacity = capacity, c.config.block_tokens = 3;
    c.config.dtype = GQA_DTYPE_F32;
    gqa_block_cache_layout l{};
    REQUIRE(gqa::BlockCache::Layout(c.config, &l).ok());
    table.resize(static_cast<size_t>(l.table_columns));
    for (size_t i = 0; i < table.size(); ++i)
      table[i] = static_cast<int32_t>(table.size() - 1 - i);
    pool = aligned_alloc(64, table.size() * l.block_bytes);
    c.blocks = pool;
    c.num_blocks = static_cast<int64_t>(table.size());
    c.block_table = table.data();
    c.lengths = lengths.data();
    c.held_from = held.data();
  }
  ~OwnedCache() { free(pool); }
};

}  // namespace

TEST_CASE("layer cached forward verifies a draft tree like each path alone") {
  // Prefix of 6 tokens, then drafts d0, d1, d2 with d1 and d2 children of
  // d0. One tree forward must give each draft what a causal forward of its
  // own path gives; after keeping the path d0, d2 the next token matches a
  // cache that only ever saw that path.
  const int64_t F = 24, Hq = 4, Hkv = 2, D = 16, P = 6;
  std::mt19937_64 rng(17);
  std::uniform_real_distribution<float> u(-0.5f, 0.5f);
  auto make = [&](size_t n) {
    std::vector<float> f(n);
    for (float& x : f) x = u(rng);
    return f;
  };
  const auto wq = make(F * Hq * D), wk = make(F * Hkv * D),
             wv = make(F * Hkv * D), wo = make(Hq * D * F);
  gqa_layer_config cfg;
  gqa_layer_config_init(&cfg, D, Hq, Hkv, F, F);
  cfg.use_bias = 0;
  gqa_layer_weights w{wq.data(), nullptr, wk.data(), nullptr,   wv.data(),
                      nullptr,   nullptr, nullptr,   wo.data(), nullptr};
  Layer layer;
  REQUIRE(Layer::Create(cfg, w, &layer).ok());
  const auto prefix = make(P * F), drafts = make(3 * F), next = make(F);
  auto forward = [&](OwnedCache* cache, const float* x, int64_t n,
                     const uint8_t* tree) {
    size_t bytes = 0;
    REQUIRE(layer.CachedWorkspaceSize(cache->c, n, &bytes).ok());
    Workspace ws(bytes);
    std::vector<float> out(static_cast<size_t>(n * F), -7.0f);
    gqa_forward_args s{};
    s.batch = 1, s.query_len = n, s.value_len = n;
    s.query = s.value = x;
    s.output = out.data();
    if (tree) {
      s.attention_mask = tree;
      s.attention_mask_rank = 3;
      s.attention_mask_dims[0] = 1;
      s.attention_mask_dims[1] = s.attention_mask_dims[2] = n;
    }
    const gqa::Status st = layer.ForwardCached(s, &cache->c, ws);
    REQUIRE_MESSAGE(st.ok(), st.message());
    return out;
  };
  OwnedCache tree_cache(Hkv, D, 16);
  forward(&tree_cache, prefix.data(), P, nullptr);
  const uint8_t tree[9] = {1, 0, 0, 1, 1, 0, 1, 0, 1};
  const std::vector<float> got = forward(&tree_cache, drafts.data(), 3, tree);
  for (int64_t leaf : {1, 2}) {
    INFO("path d0, d" << leaf);
    OwnedCache path(Hkv, D, 16);
    forward(&path, prefix.data(), P, nullptr);
    std::vector<float> x(drafts.begin(), drafts.begin() + F);
    x.insert(x.end(), drafts.begin() + leaf * F,
             drafts.begin() + (leaf + 1) * F);
    const std::vector<float> want = forward(&path, x.data(), 2, nullptr);
    const std::vector<float> got0(got.begin(), got.begin() + F);
    const std::vector<float> got_leaf(got.begin() + leaf * F,
                                      got.begin() + (leaf + 1) * F);
    gqa::test::CheckClose(got0,
                          std::vector<double>(want.begin(), want.begin() + F),
                          1e-5, 1e-5, "d0");
    gqa::test::CheckClose(got_leaf,
                          std::vector<double>(want.begin() + F, want.end()),
                          1e-5, 1e-5, "leaf");
  }
  // Keep d0, d2 (through the C ABI on the cache the layer wrote).
  const int64_t keep[2] = {0, 2};
  REQUIRE(gqa_block_cache_keep(&tree_cache.c, 0, 3, keep, 2) == GQA_STATUS_OK);
  CHECK(tree_cache.lengths[0] == P + 2);
  OwnedCache path(Hkv, D, 16);
  forward(&path, prefix.data(), P, nullptr);
  std::vector<float> x(drafts.begin(), drafts.begin() + F);
  x.insert(x.end(), drafts.begin() + 2 * F, drafts.end());
  forward(&path, x.data(), 2, nullptr);
  const std::vector<float> a = forward(&tree_cache, next.data(), 1, nullptr);
  const std::vector<float> b = forward(&path, next.data(), 1, nullptr);
  gqa::test::CheckClose(a, std::vector<double>(b.begin(), b.end()), 1e-5, 1e-5,
                        "after keep");
  // A tree that is not (T, T) is refused.
  OwnedCache other(Hkv, D, 16);
  size_t bytes = 0;
  REQUIRE(layer.CachedWorkspaceSize(other.c, 3, &bytes).ok());
  Workspace ws(bytes);
  std::vector<float> out(3 * F);
  gqa_forward_args s{};
  s.batch = 1, s.query_len = 3, s.value_len = 3;
  s.query = s.value = drafts.data();
  s.output = out.data();
  s.attention_mask = tree;
  s.attention_mask_rank = 3;
  s.attention_mask_dims[0] = 1, s.attention_mask_dims[1] = 3;
  s.attention_mask_dims[2] = 2;
  CHECK(!layer.ForwardCached(s, &other.c, ws).ok());
  CHECK(other.lengths[0] == 0);
}
