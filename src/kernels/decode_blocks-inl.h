// The decode kernel's per-block steps on K/V, compiled once per Highway
// target: a block's rows packed to f32 (head dims whole vectors do not
// tile), dequantized from a blocked q8 / q4 cache, and the q.k of a block
// key by key with the V prefetches. The kernel: decode_attention-inl.h.

#if defined(GQA_SRC_KERNELS_DECODE_BLOCKS_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef GQA_SRC_KERNELS_DECODE_BLOCKS_INL_H_
#undef GQA_SRC_KERNELS_DECODE_BLOCKS_INL_H_
#else
#define GQA_SRC_KERNELS_DECODE_BLOCKS_INL_H_
#endif

#include <stdint.h>

#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "src/attention_core.h"
#include "src/kernels/attention_common-inl.h"
#include "src/kernels/decode_micro_kernels-inl.h"
#include "src/kernels/decode_plan-inl.h"
#include "src/kernels/dequant-inl.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Rows [0, keys) of a block, all heads, converted to f32 and zero padded:
// dst [Bk][Hkv][Dp] (the path for head dims that whole vectors do not tile).
template <typename T>
HWY_INLINE void PackBlock(const T* src, int64_t key_stride, int64_t head_stride,
                          int64_t keys, int64_t H, int64_t D, int64_t Dp,
                          float* dst) {
  const hn::ScalableTag<float> df;
  for (int64_t jj = 0; jj < keys; ++jj) {
    for (int64_t g = 0; g < H; ++g) {
      float* row = dst + (jj * H + g) * Dp;
      RowToF32(df, src + jj * key_stride + g * head_stride, row, D);
      for (int64_t d = D; d < Dp; ++d) row[d] = 0.0f;
    }
  }
}

// One block of keys [j0, j0 + keys): q.k key by key (on aarch64 4 keys at a
// time), all heads in memory order -> quads part[jj][tile].
template <class DF, typename TR>
HWY_INLINE void DecodeBlockQk(DF df, const DecodeScratch& sc,
                              const DecodeShape& sh, int64_t rows_per_group,
                              int64_t Dp, const TR* k, int64_t ks, int64_t kh,
                              int64_t keys, int64_t nv,
                              const unsigned char* v_prefetch,
                              int64_t v_key_bytes, int64_t v_head_bytes,
                              int64_t v_row_bytes) {
  // This block's V rows are prefetched, in memory order, for the p.v pass
  // (its reads go head by head, an order the hardware prefetchers miss).
  // Where a key's V rows are contiguous, the prefetches are spread evenly
  // over the key's q.k steps, a few lines per step (measured: ~10% faster
  // on D1 than issuing them all before the key's q.k); otherwise they go
  // head by head before it. (A prefetch past the wanted rows is harmless.)
  const int64_t qk_steps = (sh.tiles + 1) / 2 * nv;
  const int pf_lines =
      (v_prefetch != nullptr && v_head_bytes == v_row_bytes)
          ? static_cast<int>((sh.heads * v_row_bytes / 64 + qk_steps - 1) /
                             qk_steps)
          : 0;
  int64_t jj = 0;
#if HWY_ARCH_ARM_A64
  // ARM: four keys at a time, one tile per call (QkTileKeys: each query
  // load serves 4 keys). Where the 4 keys' V rows are one contiguous run,
  // its lines are spread over the group's tiles * nv steps; otherwise they
  // go before the group. The rest (< 4 keys) takes the loop below.
  const int64_t group_steps = sh.tiles * nv;
  const int pf_group =
      (pf_lines != 0 && v_key_bytes == sh.heads * v_row_bytes)
          ? static_cast<int>((4 * v_key_bytes / 64 + group_steps - 1) /
                             group_steps)
          : 0;
  const int64_t quad_key_floats = sh.quads_padded * sh.quad_floats;
  for (; jj + 4 <= keys; jj += 4) {
    if (v_prefetch != nullptr && pf_group == 0) {
      for (int64_t e = 0; e < 4; ++e) {
        for (int64_t g = 0; g < sh.heads; ++g) {
          const unsigned char* vr =
              v_prefetch + (jj + e) * v_key_bytes + g * v_head_bytes;
          for (int64_t off = 0; off < v_row_bytes; off += 64)
            hwy::Prefetch(vr + off);
        }
      }
    }
    const unsigned char* pf =
        pf_group ? v_prefetch + jj * v_key_bytes : nullptr;
    float* quads = sc.part + jj * quad_key_floats;
    int64_t g = 0, t = 0;
    for (int64_t tile = 0; tile < sh.tiles; ++tile) {
      const int64_t r0 = g * rows_per_group + t * kDecodeTileRows;
      const int64_t left = (g + 1) * rows_per_group - r0;
      QkTileKeys(df, left < kDecodeTileRows ? left : kDecodeTileRows,
                 sc.q + r0 * Dp, Dp, k + jj * ks + g * kh, ks, nv,
                 quads + tile * sh.quad_floats, quad_key_floats, pf, pf_group);
      if (++t == sh.tiles_per_head) {
        t = 0;
        ++g;
      }
    }
  }
#endif
  for (; jj < keys; ++jj) {
    const unsigned char* pf =
        pf_lines ? v_prefetch + jj * v_key_bytes : nullptr;
    if (v_prefetch != nullptr && pf_lines == 0) {
      for (int64_t g = 0; g < sh.heads; ++g) {
        const unsigned char* vr =
            v_prefetch + jj * v_key_bytes + g * v_head_bytes;
        for (int64_t off = 0; off < v_row_bytes; off += 64)
          hwy::Prefetch(vr + off);
      }
    }
    float* quads = sc.part + jj * sh.quads_padded * sh.quad_floats;
    // Tiles in memory order (head g, then tile t), two at a time; (g, t)
    // advance by counting, not by a division per tile (D2 in L2: +3%).
    int64_t g = 0, t = 0;
    for (int64_t tile = 0; tile < sh.tiles; tile += 2) {
      int64_t rows[2] = {0, 0};
      const TR* krow[2] = {nullptr, nullptr};
      const float* q[2] = {nullptr, nullptr};
      for (int64_t e = 0; e < 2 && tile + e < sh.tiles; ++e) {
        const int64_t r0 = g * rows_per_group + t * kDecodeTileRows;
        const int64_t left = (g + 1) * rows_per_group - r0;
        rows[e] = left < kDecodeTileRows ? left : kDecodeTileRows;
        krow[e] = k + jj * ks + g * kh;
        q[e] = sc.q + r0 * Dp;
        if (++t == sh.tiles_per_head) {
          t = 0;
          ++g;
        }
      }
      QkTiles(df, rows[0], rows[1], q[0], q[1] ? q[1] : q[0], Dp, krow[0],
              krow[1] ? krow[1] : krow[0], nv, quads + tile * sh.quad_floats,
              quads + (tile + 1) * sh.quad_floats, pf, pf_lines);
    }
  }
}

// Rows [j0, j0 + keys) of a blocked cache, all heads, dequantized (or
// converted) to f32 and zero padded: dst [keys][Hkv][Dp] (Dp: D or Dv
// padded). Done once per
// block for all G*T query rows; the table is read once per cache block.
template <typename T>
HWY_INLINE void DequantBlock(const AttentionParams& p, bool value, int64_t b,
                             int64_t j0, int64_t keys, int64_t Dp, float* dst) {
  const hn::ScalableTag<float> df;
  const KvBlocks& kb = p.kv_blocks;
  const int64_t H = p.kv_heads, bt = kb.block_tokens;
  const int64_t D = value ? ValueDim(p) : p.head_dim;
  const int64_t row_bytes = value ? kb.v_row_bytes : kb.k_row_bytes;
  const int64_t scale_bytes = 2 * (value ? kb.v_row_scales : kb.k_row_scales);
  const int64_t codes = value ? kb.v_codes : kb.k_codes;
  const int64_t scales = value ? kb.v_scales : kb.k_scales;
  // The keys' rows of all heads are contiguous inside a cache block: one
  // table read per run of keys in one block, not per row.
  for (int64_t jj = 0; jj < keys;) {
    const int64_t j = j0 + jj, r0 = j % bt;
    const int64_t run = bt - r0 < keys - jj ? bt - r0 : keys - jj;
    const unsigned char* blk = KvBlockOf(kb, b, j);
    for (int64_t i = 0; i < run * H; ++i) {
      const int64_t rh = r0 * H + i;
      float* row = dst + (jj * H + i) * Dp;
      BlockedRowToF32<T>(df,
                         KvRowRef{blk + codes + rh * row_bytes,
                                  blk + scales + rh * scale_bytes},
                         row, D);
      for (int64_t d = D; d < Dp; ++d) row[d] = 0.0f;
    }
    jj += run;
  }
}

// q8 values read in place: the scales of keys [j0, j0 + keys), all heads,
// as f32 into tmp [keys][Hkv] (one vector pass: they are contiguous in the
// block); p.v multiplies each key's p by its scale (PvRows), so it reads the
// int8 codes as they are. Returns the codes of key j0, head 0 (keys
// [j0, j0 + keys) lie in one cache block: H * v_row_bytes apart, heads
// v_row_bytes apart). A NaN scale makes the head's p NaN, as its dequantized
// row would.
HWY_INLINE const int8_t* ValueScalesOf(const AttentionParams& p, int64_t b,
                                       int64_t j0, int64_t keys, float* tmp) {
  const hn::ScalableTag<float> df;
  const KvBlocks& kv = p.kv_blocks;
  const int64_t H = p.kv_heads, row = j0 % kv.block_tokens;
  const unsigned char* blk = KvBlockOf(kv, b, j0);
  RowToF32(df,
           reinterpret_cast<const uint16_t*>(blk + kv.v_scales + row * H * 2),
           tmp, keys * H);
  return reinterpret_cast<const int8_t*>(blk + kv.v_codes) +
         row * H * kv.v_row_bytes;
}

}  // namespace HWY_NAMESPACE
}  // namespace gqa
HWY_AFTER_NAMESPACE();

#endif  // include guard per target
