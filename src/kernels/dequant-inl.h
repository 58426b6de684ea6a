// Blocked K/V (KV cache v2) as the kernels read it, compiled once per
// Highway target: where a slot's row lives in the pool (its block table
// column), and q8 / q4 rows dequantized to f32 (exactly code * scale).
//
// Vectors are capped at 16 f32 lanes: a q4 group of 32 elements is 16 bytes
// (element i low nibble, element i + 16 high nibble), so one load of up to
// 16 bytes gives the lanes of both halves on every target (scalar, NEON,
// SVE 128..2048, AVX2, AVX-512).

#if defined(GQA_SRC_KERNELS_DEQUANT_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef GQA_SRC_KERNELS_DEQUANT_INL_H_
#undef GQA_SRC_KERNELS_DEQUANT_INL_H_
#else
#define GQA_SRC_KERNELS_DEQUANT_INL_H_
#endif

#include <stdint.h>
#include <string.h>

#include "hwy/highway.h"
#include "src/attention_params.h"
#include "src/half.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Element tags of blocked, quantized K/V (the kernels' T for kQ8 / kQ4).
struct KvQ8 {};  // int8 codes, one f16 scale per row
struct KvQ4 {};  // 4-bit codes (+8), one f16 scale per 32 elements

template <typename T>
constexpr bool IsKvCodes() {
  return hwy::IsSame<T, KvQ8>() || hwy::IsSame<T, KvQ4>();
}

// The element type a kernel reads rows in: T itself for f32 / f16, f32
// (the dequantized copy) for q8 / q4.
template <typename T>
struct KvReadType {
  using type = T;
};
template <>
struct KvReadType<KvQ8> {
  using type = float;
};
template <>
struct KvReadType<KvQ4> {
  using type = float;
};

// The pool block holding slot j of batch b: one table read. Only called
// for slots the call may read (below min(key_lengths[b], S)), whose table
// columns the caller guarantees.
HWY_INLINE const unsigned char* KvBlockOf(const KvBlocks& kb, int64_t b,
                                          int64_t j) {
  const int64_t column = j / kb.block_tokens;
  return kb.pool +
         static_cast<int64_t>(kb.table[b * kb.table_stride + column]) *
             kb.block_bytes;
}

// One K or V row of a blocked cache: its codes and its f16 scales.
struct KvRowRef {
  const unsigned char* codes;
  const unsigned char* scales;
};

// The key (value = false) or value row of slot j, kv head g, of batch b.
HWY_INLINE KvRowRef BlockedRow(const AttentionParams& p, bool value, int64_t b,
                               int64_t j, int64_t g) {
  const KvBlocks& kb = p.kv_blocks;
  const unsigned char* blk = KvBlockOf(kb, b, j);
  const int64_t rh = (j % kb.block_tokens) * p.kv_heads + g;
  if (value) {
    return KvRowRef{blk + kb.v_codes + rh * kb.v_row_bytes,
                    blk + kb.v_scales + rh * kb.v_row_scales * 2};
  }
  return KvRowRef{blk + kb.k_codes + rh * kb.k_row_bytes,
                  blk + kb.k_scales + rh * kb.k_row_scales * 2};
}

// The f16 scale at p (any alignment) as f32 (NaN stays NaN).
HWY_INLINE float LoadScale(const unsigned char* p) {
  uint16_t h;
  memcpy(&h, p, 2);
  return HalfToFloat(h);
}

// dst[0, n) = codes * scale: q8, one scale per row.
HWY_INLINE void DequantRowQ8(const unsigned char* codes,
                             const unsigned char* scales, float* dst,
                             int64_t n) {
  const hn::CappedTag<float, 16> df;
  const hn::Rebind<int32_t, decltype(df)> di;
  const hn::Rebind<int8_t, decltype(df)> d8;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int8_t* c = reinterpret_cast<const int8_t*>(codes);
  const float s = LoadScale(scales);
  const auto vs = hn::Set(df, s);
  int64_t i = 0;
  for (; i + N <= n; i += N) {
    const auto x = hn::PromoteTo(di, hn::LoadU(d8, c + i));
    hn::StoreU(hn::Mul(hn::ConvertTo(df, x), vs), df, dst + i);
  }
  for (; i < n; ++i) dst[i] = static_cast<float>(c[i]) * s;
}

// dst[0, n) = (nibble - 8) * scale of its group: q4, n a multiple of 32.
HWY_INLINE void DequantRowQ4(const unsigned char* codes,
                             const unsigned char* scales, float* dst,
                             int64_t n) {
  const hn::CappedTag<float, 16> df;
  const hn::Rebind<int32_t, decltype(df)> di;
  const hn::Rebind<uint8_t, decltype(df)> d8;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const auto low = hn::Set(di, 15);
  const auto eight = hn::Set(di, 8);
  for (int64_t g = 0; g * 32 < n; ++g) {
    const auto vs = hn::Set(df, LoadScale(scales + 2 * g));
    const unsigned char* cg = codes + 16 * g;
    float* dg = dst + 32 * g;
    for (int64_t i = 0; i < 16; i += N) {  // N is a power of two <= 16
      const auto x = hn::PromoteTo(di, hn::LoadU(d8, cg + i));
      const auto lo = hn::Sub(hn::And(x, low), eight);
      const auto hi = hn::Sub(hn::ShiftRight<4>(x), eight);
      hn::StoreU(hn::Mul(hn::ConvertTo(df, lo), vs), df, dg + i);
      hn::StoreU(hn::Mul(hn::ConvertTo(df, hi), vs), df, dg + 16 + i);
    }
  }
}

// Element d of a blocked row as f32, one at a time (rare paths only).
template <typename T>
HWY_INLINE float BlockedElement(const KvRowRef& row, int64_t d) {
  if constexpr (hwy::IsSame<T, float>()) {
    float x;
    memcpy(&x, row.codes + 4 * d, 4);
    return x;
  } else if constexpr (hwy::IsSame<T, uint16_t>()) {
    return LoadScale(row.codes + 2 * d);
  } else if constexpr (hwy::IsSame<T, KvQ8>()) {
    return static_cast<float>(reinterpret_cast<const int8_t*>(row.codes)[d]) *
           LoadScale(row.scales);
  } else {
    const int64_t g = d / 32, i = d % 32;
    const unsigned byte = row.codes[16 * g + (i % 16)];
    const int code = static_cast<int>(i < 16 ? byte & 15u : byte >> 4) - 8;
    return static_cast<float>(code) * LoadScale(row.scales + 2 * g);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace gqa
HWY_AFTER_NAMESPACE();

#endif  // include guard per target
