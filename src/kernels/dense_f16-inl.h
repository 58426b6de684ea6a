// Dense kernel with f16 weights, compiled once per Highway target.
//
// Register blocking: up to 4 rows of A x 2 vectors of columns = 8 f32
// accumulators, one broadcast of A and two promoted weight vectors per k.
// Per k step: 2 vector loads of f16 weights (converted on load), 4 scalar
// loads of A, 8 FMAs. A task is 4 rows x 64 columns; the weights of a chunk
// ([K, 64] f16 = 128*K bytes) stay in L2 across the row blocks that share it.

#if defined(GQA_SRC_KERNELS_DENSE_F16_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef GQA_SRC_KERNELS_DENSE_F16_INL_H_
#undef GQA_SRC_KERNELS_DENSE_F16_INL_H_
#else
#define GQA_SRC_KERNELS_DENSE_F16_INL_H_
#endif

#include <pthreadpool.h>
#include <stddef.h>
#include <stdint.h>

#include "hwy/highway.h"
#include "src/dense_f16.h"
#include "src/kernels/half_load-inl.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

constexpr int64_t kDenseRows = 4;

template <class DF>
HWY_INLINE hn::Vec<DF> LoadHalfAsF32(DF df, const uint16_t* p) {
  return LoadF16AsF32(df, p);  // exact for Inf and NaN on every target
}

// Rows [r0, r0+MR), columns [n, n + VECS * N). Named accumulators, not an
// array: SVE vectors are sizeless and cannot be array elements.
template <int MR, int VECS, class DF>
HWY_INLINE void DenseBlock(DF df, const DenseF16Params& p, int64_t r0,
                           int64_t n) {
  using V = hn::Vec<DF>;
  const size_t N = hn::Lanes(df);
  const V bias0 = p.bias ? hn::LoadU(df, p.bias + n) : hn::Zero(df);
  const V bias1 =
      (VECS > 1 && p.bias) ? hn::LoadU(df, p.bias + n + N) : hn::Zero(df);
  V c00 = bias0, c01 = bias1, c10 = bias0, c11 = bias1;
  V c20 = bias0, c21 = bias1, c30 = bias0, c31 = bias1;
  const float* a0 = p.a + r0 * p.lda;
  const float* a1 = a0 + (MR > 1 ? p.lda : 0);
  const float* a2 = a0 + (MR > 2 ? 2 * p.lda : 0);
  const float* a3 = a0 + (MR > 3 ? 3 * p.lda : 0);
  const uint16_t* w = p.w + n;
  for (int64_t kk = 0; kk < p.k; ++kk, w += p.n_padded) {
    const V w0 = LoadHalfAsF32(df, w);
    const V w1 = VECS > 1 ? LoadHalfAsF32(df, w + N) : w0;
    V x = hn::Set(df, a0[kk]);
    c00 = hn::MulAdd(x, w0, c00);
    if (VECS > 1) c01 = hn::MulAdd(x, w1, c01);
    if (MR > 1) {
      x = hn::Set(df, a1[kk]);
      c10 = hn::MulAdd(x, w0, c10);
      if (VECS > 1) c11 = hn::MulAdd(x, w1, c11);
    }
    if (MR > 2) {
      x = hn::Set(df, a2[kk]);
      c20 = hn::MulAdd(x, w0, c20);
      if (VECS > 1) c21 = hn::MulAdd(x, w1, c21);
    }
    if (MR > 3) {
      x = hn::Set(df, a3[kk]);
      c30 = hn::MulAdd(x, w0, c30);
      if (VECS > 1) c31 = hn::MulAdd(x, w1, c31);
    }
  }
  float* c = p.c + r0 * p.ldc + n;
  hn::StoreU(c00, df, c);
  if (VECS > 1) hn::StoreU(c01, df, c + N);
  if (MR > 1) {
    hn::StoreU(c10, df, c + p.ldc);
    if (VECS > 1) hn::StoreU(c11, df, c + p.ldc + N);
  }
  if (MR > 2) {
    hn::StoreU(c20, df, c + 2 * p.ldc);
    if (VECS > 1) hn::StoreU(c21, df, c + 2 * p.ldc + N);
  }
  if (MR > 3) {
    hn::StoreU(c30, df, c + 3 * p.ldc);
    if (VECS > 1) hn::StoreU(c31, df, c + 3 * p.ldc + N);
  }
}

template <int MR>
HWY_INLINE void DenseChunk(const DenseF16Params& p, int64_t r0, int64_t n0) {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t n_end = n0 + kDenseColumnChunk;
  int64_t n = n0;
  for (; n + 2 * N <= n_end; n += 2 * N) DenseBlock<MR, 2>(df, p, r0, n);
  for (; n + N <= n_end; n += N) DenseBlock<MR, 1>(df, p, r0, n);
}

void DenseTaskFn(void* context, size_t row_block, size_t chunk) {
  const DenseF16Params& p = *static_cast<const DenseF16Params*>(context);
  const int64_t r0 = static_cast<int64_t>(row_block) * kDenseRows;
  const int64_t n0 = static_cast<int64_t>(chunk) * kDenseColumnChunk;
  const int64_t rows = p.m - r0 < kDenseRows ? p.m - r0 : kDenseRows;
  switch (rows) {
    case 1:
      DenseChunk<1>(p, r0, n0);
      break;
    case 2:
      DenseChunk<2>(p, r0, n0);
      break;
    case 3:
      DenseChunk<3>(p, r0, n0);
      break;
    default:
      DenseChunk<4>(p, r0, n0);
      break;
  }
}

void RunDenseF16Impl(const DenseF16Params& p, pthreadpool_t pool) {
  const size_t row_blocks =
      static_cast<size_t>((p.m + kDenseRows - 1) / kDenseRows);
  const size_t chunks = static_cast<size_t>(p.n_padded / kDenseColumnChunk);
  pthreadpool_parallelize_2d(pool, &DenseTaskFn,
                             const_cast<DenseF16Params*>(&p), row_blocks,
                             chunks, 0);
}

}  // namespace HWY_NAMESPACE
}  // namespace gqa
HWY_AFTER_NAMESPACE();

#endif  // include guard per target
