// forward() allocates nothing: malloc and friends are replaced in this
// executable and counted (this sees libXNNPACK's and libstdc++'s calls too).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <malloc.h>
#include <pthreadpool.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <new>
#include <vector>

#include "doctest/doctest.h"
#include "gqa/attention.h"
#include "gqa/gqa.hpp"
#include "gqa/kv_cache.h"
#include "gqa/rope.h"

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
void __libc_free(void*);
}

static std::atomic<long> g_allocs{0};

extern "C" {
void* malloc(size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  return __libc_malloc(n);
}
void* calloc(size_t n, size_t m) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  return __libc_calloc(n, m);
}
void* realloc(void* p, size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  return __libc_realloc(p, n);
}
void free(void* p) { __libc_free(p); }
void* memalign(size_t a, size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  return __libc_memalign(a, n);
}
void* aligned_alloc(size_t a, size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  return __libc_memalign(a, n);
}
int posix_memalign(void** out, size_t a, size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  *out = __libc_memalign(a, n);
  return *out ? 0 : 12;
}
}
void* operator new(size_t n) {
  void* p = malloc(n);
  if (!p) throw std::bad_alloc();
  return p;
}
void* operator new[](size_t n) { return operator new(n); }
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  return malloc(n);
}
void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  return malloc(n);
}
void operator delete(void* p) noexcept { free(p); }
void operator delete[](void* p) noexcept { free(p); }
void operator delete(void* p, size_t) noexcept { free(p); }
void operator delete[](void* p, size_t) noexcept { free(p); }

namespace {

TEST_CASE("the counter is live") {
  const long before = g_allocs.load();
  void* volatile p = malloc(33);
  free(p);
  CHECK(g_allocs.load() == before + 1);
}

TEST_CASE("forward allocates nothing, f32 and f16, with and without threads") {
  const int64_t B = 2, T = 9, S = 13, Hq = 8, Hkv = 2, D = 16, F = 24;
  for (gqa_dtype dtype : {GQA_DTYPE_F32, GQA_DTYPE_F16}) {
    const size_t e = dtype == GQA_DTYPE_F16 ? 2 : 4;
    std::vector<unsigned char> wq(F * Hq * D * e, 0), wkv(F * Hkv * D * e, 0),
        wo(Hq * D * F * e, 0), bq(Hq * D * e, 0), bkv(Hkv * D * e, 0),
        bo(F * e, 0);
    std::vector<unsigned char> q(B * T * F * e, 0), v(B * S * F * e, 0),
        out(B * T * F * e), scores(B * Hq * T * S * e);
    std::vector<uint8_t> mask(B * T * S, 1), qm(B * T, 1), vm(B * S, 1);
    gqa_layer_config c;
    gqa_layer_config_init(&c, D, Hq, Hkv, F, F);
    c.dtype = dtype;
    c.use_gate = 1;
    c.dropout = 0.25f;
    c.sliding_window = 5;
    gqa_layer_weights w{wq.data(),  bq.data(),  wkv.data(), bkv.data(),
                        wkv.data(), bkv.data(), wq.data(),  bq.data(),
                        wo.data(),  bo.data()};
    gqa::Layer layer;
    REQUIRE(gqa::Layer::Create(c, w, &layer).ok());
    size_t bytes = 0;
    REQUIRE(layer.WorkspaceSize(B, T, S, &bytes, /*max_threads=*/2).ok());
    gqa::Workspace ws(bytes);
    pthreadpool_t pool = pthreadpool_create(2);
    gqa_forward_args a{};
    a.batch = B;
    a.query_len = T;
    a.value_len = S;
    a.query = q.data();
    a.value = v.data();
    a.attention_mask = mask.data();
    a.attention_mask_rank = 3;
    a.attention_mask_dims[0] = B;
    a.attention_mask_dims[1] = T;
    a.attention_mask_dims[2] = S;
    a.query_mask = qm.data();
    a.value_mask = vm.data();
    a.use_causal_mask = 1;
    a.training = 1;
    a.output = out.data();
    a.scores = scores.data();
    for (pthreadpool_t p : {static_cast<pthreadpool_t>(nullptr), pool}) {
      for (int rep = 0; rep < 3; ++rep) {
        const long before = g_allocs.load();
        const gqa_status s =
            gqa_layer_forward(layer.handle(), &a, ws.data(), ws.size(), p);
        const long after = g_allocs.load();
        CHECK(s == GQA_STATUS_OK);
        CHECK(after - before == 0);
      }
    }
    pthreadpool_destroy(pool);
  }
}

TEST_CASE(
    "gqa_attention allocates nothing, every dtype, masks, scores, threads") {
  const int64_t B = 2, T = 37, S = 70, Hq = 8, Hkv = 2, D = 40;
  std::vector<float> q(B * T * Hq * D, 0.5f), kv(B * S * Hkv * D, 0.25f);
  std::vector<float> out(B * T * Hq * D), scores(B * Hq * T * S);
  std::vector<uint8_t> km(B * S, 1), mask(T * S, 1);
  std::vector<int64_t> lengths = {S, S - 5};
  gqa_attention_params p;
  gqa_attention_params_init(&p);
  p.batch = B, p.q_len = T, p.kv_len = S, p.q_heads = Hq, p.kv_heads = Hkv,
  p.head_dim = D;
  p.q = q.data(), p.k = kv.data(), p.v = kv.data(), p.out = out.data();
  p.causal = 1, p.sliding_window = 20, p.key_lengths = lengths.data(),
  p.key_mask = km.data();
  p.mask = mask.data(), p.mask_stride_query = S, p.mask_stride_key = 1;
  p.scores = scores.data();
  pthreadpool_t pool = pthreadpool_create(2);
  size_t bytes = 0;
  REQUIRE(gqa_attention_workspace_size(&p, 2, &bytes) == GQA_STATUS_OK);
  gqa::Workspace ws(bytes);
  for (int32_t dtype : {GQA_DTYPE_F32, GQA_DTYPE_F16}) {
    p.q_dtype = p.kv_dtype = p.out_dtype = p.scores_dtype =
        dtype;  // f16 reads half the buffers
    for (pthreadpool_t tp : {static_cast<pthreadpool_t>(nullptr), pool}) {
      const long before = g_allocs.load();
      CHECK(gqa_attention(&p, ws.data(), ws.size(), tp) == GQA_STATUS_OK);
      CHECK(g_allocs.load() - before == 0);
    }
  }
  pthreadpool_destroy(pool);
}

TEST_CASE(
    "kv cache append, attend and the cached layer forward allocate nothing") {
  const int64_t B = 2, cap = 600, Hq = 8, Hkv = 2, D = 16, F = 24;
  for (int32_t dtype : {GQA_DTYPE_F32, GQA_DTYPE_F16}) {
    std::vector<unsigned char> k(B * cap * Hkv * D * 4), v(k.size());
    std::vector<int64_t> lengths(B, 0);
    gqa_kv_cache cache{B,        cap,      Hkv,           D, dtype, 0,
                       k.data(), v.data(), lengths.data(), nullptr};
    std::vector<float> kn(B * 3 * Hkv * D, 0.5f), q(B * 3 * Hq * D, 0.25f),
        out(q.size());
    gqa_kv_attend_params ap;
    memset(&ap, 0, sizeof(ap));
    ap.q_len = 3, ap.q_heads = Hq, ap.q = q.data(), ap.out = out.data();
    // Every third step with RoPE (and the norm) fused into both calls.
    gqa_rope_params rope;
    gqa_rope_params_init(&rope);
    const std::vector<float> norm(D, 1.5f);
    rope.norm_weight = norm.data();
    size_t bytes = 0;
    ap.q_rope = &rope;  // the larger workspace (the rotated queries)
    REQUIRE(gqa_kv_cache_attend_workspace_size(&cache, &ap, 2, &bytes) ==
            GQA_STATUS_OK);
    gqa::Workspace ws(bytes);
    pthreadpool_t pool = pthreadpool_create(2);
    for (int step = 0; step < 100; ++step) {
      const long before = g_allocs.load();
      ap.q_rope = step % 3 == 2 ? &rope : nullptr;
      CHECK(gqa_kv_cache_append_rope(&cache, 3, nullptr, kn.data(), kn.data(),
                                     GQA_DTYPE_F32, ap.q_rope,
                                     nullptr) == GQA_STATUS_OK);
      CHECK(gqa_kv_cache_attend(&cache, &ap, ws.data(), ws.size(),
                                step % 2 ? pool : nullptr) == GQA_STATUS_OK);
      CHECK(g_allocs.load() - before == 0);
    }
    // The layer decoding token by token into a fresh cache.
    lengths.assign(B, 0);
    gqa_layer_config c;
    gqa_layer_config_init(&c, D, Hq, Hkv, F, F);
    c.dtype = dtype;
    c.use_gate = 1;
    const size_t e = dtype == GQA_DTYPE_F16 ? 2 : 4;
    std::vector<unsigned char> wq(F * Hq * D * e, 0), wkv(F * Hkv * D * e, 0),
        wo(Hq * D * F * e, 0), bq(Hq * D * e, 0), bkv(Hkv * D * e, 0),
        bo(F * e, 0);
    gqa_layer_weights w{wq.data(),  bq.data(),  wkv.data(), bkv.data(),
                        wkv.data(), bkv.data(), wq.data(),  bq.data(),
                        wo.data(),  bo.data()};
    gqa::Layer layer;
    REQUIRE(gqa::Layer::Create(c, w, &layer).ok());
    REQUIRE(gqa_layer_cached_workspace_size(layer.handle(), &cache, 1, 2,
                                            &bytes) == GQA_STATUS_OK);
    gqa::Workspace lws(bytes);
    std::vector<unsigned char> x(B * F * e, 0), y(B * F * e);
    gqa_forward_args a{};
    a.batch = B, a.query_len = 1, a.value_len = 1, a.query = a.value = x.data();
    a.output = y.data();
    for (int step = 0; step < 50; ++step) {
      const long before = g_allocs.load();
      CHECK(gqa_layer_forward_cached(layer.handle(), &a, &cache, lws.data(),
                                     lws.size(), step % 2 ? pool : nullptr) ==
            GQA_STATUS_OK);
      CHECK(g_allocs.load() - before == 0);
    }
    pthreadpool_destroy(pool);
  }
}

TEST_CASE(
    "block cache append, attend, read and the layer over it allocate "
    "nothing") {
  const int64_t B = 2, cap = 600, Hq = 8, Hkv = 2, D = 32, F = 24;
  for (int32_t dtype :
       {GQA_DTYPE_F32, GQA_DTYPE_F16, GQA_DTYPE_Q8, GQA_DTYPE_Q4}) {
    gqa_block_cache cache{};
    cache.config.batch = B, cache.config.kv_heads = Hkv;
    cache.config.head_dim = D, cache.config.capacity = cap;
    cache.config.block_tokens = 32, cache.config.dtype = dtype;
    cache.config.flags = GQA_BLOCK_CACHE_ROTATE;
    gqa_block_cache_layout l{};
    REQUIRE(gqa_block_cache_layout_of(&cache.config, &l) == GQA_STATUS_OK);
    std::vector<int32_t> table(B * l.table_columns);
    for (size_t i = 0; i < table.size(); ++i) table[i] = int32_t(i);
    std::vector<int64_t> lengths(B, 0);
    gqa::Workspace blocks(table.size() * l.block_bytes);
    cache.blocks = blocks.data(), cache.num_blocks = int64_t(table.size());
    cache.block_table = table.data(), cache.lengths = lengths.data();
    std::vector<float> kn(B * 3 * Hkv * D, 0.5f), q(B * 3 * Hq * D, 0.25f),
        out(q.size()), row(D), row2(D);
    gqa_kv_attend_params ap;
    memset(&ap, 0, sizeof(ap));
    ap.q_len = 3, ap.q_heads = Hq, ap.q = q.data(), ap.out = out.data();
    gqa_rope_params rope;
    gqa_rope_params_init(&rope);
    size_t bytes = 0;
    ap.q_rope = &rope;
    REQUIRE(gqa_block_cache_attend_workspace_size(&cache, &ap, 2, &bytes) ==
            GQA_STATUS_OK);
    gqa::Workspace ws(bytes);
    pthreadpool_t pool = pthreadpool_create(2);
    for (int step = 0; step < 100; ++step) {
      const long before = g_allocs.load();
      ap.q_rope = step % 3 == 2 ? &rope : nullptr;
      CHECK(gqa_block_cache_append_rope(&cache, 3, nullptr, kn.data(),
                                        kn.data(), GQA_DTYPE_F32, ap.q_rope,
                                        nullptr) == GQA_STATUS_OK);
      CHECK(gqa_block_cache_attend(&cache, &ap, ws.data(), ws.size(),
                                   step % 2 ? pool : nullptr) == GQA_STATUS_OK);
      CHECK(gqa_block_cache_read(&cache, 1, step, 1, row.data(), row2.data()) ==
            GQA_STATUS_OK);
      CHECK(g_allocs.load() - before == 0);
    }
    lengths.assign(B, 0);
    gqa_layer_config c;
    gqa_layer_config_init(&c, D, Hq, Hkv, F, F);
    std::vector<float> wq(F * Hq * D, 0.f), wkv(F * Hkv * D, 0.f),
        wo(Hq * D * F, 0.f);
    c.use_bias = 0;
    gqa_layer_weights w{wq.data(), nullptr, wkv.data(), nullptr,   wkv.data(),
                        nullptr,   nullptr, nullptr,    wo.data(), nullptr};
    gqa::Layer layer;
    REQUIRE(gqa::Layer::Create(c, w, &layer).ok());
    REQUIRE(layer.CachedWorkspaceSize(cache, 1, &bytes, 2).ok());
    gqa::Workspace lws(bytes);
    std::vector<float> x(B * F, 0.f), y(B * F);
    gqa_forward_args a{};
    a.batch = B, a.query_len = 1, a.value_len = 1, a.query = a.value = x.data();
    a.output = y.data();
    for (int step = 0; step < 50; ++step) {
      const long before = g_allocs.load();
      CHECK(
          layer.ForwardCached(a, &cache, lws, step % 2 ? pool : nullptr).ok());
      CHECK(g_allocs.load() - before == 0);
    }
    pthreadpool_destroy(pool);
  }
}

TEST_CASE("gqa_rope allocates nothing: f32, f16, in place, norm, scaling") {
  const int64_t B = 2, T = 3, H = 4, D = 128;
  const size_t n = B * T * H * D;
  std::vector<float> x(n, 0.5f), y(n), w(D, 1.0f);
  std::vector<uint16_t> xh(n, 0x3800), yh(n);
  std::vector<int64_t> pos = {0, 5, 70000, 3, 1 << 20, 16777215};
  gqa_rope_params p;
  gqa_rope_params_init(&p);
  p.scaling = GQA_ROPE_SCALING_LLAMA3, p.factor = 8, p.theta = 500000;
  for (int run = 0; run < 2; ++run) {  // the second: nothing lazily set up
    for (const float* weight : {static_cast<const float*>(nullptr),
                                static_cast<const float*>(w.data())}) {
      p.norm_weight = weight;
      const long before = g_allocs.load();
      CHECK(gqa_rope(&p, B, T, H, D, pos.data(), x.data(), GQA_DTYPE_F32,
                     y.data(), GQA_DTYPE_F32) == GQA_STATUS_OK);
      CHECK(gqa_rope(&p, B, T, H, D, pos.data(), y.data(), GQA_DTYPE_F32,
                     y.data(), GQA_DTYPE_F32) == GQA_STATUS_OK);
      CHECK(gqa_rope(&p, B, T, H, D, pos.data(), xh.data(), GQA_DTYPE_F16,
                     yh.data(), GQA_DTYPE_F16) == GQA_STATUS_OK);
      CHECK(gqa_rope(&p, B, T, H, D, pos.data(), x.data(), GQA_DTYPE_F32,
                     yh.data(), GQA_DTYPE_F16) == GQA_STATUS_OK);
      CHECK(g_allocs.load() - before == 0);
    }
  }
}

}  // namespace
