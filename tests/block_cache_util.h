// Test helpers of the KV cache v2 suites: a cache in caller memory with
// shuffled blocks, random rows, and the encoders' view of a stored row.
#ifndef GQA_TESTS_BLOCK_CACHE_UTIL_H_
#define GQA_TESTS_BLOCK_CACHE_UTIL_H_

#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "doctest/doctest.h"
#include "gqa/block_cache.h"
#include "src/half.h"
#include "src/quantize.h"

namespace gqa {
namespace test {

struct Config {
  int64_t B = 2, Hkv = 2, D = 64, capacity = 40, bt = 16;
  int64_t value_dim = 0;  // Dv; 0: D
  int32_t dtype = GQA_DTYPE_F32;
  bool ring = false, rotate = false;
  int64_t Dv() const { return value_dim > 0 ? value_dim : D; }
};

// A cache with its caller memory, blocks handed out in a shuffled order.
struct Cache {
  gqa_block_cache c{};
  gqa_block_cache_layout layout{};
  void* pool = nullptr;
  std::vector<int32_t> table;
  std::vector<int64_t> lengths;
  explicit Cache(const Config& k, uint32_t seed = 1) {
    c.config.batch = k.B;
    c.config.kv_heads = k.Hkv;
    c.config.head_dim = k.D;
    c.config.value_dim = k.value_dim;
    c.config.capacity = k.capacity;
    c.config.block_tokens = k.bt;
    c.config.dtype = k.dtype;
    c.config.flags = (k.ring ? GQA_BLOCK_CACHE_RING : 0u) |
                     (k.rotate ? GQA_BLOCK_CACHE_ROTATE : 0u);
    REQUIRE(gqa_block_cache_layout_of(&c.config, &layout) == GQA_STATUS_OK);
    const int64_t blocks = k.B * layout.table_columns + 1;
    pool = aligned_alloc(64, static_cast<size_t>(blocks * layout.block_bytes));
    memset(pool, 0x5A, static_cast<size_t>(blocks * layout.block_bytes));
    std::vector<int32_t> order(static_cast<size_t>(blocks));
    for (int64_t i = 0; i < blocks; ++i) order[i] = static_cast<int32_t>(i);
    std::mt19937 rng(seed);
    std::shuffle(order.begin(), order.end(), rng);
    table.assign(order.begin(), order.begin() + k.B * layout.table_columns);
    lengths.assign(static_cast<size_t>(k.B), 0);
    c.blocks = pool;
    c.num_blocks = blocks;
    c.block_table = table.data();
    c.lengths = lengths.data();
  }
  ~Cache() { free(pool); }
  size_t PoolBytes() const {
    return static_cast<size_t>(c.num_blocks * layout.block_bytes);
  }
};

inline std::vector<float> Random(size_t n, std::mt19937* rng,
                                 float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> x(n);
  for (float& v : x) v = d(*rng);
  return x;
}

// Orthonormal Walsh-Hadamard in float64 (x H, Sylvester order).
inline void Hadamard(double* x, int64_t n) {
  for (int64_t h = 1; h < n; h *= 2) {
    for (int64_t j = 0; j < n; ++j) {
      if (j & h) continue;
      const double a = x[j], b = x[j + h];
      x[j] = a + b;
      x[j + h] = a - b;
    }
  }
  for (int64_t j = 0; j < n; ++j) x[j] /= std::sqrt(static_cast<double>(n));
}

// What the cache should store for a source row: the spec's encoders.
inline std::vector<float> Encode(const Config& k, const float* src, int64_t n) {
  std::vector<float> row(src, src + n), out(static_cast<size_t>(n));
  if (k.rotate) gqa::RotateRowF32(row.data(), n);
  if (k.dtype == GQA_DTYPE_F32) return row;
  if (k.dtype == GQA_DTYPE_F16) {
    for (int64_t i = 0; i < n; ++i)
      out[i] = gqa::HalfToFloat(gqa::FloatToHalf(row[i]));
  } else if (k.dtype == GQA_DTYPE_Q8) {
    std::vector<int8_t> codes(static_cast<size_t>(n));
    uint16_t s = 0;
    gqa::QuantizeRowQ8(row.data(), n, codes.data(), &s);
    gqa::DequantizeRowQ8(codes.data(), s, n, out.data());
  } else {
    std::vector<uint8_t> codes(static_cast<size_t>(n / 2));
    std::vector<uint16_t> s(static_cast<size_t>(n / 32));
    gqa::QuantizeRowQ4(row.data(), n, codes.data(), s.data());
    gqa::DequantizeRowQ4(codes.data(), s.data(), n, out.data());
  }
  return out;
}

}  // namespace test
}  // namespace gqa

#endif  // GQA_TESTS_BLOCK_CACHE_UTIL_H_
