// The real attention micro-kernels, one static Highway target, wrapped in
// extern "C" noinline functions (gqa_mca_*) so that bench/arm_mca.py can find
// each one's inner loop in the assembly and feed it to llvm-mca.
//
// Built only as assembly by bench/arm_mca.py, never linked into anything:
//   aarch64-linux-gnu-g++ -std=c++17 -O3 -march=armv8.2-a+fp16 (NEON)
//                         -O3 -march=armv8.2-a+fp16+sve (SVE) -S
// with -DHWY_COMPILE_ONLY_STATIC=1, so that the target is the one the -march
// flags give (HWY_NEON or HWY_SVE). Every argument is a run-time value, as in
// the library, except the ones the library fixes at compile time (tile rows,
// vector counts) and the prefetch lines of the decode q.k pair, fixed at 1:
// DecodeBlockQk spreads a key's V lines over its q.k steps, 1 a step
// whenever there are no more lines than steps (e.g. 8 KV heads, G = 4,
// D = 128 on NEON: 32 f16 or 64 f32 lines over 128 steps). The 4-key q.k
// tile (aarch64) also prefetches 1 line a step.

#include <stddef.h>
#include <stdint.h>

#include "hwy/highway.h"
#include "src/kernels/decode_micro_kernels-inl.h"
#include "src/kernels/flash_micro_kernels-inl.h"

namespace hn = hwy::HWY_NAMESPACE;
namespace gk = gqa::HWY_NAMESPACE;
using DF = hn::ScalableTag<float>;

// The wrappers get the target attributes the kernels are compiled with.
HWY_BEFORE_NAMESPACE();

extern "C" {

// Prefill q.k: 4 keys x kFlashTileVectors query vectors, over dim.
HWY_NOINLINE void gqa_mca_prefill_qk_f32(const float* qt, int64_t mp,
                                         const float* kt, int64_t k_stride,
                                         int64_t dim, float* s, int64_t j0,
                                         int64_t m0) {
  gk::QkMicroTile(DF(), qt, mp, kt, k_stride, dim, s, j0, m0);
}

// Prefill p.v: 4 rows x kFlashTileVectors head-dim vectors, over keys.
HWY_NOINLINE void gqa_mca_prefill_pv_f32(const float* s, int64_t mp,
                                         const float* vt, int64_t v_stride,
                                         int64_t keys, float* o, int64_t dp,
                                         int64_t m0, int64_t d0,
                                         const float* alpha) {
  gk::PvMicroTile(DF(), s, mp, vt, v_stride, keys, o, dp, m0, d0, alpha);
}

}  // extern "C"

// Decode q.k, two 4-row tiles on two key rows (the next head's) or on one
// (SAME: the two tiles of one head share the key row), over nv vectors.
#define GQA_MCA_DECODE_QK(name, same, T)                                     \
  extern "C" HWY_NOINLINE void name(const float* qa, const float* qb,        \
                                    int64_t q_stride, const T* ka,           \
                                    const T* kb, int64_t nv, float* dst_a,   \
                                    float* dst_b, const unsigned char* pf) { \
    gk::QkTilePair<4, 4, same>(DF(), qa, qb, q_stride, ka, kb, nv, dst_a,    \
                               dst_b, pf, 1);                                \
  }
GQA_MCA_DECODE_QK(gqa_mca_decode_qk_pair_f32, false, float)
GQA_MCA_DECODE_QK(gqa_mca_decode_qk_pair_f16, false, uint16_t)
GQA_MCA_DECODE_QK(gqa_mca_decode_qk_pair_q8, false, int8_t)
GQA_MCA_DECODE_QK(gqa_mca_decode_qk_same_f32, true, float)
GQA_MCA_DECODE_QK(gqa_mca_decode_qk_same_f16, true, uint16_t)
GQA_MCA_DECODE_QK(gqa_mca_decode_qk_same_q8, true, int8_t)
#undef GQA_MCA_DECODE_QK

// Decode q.k on ARM: one 4-row tile against 4 neighbouring keys
// (QkTileFourKeys, what DecodeBlockQk runs on aarch64), over nv vectors.
#define GQA_MCA_DECODE_QK_KEYS(name, T)                                      \
  extern "C" HWY_NOINLINE void name(                                         \
      const float* q, int64_t q_stride, const T* k, int64_t ks, int64_t nv,  \
      float* dst, int64_t dst_key_stride, const unsigned char* pf) {         \
    gk::QkTileFourKeys<4>(DF(), q, q_stride, k, ks, nv, dst, dst_key_stride, \
                          pf, 1);                                            \
  }
GQA_MCA_DECODE_QK_KEYS(gqa_mca_decode_qk_keys_f32, float)
GQA_MCA_DECODE_QK_KEYS(gqa_mca_decode_qk_keys_f16, uint16_t)
GQA_MCA_DECODE_QK_KEYS(gqa_mca_decode_qk_keys_q8, int8_t)
#undef GQA_MCA_DECODE_QK_KEYS

// Decode p.v: the widest tile the target has (kDecodePvRows rows; 2 vectors
// for 8 rows, 4 for fewer), over keys.
constexpr int kPvRows = gk::kDecodePvRows;
constexpr int kPvVectors = kPvRows <= 4 ? 4 : 2;
#define GQA_MCA_DECODE_PV(name, T)                                            \
  extern "C" HWY_NOINLINE void name(                                          \
      const float* pr, int64_t p_key_stride, const float* alpha,              \
      const T* vrow, int64_t key_stride, const float* vscale,                 \
      int64_t vscale_stride, int64_t keys, float* acc, int64_t acc_stride,    \
      int64_t d) {                                                            \
    gk::PvRowsFixed<kPvRows, kPvVectors>(DF(), pr, p_key_stride, alpha, vrow, \
                                         key_stride, vscale, vscale_stride,   \
                                         keys, acc, acc_stride, d);           \
  }
GQA_MCA_DECODE_PV(gqa_mca_decode_pv_f32, float)
GQA_MCA_DECODE_PV(gqa_mca_decode_pv_f16, uint16_t)
GQA_MCA_DECODE_PV(gqa_mca_decode_pv_q8, int8_t)
#undef GQA_MCA_DECODE_PV

HWY_AFTER_NAMESPACE();
