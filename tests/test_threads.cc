// Thread safety: one layer (f32 and f16) shared by several threads, each
// with its own workspace, inputs, outputs, cache and pool (or none, or a
// pool shared with another thread), and concurrent attends on one shared
// KV cache. Every result must equal the single-threaded one bitwise.
// Built with -fsanitize=thread too (GQA_TSAN, tests/run_all.sh).
#if defined(__SANITIZE_THREAD__)
#define GQA_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define GQA_TEST_TSAN 1
#endif
#endif

#include <pthreadpool.h>
#include <stdint.h>
#include <string.h>

#include <atomic>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "doctest/doctest.h"
#include "gqa/gqa.hpp"
#include "gqa/kv_cache.h"
#include "src/half.h"
#include "tests/layer_case.h"

#ifdef GQA_TEST_TSAN
// libpthreadpool is not instrumented: ThreadSanitizer cannot see that a
// parallel section's tasks happen after the caller's writes before it, and
// before its reads after it (atomics and futexes inside the library), and
// would report every such pair as a race. These wrappers of the two entry
// points gqa (and XNNPACK) use state exactly that, and nothing more; every
// access in gqa's code stays checked.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

namespace {

struct Section {
  void* task;
  void* context;
};

void Task1d(void* s, size_t i) {
  Section* sec = static_cast<Section*>(s);
  __tsan_acquire(sec);
  reinterpret_cast<pthreadpool_task_1d_t>(sec->task)(sec->context, i);
  __tsan_release(sec);
}

void Task2d(void* s, size_t i, size_t j) {
  Section* sec = static_cast<Section*>(s);
  __tsan_acquire(sec);
  reinterpret_cast<pthreadpool_task_2d_t>(sec->task)(sec->context, i, j);
  __tsan_release(sec);
}

template <class Fn>
Fn Next(const char* name) {
  return reinterpret_cast<Fn>(dlsym(RTLD_NEXT, name));
}

}  // namespace

extern "C" void pthreadpool_parallelize_1d(pthreadpool_t pool,
                                           pthreadpool_task_1d_t fn,
                                           void* context, size_t range,
                                           uint32_t flags) {
  using Real =
      void (*)(pthreadpool_t, pthreadpool_task_1d_t, void*, size_t, uint32_t);
  static const Real real = Next<Real>("pthreadpool_parallelize_1d");
  Section sec{reinterpret_cast<void*>(fn), context};
  __tsan_release(&sec);
  real(pool, &Task1d, &sec, range, flags);
  __tsan_acquire(&sec);
}

extern "C" void pthreadpool_parallelize_2d(pthreadpool_t pool,
                                           pthreadpool_task_2d_t fn,
                                           void* context, size_t range_i,
                                           size_t range_j, uint32_t flags) {
  using Real = void (*)(pthreadpool_t, pthreadpool_task_2d_t, void*, size_t,
                        size_t, uint32_t);
  static const Real real = Next<Real>("pthreadpool_parallelize_2d");
  Section sec{reinterpret_cast<void*>(fn), context};
  __tsan_release(&sec);
  real(pool, &Task2d, &sec, range_i, range_j, flags);
  __tsan_acquire(&sec);
}
#endif  // GQA_TEST_TSAN

namespace gqa {
namespace test {
namespace {

constexpr int kThreads = 4;
constexpr int64_t B = 2, T = 6, S = 9, Hq = 4, Hkv = 2, D = 16, F = 24;
constexpr int64_t kCapacity = 16;
const int64_t kSteps[] = {3, 1, 2, 1};  // tokens per cached step

// Rounds of (forward + cached steps + size queries) per thread: 300 calls
// (100 under ThreadSanitizer).
int Rounds() {
#ifdef GQA_TEST_TSAN
  const int r = 10;
#else
  const int r = static_cast<int>(30 * TestScale());
#endif
  return r < 4 ? 4 : r;
}

// Values in the layer's dtype (f32 or f16 bits).
struct Tensor {
  std::vector<float> f;
  std::vector<uint16_t> h;
  const void* ptr(bool f16) const {
    return f16 ? static_cast<const void*>(h.data()) : f.data();
  }
};

Tensor Random(std::mt19937_64& rng, size_t n, float lim) {
  std::uniform_real_distribution<float> u(-lim, lim);
  Tensor t;
  t.f.resize(n);
  t.h.resize(n);
  for (size_t i = 0; i < n; ++i) {
    t.h[i] = FloatToHalf(u(rng));
    t.f[i] = HalfToFloat(t.h[i]);
  }
  return t;
}

Layer MakeLayer(bool f16) {
  std::mt19937_64 rng(f16 ? 11 : 7);
  const Tensor wq = Random(rng, F * Hq * D, 0.3f),
               wk = Random(rng, F * Hkv * D, 0.3f),
               wv = Random(rng, F * Hkv * D, 0.3f),
               wg = Random(rng, F * Hq * D, 0.3f),
               wo = Random(rng, Hq * D * F, 0.3f),
               bq = Random(rng, Hq * D, 0.2f), bk = Random(rng, Hkv * D, 0.2f),
               bv = Random(rng, Hkv * D, 0.2f), bg = Random(rng, Hq * D, 0.2f),
               bo = Random(rng, F, 0.2f);
  gqa_layer_config c;
  gqa_layer_config_init(&c, D, Hq, Hkv, F, F);
  c.use_gate = 1;  // all five XNNPACK operators in the f32 layer
  c.dtype = f16 ? GQA_DTYPE_F16 : GQA_DTYPE_F32;
  gqa_layer_weights w{wq.ptr(f16), bq.ptr(f16), wk.ptr(f16), bk.ptr(f16),
                      wv.ptr(f16), bv.ptr(f16), wg.ptr(f16), bg.ptr(f16),
                      wo.ptr(f16), bo.ptr(f16)};
  Layer layer;
  REQUIRE(Layer::Create(c, w, &layer).ok());
  return layer;
}

// One thread's inputs, buffers and results.
struct Worker {
  bool f16 = false;
  pthreadpool_t pool = nullptr;
  int64_t threads = 1;              // the workspaces are sized for this many
  Tensor query, value, key, steps;  // steps: [B, sum(kSteps), F]
  Workspace ws, cws;
  size_t ws_bytes = 0, cws_bytes = 0;
  std::vector<unsigned char> k_cache, v_cache;
  std::vector<int64_t> lengths;
  std::vector<unsigned char> out;  // forward, then each cached step
  // Results.
  std::vector<unsigned char> want;
  int mismatches = 0, failures = 0, calls = 0;
  std::string error;  // the first failed call's message

  bool Ok(gqa_status s) {
    ++calls;
    if (s != GQA_STATUS_OK && error.empty()) error = gqa_last_error_message();
    return s == GQA_STATUS_OK;
  }

  size_t Elem() const { return f16 ? 2 : 4; }
  size_t OutBytes() const { return static_cast<size_t>(B * T * F) * Elem(); }
  size_t StepBytes(int64_t n) const {
    return static_cast<size_t>(B * n * F) * Elem();
  }
  size_t TotalBytes() const {
    size_t n = OutBytes();
    for (int64_t s : kSteps) n += StepBytes(s);
    return n;
  }
};

void Setup(Worker* w, gqa_layer_t layer, bool f16, uint64_t seed,
           pthreadpool_t pool) {
  std::mt19937_64 rng(seed);
  int64_t total = 0;
  for (int64_t s : kSteps) total += s;
  w->f16 = f16;
  w->pool = pool;
  w->query = Random(rng, B * T * F, 1.5f);
  w->value = Random(rng, B * S * F, 1.5f);
  w->key = Random(rng, B * S * F, 1.5f);
  w->steps = Random(rng, B * total * F, 1.5f);
  const int64_t threads = w->threads =
      pool ? static_cast<int64_t>(pthreadpool_get_threads_count(pool)) : 1;
  REQUIRE(gqa_layer_workspace_size(layer, B, T, S, threads, &w->ws_bytes) ==
          GQA_STATUS_OK);
  w->ws = Workspace(w->ws_bytes);
  const size_t ce = f16 ? 2 : 4;  // the cache in the layer's dtype
  w->k_cache.assign(static_cast<size_t>(B * kCapacity * Hkv * D) * ce, 0);
  w->v_cache.assign(w->k_cache.size(), 0);
  w->lengths.assign(B, 0);
  gqa_kv_cache cache{B,
                     kCapacity,
                     Hkv,
                     D,
                     f16 ? GQA_DTYPE_F16 : GQA_DTYPE_F32,
                     0,
                     w->k_cache.data(),
                     w->v_cache.data(),
                     w->lengths.data(), nullptr};
  for (int64_t s : kSteps) {
    size_t bytes = 0;
    REQUIRE(gqa_layer_cached_workspace_size(layer, &cache, s, threads,
                                            &bytes) == GQA_STATUS_OK);
    if (bytes > w->cws_bytes) w->cws_bytes = bytes;
  }
  w->cws = Workspace(w->cws_bytes);
  w->out.assign(w->TotalBytes(), 0xFF);
}

// One round: a forward, then a fresh cache decoded step by step, and the
// size queries. Results go to w->out; returns false on an error status.
bool Round(Worker* w, gqa_layer_t layer) {
  bool ok = true;
  unsigned char* out = w->out.data();
  gqa_forward_args a{};
  a.batch = B, a.query_len = T, a.value_len = S;
  a.query = w->query.ptr(w->f16);
  a.value = w->value.ptr(w->f16);
  a.key = w->key.ptr(w->f16);
  a.use_causal_mask = 1;
  a.output = out;
  ok &=
      w->Ok(gqa_layer_forward(layer, &a, w->ws.data(), w->ws.size(), w->pool));
  out += w->OutBytes();
  const int64_t threads = w->threads;
  size_t bytes = 0;
  ok &= w->Ok(gqa_layer_workspace_size(layer, B, T, S, threads, &bytes)) &&
        bytes == w->ws_bytes;
  for (int64_t& l : w->lengths) l = 0;
  gqa_kv_cache cache{B,
                     kCapacity,
                     Hkv,
                     D,
                     w->f16 ? GQA_DTYPE_F16 : GQA_DTYPE_F32,
                     0,
                     w->k_cache.data(),
                     w->v_cache.data(),
                     w->lengths.data(), nullptr};
  int64_t total = 0;
  for (int64_t s : kSteps) total += s;
  const unsigned char* steps =
      static_cast<const unsigned char*>(w->steps.ptr(w->f16));
  const size_t row = static_cast<size_t>(F) * w->Elem();
  int64_t t0 = 0;
  std::vector<unsigned char> x(w->StepBytes(total));  // before the calls
  for (int64_t n : kSteps) {
    for (int64_t b = 0; b < B; ++b) {
      memcpy(&x[static_cast<size_t>(b * n) * row],
             steps + static_cast<size_t>(b * total + t0) * row,
             static_cast<size_t>(n) * row);
    }
    gqa_forward_args s{};
    s.batch = B, s.query_len = n, s.value_len = n;
    s.query = s.value = x.data();
    s.output = out;
    ok &= w->Ok(gqa_layer_forward_cached(layer, &s, &cache, w->cws.data(),
                                         w->cws.size(), w->pool));
    ok &= w->Ok(gqa_layer_cached_workspace_size(layer, &cache, n, threads,
                                                &bytes)) &&
          bytes <= w->cws_bytes;
    out += w->StepBytes(n);
    t0 += n;
  }
  return ok;
}

// Starts fn(i) on kThreads threads at once and joins them.
template <class Fn>
void RunTogether(Fn fn) {
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      ready.fetch_add(1);
      while (ready.load() < kThreads) std::this_thread::yield();
      fn(i);
    });
  }
  for (std::thread& t : threads) t.join();
}

void CheckSharedLayer(bool f16) {
  INFO("f16 " << f16);
  Layer layer = MakeLayer(f16);
  // Thread 0: no pool; 1 and 2: their own pools; 3: shares thread 1's pool
  // (pthreadpool serialises concurrent calls on one pool).
  pthreadpool_t pool2 = pthreadpool_create(2), pool3 = pthreadpool_create(2);
  REQUIRE(pool2);
  REQUIRE(pool3);
  const pthreadpool_t pools[kThreads] = {nullptr, pool2, pool3, pool2};
  std::vector<Worker> workers(kThreads);
  for (int i = 0; i < kThreads; ++i) {
    Setup(&workers[i], layer.handle(), f16, 100 + i, pools[i]);
    // The single-threaded result, without a pool.
    Worker& w = workers[i];
    const pthreadpool_t own = w.pool;
    w.pool = nullptr;
    INFO(w.error);
    REQUIRE(Round(&w, layer.handle()));
    w.pool = own;
    w.want = w.out;
    w.calls = 0;
  }
  const int rounds = Rounds();
  RunTogether([&](int i) {
    Worker& w = workers[i];
    for (int r = 0; r < rounds; ++r) {
      memset(w.out.data(), 0xFF, w.out.size());
      if (!Round(&w, layer.handle())) ++w.failures;
      if (memcmp(w.out.data(), w.want.data(), w.out.size()) != 0) {
        ++w.mismatches;
      }
    }
  });
  pthreadpool_destroy(pool2);
  pthreadpool_destroy(pool3);
  for (int i = 0; i < kThreads; ++i) {
    CAPTURE(i);
    CAPTURE(workers[i].error);
    CHECK(workers[i].failures == 0);
    CHECK(workers[i].mismatches == 0);
    CHECK(workers[i].calls == rounds * (2 + 2 * 4));
  }
}

TEST_CASE("an f32 layer shared by 4 threads equals the single-threaded run") {
  CheckSharedLayer(false);
}

TEST_CASE("an f16 layer shared by 4 threads equals the single-threaded run") {
  CheckSharedLayer(true);
}

TEST_CASE("concurrent attends on one shared kv cache read it only") {
  for (bool half : {false, true}) {
    CAPTURE(half);
    const int64_t cap = 64, qh = 8, kvh = 2, d = 32, q_len = 2;
    const size_t ce = half ? 2 : 4;
    std::mt19937_64 rng(3);
    std::vector<unsigned char> kc(static_cast<size_t>(B * cap * kvh * d) * ce),
        vc(kc.size());
    std::vector<int64_t> lengths(B, 0);
    gqa_kv_cache cache{B,
                       cap,
                       kvh,
                       d,
                       half ? GQA_DTYPE_F16 : GQA_DTYPE_F32,
                       0,
                       kc.data(),
                       vc.data(),
                       lengths.data(), nullptr};
    const int64_t fill = 50;
    const Tensor kn = Random(rng, B * fill * kvh * d, 1.0f),
                 vn = Random(rng, B * fill * kvh * d, 1.0f);
    const int64_t counts[B] = {fill, fill - 13};
    REQUIRE(gqa_kv_cache_append(&cache, fill, counts, kn.f.data(), vn.f.data(),
                                GQA_DTYPE_F32) == GQA_STATUS_OK);
    const std::vector<unsigned char> k0 = kc, v0 = vc;
    const std::vector<int64_t> l0 = lengths;
    pthreadpool_t pool2 = pthreadpool_create(2);
    REQUIRE(pool2);
    const pthreadpool_t pools[kThreads] = {nullptr, pool2, nullptr, pool2};
    struct Attender {
      Tensor q;
      gqa_kv_attend_params p{};
      Workspace ws;
      std::vector<float> out, want;
      int mismatches = 0, failures = 0;
    };
    std::vector<Attender> at(kThreads);
    for (int i = 0; i < kThreads; ++i) {
      Attender& a = at[i];
      a.q = Random(rng, B * q_len * qh * d, 1.0f);
      a.out.assign(static_cast<size_t>(B * q_len * qh * d), 0.0f);
      a.p.q_len = q_len;
      a.p.q_heads = qh;
      a.p.q = a.q.f.data();
      a.p.q_dtype = GQA_DTYPE_F32;
      a.p.out = a.out.data();
      a.p.out_dtype = GQA_DTYPE_F32;
      a.p.sliding_window = i == 2 ? 17 : 0;
      size_t bytes = 0;
      REQUIRE(gqa_kv_cache_attend_workspace_size(&cache, &a.p, pools[i] ? 2 : 1,
                                                 &bytes) == GQA_STATUS_OK);
      a.ws = Workspace(bytes);
      REQUIRE(gqa_kv_cache_attend(&cache, &a.p, a.ws.data(), a.ws.size(),
                                  nullptr) == GQA_STATUS_OK);
      a.want = a.out;
    }
    const int rounds = 5 * Rounds();
    RunTogether([&](int i) {
      Attender& a = at[i];
      for (int r = 0; r < rounds; ++r) {
        memset(a.out.data(), 0xFF, a.out.size() * sizeof(float));
        if (gqa_kv_cache_attend(&cache, &a.p, a.ws.data(), a.ws.size(),
                                pools[i]) != GQA_STATUS_OK) {
          ++a.failures;
        }
        if (!SameBits(a.out, a.want)) ++a.mismatches;
      }
    });
    pthreadpool_destroy(pool2);
    for (int i = 0; i < kThreads; ++i) {
      CAPTURE(i);
      CHECK(at[i].failures == 0);
      CHECK(at[i].mismatches == 0);
    }
    CHECK(kc == k0);
    CHECK(vc == v0);
    CHECK(lengths == l0);
  }
}

}  // namespace
}  // namespace test
}  // namespace gqa
