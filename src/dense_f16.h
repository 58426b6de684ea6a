// Dense layers with f16 weights and f32 accumulation (the f16 projection
// path) and the packing of their weights.
#ifndef GQA_SRC_DENSE_F16_H_
#define GQA_SRC_DENSE_F16_H_

#include <pthreadpool.h>
#include <stddef.h>
#include <stdint.h>

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

// Weight packing for the dense kernel: a Keras [rows][cols] f16 kernel into
// [rows][cols_padded] with zeros in the padding; a Keras f16 bias [cols] (or
// null: zeros) into f32 [cols_padded].
void PackHalfKernel(const void* src, int64_t rows, int64_t cols,
                    int64_t cols_padded, uint16_t* dst);
void PackHalfBias(const void* src, int64_t cols, int64_t cols_padded,
                  float* dst);

}  // namespace gqa

#endif  // GQA_SRC_DENSE_F16_H_
