// Dense layers with f16 weights and f32 accumulation (the default f16
// projection path), plus the f16 <-> f32 conversions around them.
#ifndef GQA_SRC_DENSE_F16_H_
#define GQA_SRC_DENSE_F16_H_

#include <stddef.h>
#include <stdint.h>

#include "gqa/gqa.h"

namespace gqa {

// Weight columns are padded to a multiple of this many, so a vector of any
// Highway target (up to 2048-bit SVE) tiles a column chunk exactly.
constexpr int64_t kDenseColumnChunk = 64;

// c[m, 0..n_padded) = a[m, 0..k) . w[k, n_padded] + bias[n_padded]
//   a: [M, K] f32 with row stride lda; w: [K, n_padded] f16 bits, row-major;
//   bias: [n_padded] f32 or null; c: [M, ldc] f32, ldc >= n_padded.
// n_padded is a multiple of kDenseColumnChunk. Every output element is
// accumulated in the same order whatever the thread count.
struct DenseF16Params {
  const float* a = nullptr;
  int64_t lda = 0;
  const uint16_t* w = nullptr;
  int64_t k = 0;
  int64_t n_padded = 0;
  const float* bias = nullptr;
  float* c = nullptr;
  int64_t ldc = 0;
  int64_t m = 0;
};
void RunDenseF16(const DenseF16Params& p, pthreadpool_t pool);

// dst[i] = float(src[i]) for i < count.
void ConvertF16ToF32(const uint16_t* src, float* dst, size_t count);
// dst[i] = half(src[i]) (round to nearest even) for i < count.
void ConvertF32ToF16(const float* src, uint16_t* dst, size_t count);

}  // namespace gqa

#endif  // GQA_SRC_DENSE_F16_H_
