// The decode kernel's calls into the per-ISA platform kernels (platforms/),
// compiled once per Highway target: the integer q.k of q8 / q4 keys
// (platforms/qk_int8.h) and the FMLAL q.k and p.v of f16 K/V
// (platforms/f16_fml.h). Each fills the kernel's block struct from the
// item's scratch; scores come back in the slot layout ([Bk][slots], slot
// g * slots_per_head + i = row i of kv head g). The kernel:
// decode_attention-inl.h.

#if defined(GQA_SRC_KERNELS_DECODE_PLATFORM_INL_H_) == \
    defined(HWY_TARGET_TOGGLE)
#ifdef GQA_SRC_KERNELS_DECODE_PLATFORM_INL_H_
#undef GQA_SRC_KERNELS_DECODE_PLATFORM_INL_H_
#else
#define GQA_SRC_KERNELS_DECODE_PLATFORM_INL_H_
#endif

#include <stdint.h>

#include "hwy/highway.h"
#include "platforms/f16_fml.h"
#include "platforms/qk_int8.h"
#include "src/attention_core.h"
#include "src/kernels/attention_common-inl.h"
#include "src/kernels/decode_plan-inl.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {

// The integer q.k of keys [j0, j0 + keys) (one cache block), all heads:
// prepared rows sc.q8, s_q by slot sc.qscale; q4 or q8 codes.
HWY_INLINE void DecodeQkInt8(const AttentionParams& p, const KernelPlan& plan,
                             const DecodeScratch& sc, int64_t b, int64_t j0,
                             int64_t keys, int64_t rows_per_group,
                             int64_t slots, int64_t slots_per_head, bool q4) {
  const KvBlocks& kv = p.kv_blocks;
  const int64_t H = p.kv_heads;
  const unsigned char* blk = KvBlockOf(kv, b, j0);
  const int64_t row = j0 % kv.block_tokens;
  QkInt8Block a;
  a.q = sc.q8;
  a.q_bytes = plan.qk_int8_row_bytes;
  a.q_scale = sc.qscale;
  a.heads = H;
  a.rows = rows_per_group;
  a.dim = p.head_dim;
  a.row_bytes = kv.k_row_bytes;
  a.key_bytes = H * kv.k_row_bytes;
  a.codes = blk + kv.k_codes + row * a.key_bytes;
  a.scale_row_bytes = 2 * kv.k_row_scales;
  a.scale_key_bytes = H * a.scale_row_bytes;
  a.scales = blk + kv.k_scales + row * a.scale_key_bytes;
  a.keys = keys;
  a.s = sc.s;
  a.slots = slots;
  a.slots_per_head = slots_per_head;
  a.prefetch = blk + kv.v_codes + row * H * kv.v_row_bytes;
  a.prefetch_key_bytes = H * kv.v_row_bytes;
  if (q4) {
    plan.qk_int8->qk_q4(a);
  } else {
    plan.qk_int8->qk_q8(a);
  }
}

// FMLAL for this item: the scaled q rows sc.q [R][Dp] rounded to f16 into
// sc.q16 [R][Dp], each row r = g * rows_per_group + i times its own 2^-e
// (platforms/f16_fml.h: round_row), 2^e at slot g * slots_per_head + i of
// sc.qscale [slots] (1 in the padding slots). *undo: sc.qscale where some
// row has e > 0, else null. The kernels, or null where the plan has none.
HWY_INLINE const F16FmlKernels* DecodeF16FmlPrepare(
    const KernelPlan& plan, const DecodeScratch& sc, int64_t rows_per_group,
    int64_t slots_per_head, int64_t slots, const float** undo) {
  *undo = nullptr;
  const F16FmlKernels* f = plan.f16_fml;
  if (f == nullptr) return nullptr;
  const int64_t Dp = plan.dim_padded;
  bool scaled = false;
  for (int64_t slot = 0; slot < slots; ++slot) sc.qscale[slot] = 1.0f;
  for (int64_t r = 0; r < plan.rows; ++r) {
    const float e = f->round_row(sc.q + r * Dp, Dp, sc.q16 + r * Dp);
    const int64_t g = r / rows_per_group, i = r % rows_per_group;
    sc.qscale[g * slots_per_head + i] = e;
    scaled = scaled || e != 1.0f;
  }
  if (scaled) *undo = sc.qscale;
  return f;
}

// FMLAL q.k of a block's f16 key rows read in place: key kk, head g at
// k + kk * ks + g * kh (elements); V rows of key kk at v + kk * vs
// prefetched; scores of slot i times undo[i] where undo is not null
// (DecodeF16FmlPrepare). Only f16 rows (TR = uint16_t) ever get here.
template <typename TR>
HWY_INLINE void DecodeF16FmlQk(const F16FmlKernels* f, const DecodeScratch& sc,
                               int64_t H, int64_t rows_per_group, int64_t Dp,
                               int64_t D, const TR* k, int64_t ks, int64_t kh,
                               int64_t keys, int64_t slots,
                               int64_t slots_per_head, const TR* v, int64_t vs,
                               const float* undo) {
  if constexpr (hwy::IsSame<TR, uint16_t>()) {
    F16FmlQkBlock a;
    a.q = sc.q16;
    a.q_stride = Dp;
    a.heads = H;
    a.rows = rows_per_group;
    a.dim = D;
    a.k = k;
    a.key_stride = ks;
    a.head_stride = kh;
    a.keys = keys;
    a.s = sc.s;
    a.slots = slots;
    a.slots_per_head = slots_per_head;
    a.prefetch = reinterpret_cast<const unsigned char*>(v);
    a.prefetch_key_bytes = vs * 2;
    f->qk(a);
    // Rows scaled into the f16 range: their scores times 2^e (exact).
    for (int64_t jj = 0; undo != nullptr && jj < keys; ++jj) {
      float* s = sc.s + jj * slots;
      for (int64_t slot = 0; slot < H * slots_per_head; ++slot)
        s[slot] *= undo[slot];
    }
  }
}

// FMLAL p.v, head by head: acc [R][Dvp] (columns [0, Dv)) = acc * alpha +
// p . v with p = sc.s [keys][slots], V row of key jj, head g at
// v + jj * vs + g * vh (elements).
template <typename TR>
HWY_INLINE void DecodeF16FmlPv(const F16FmlKernels* f, const DecodeScratch& sc,
                               int64_t H, int64_t rows_per_group, int64_t Dv,
                               int64_t Dvp, const TR* v, int64_t vs, int64_t vh,
                               int64_t keys, int64_t slots,
                               int64_t slots_per_head) {
  if constexpr (hwy::IsSame<TR, uint16_t>()) {
    for (int64_t g = 0; g < H; ++g) {
      F16FmlPvBlock a;
      a.p = sc.s + g * slots_per_head;
      a.p_key_stride = slots;
      a.alpha = sc.alpha + g * slots_per_head;
      a.rows = rows_per_group;
      a.v = v + g * vh;
      a.key_stride = vs;
      a.keys = keys;
      a.dim = Dv;
      a.acc = sc.acc + g * rows_per_group * Dvp;
      a.acc_stride = Dvp;
      f->pv(a);
    }
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace gqa
HWY_AFTER_NAMESPACE();

#endif  // include guard per target
