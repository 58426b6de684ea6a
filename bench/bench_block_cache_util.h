// Helpers shared by gqa-bench's KV cache v2 files (bench_block_cache.cc,
// bench_accuracy.cc): a set of block caches, read-back, attend parameters,
// the roof of a record and the labels of the tables and JSON.
#ifndef GQA_BENCH_BENCH_BLOCK_CACHE_UTIL_H_
#define GQA_BENCH_BENCH_BLOCK_CACHE_UTIL_H_

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_block_cache.h"
#include "gqa/block_cache.h"
#include "gqa/gqa.h"

namespace gqa {

inline const char* DtypeName(int32_t t) {
  switch (t) {
    case GQA_DTYPE_F32:
      return "f32";
    case GQA_DTYPE_F16:
      return "f16";
    case GQA_DTYPE_Q8:
      return "q8";
    default:
      return "q4";
  }
}

inline std::string StatusText(const char* call, gqa_status st) {
  return std::string(call) + ": " + gqa_status_name(st) + " " +
         gqa_last_error_message();
}

struct FreeDeleter {
  void operator()(void* p) const { free(p); }
};

// `copies` caches of one configuration: pools side by side in one
// allocation, one table and one lengths array shared by all (an attend
// only reads them).
class CacheSet {
 public:
  gqa_status Init(const gqa_block_cache_config& c, size_t copies) {
    config_ = c;
    gqa_status st = gqa_block_cache_layout_of(&config_, &layout_);
    if (st != GQA_STATUS_OK) return st;
    blocks_ = c.batch * layout_.table_columns;
    pool_bytes_ = static_cast<size_t>(blocks_ * layout_.block_bytes);
    copies_ = copies;
    pools_.reset(
        static_cast<unsigned char*>(aligned_alloc(64, pool_bytes_ * copies_)));
    if (!pools_) return GQA_STATUS_OUT_OF_MEMORY;
    table_.resize(static_cast<size_t>(blocks_));
    for (int64_t i = 0; i < blocks_; ++i) table_[i] = static_cast<int32_t>(i);
    lengths_.assign(static_cast<size_t>(c.batch), 0);
    return GQA_STATUS_OK;
  }
  gqa_block_cache Cache(size_t copy) {
    gqa_block_cache cache;
    cache.config = config_;
    cache.blocks = pools_.get() + copy * pool_bytes_;
    cache.num_blocks = blocks_;
    cache.block_table = table_.data();
    cache.lengths = lengths_.data();
    cache.held_from = nullptr;  // linear caches only
    return cache;
  }
  // Copies pool 0 into the others (after the appends).
  void Replicate() {
    for (size_t c = 1; c < copies_; ++c)
      memcpy(pools_.get() + c * pool_bytes_, pools_.get(), pool_bytes_);
  }
  void Reset() { std::fill(lengths_.begin(), lengths_.end(), 0); }
  const gqa_block_cache_layout& layout() const { return layout_; }
  size_t pool_bytes() const { return pool_bytes_; }
  size_t copies() const { return copies_; }
  // Codes + scales of one token, all kv heads, K and V: what an attend
  // reads per cached token.
  double ReadBytesPerToken() const {
    return static_cast<double>(config_.kv_heads) *
           static_cast<double>(
               layout_.k_row_bytes + layout_.v_row_bytes +
               2 * (layout_.k_row_scales + layout_.v_row_scales));
  }
  double StoredBytesPerToken() const {
    return static_cast<double>(layout_.block_bytes) /
           static_cast<double>(config_.block_tokens);
  }

 private:
  gqa_block_cache_config config_{};
  gqa_block_cache_layout layout_{};
  int64_t blocks_ = 0;
  size_t pool_bytes_ = 0, copies_ = 1;
  std::unique_ptr<unsigned char, FreeDeleter> pools_;
  std::vector<int32_t> table_;
  std::vector<int64_t> lengths_;
};

inline gqa_block_cache_config ConfigOf(const Shape& s, int64_t capacity,
                                       int64_t block_tokens, int32_t dtype,
                                       bool rotate, bool int8_qk = false) {
  gqa_block_cache_config c{};
  c.batch = s.batch;
  c.kv_heads = s.kv_heads;
  c.head_dim = s.head_dim;
  c.value_dim = 0;
  c.capacity = capacity;
  c.block_tokens = block_tokens;
  c.dtype = dtype;
  c.flags = (rotate ? GQA_BLOCK_CACHE_ROTATE : 0u) |
            (int8_qk ? GQA_BLOCK_CACHE_INT8_QK : 0u);
  return c;
}

// The normalised Walsh-Hadamard transform in float64 (its own inverse):
// undoes the cache's rotation of a read-back row.
inline void HadamardF64(double* x, int64_t n) {
  for (int64_t h = 1; h < n; h *= 2) {
    for (int64_t j = 0; j < n; ++j) {
      if (j & h) continue;
      const double a = x[j], b = x[j + h];
      x[j] = a + b;
      x[j + h] = a - b;
    }
  }
  const double s = 1.0 / sqrt(static_cast<double>(n));
  for (int64_t j = 0; j < n; ++j) x[j] *= s;
}

// The stored rows of sequence b (k, v [S, Hkv, D] in double, un-rotated,
// so that plain attention on them is what the cache attends to).
inline gqa_status ReadBack(const gqa_block_cache& cache, int64_t b, int64_t S,
                           std::vector<double>* k, std::vector<double>* v) {
  const int64_t H = cache.config.kv_heads, D = cache.config.head_dim;
  const bool rotate = (cache.config.flags & GQA_BLOCK_CACHE_ROTATE) != 0;
  k->resize(static_cast<size_t>(S * H * D));
  v->resize(k->size());
  std::vector<float> kr(D), vr(D);
  for (int64_t p = 0; p < S; ++p) {
    for (int64_t h = 0; h < H; ++h) {
      const gqa_status st =
          gqa_block_cache_read(&cache, b, p, h, kr.data(), vr.data());
      if (st != GQA_STATUS_OK) return st;
      double* kd = k->data() + (p * H + h) * D;
      double* vd = v->data() + (p * H + h) * D;
      for (int64_t e = 0; e < D; ++e) kd[e] = kr[e], vd[e] = vr[e];
      if (rotate) HadamardF64(kd, D), HadamardF64(vd, D);
    }
  }
  return GQA_STATUS_OK;
}

inline gqa_kv_attend_params AttendParams(int64_t T, int64_t Hq, const float* q,
                                         float* out) {
  gqa_kv_attend_params p{};
  p.q_len = T;
  p.q_heads = Hq;
  p.q = q;
  p.q_dtype = GQA_DTYPE_F32;
  p.out = out;
  p.out_dtype = GQA_DTYPE_F32;
  p.scale = 0.0f;
  p.sliding_window = 0;
  p.fully_masked_policy = GQA_FULLY_MASKED_KERAS;
  return p;
}

struct CacheType {
  int32_t dtype;
  bool rotate;
  bool int8_qk = false;  // GQA_BLOCK_CACHE_INT8_QK: int8 q, integer q.k
};

struct RoofOf {
  double ms = 0, pct = 0;
  bool memory = true;
};
inline RoofOf Roof(const CacheRecord& r, const Roofs& roofs) {
  RoofOf f;
  const double mem_ms = r.bytes / (roofs.bw.best_gbps * 1e9) * 1e3;
  const double fma_ms = r.flops / (roofs.peak_gflops * 1e9) * 1e3;
  f.memory = mem_ms >= fma_ms;
  f.ms = std::max(mem_ms, fma_ms);
  f.pct = r.median_ms > 0 ? 100.0 * f.ms / r.median_ms : 0.0;
  return f;
}

// A JSON number, or null where it is not finite (NaN, infinity).
inline std::string Num(const char* fmt, double x) {
  if (!isfinite(x)) return "null";
  char buf[64];
  snprintf(buf, sizeof(buf), fmt, x);
  return buf;
}

inline std::string TypeLabel(const std::string& dtype, bool rotate,
                             bool int8_qk = false) {
  return dtype + (rotate ? "+rot" : "") + (int8_qk ? "+i8q" : "");
}

}  // namespace gqa

#endif  // GQA_BENCH_BENCH_BLOCK_CACHE_UTIL_H_
