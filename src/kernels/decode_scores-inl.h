// The score pass of one block of the decode kernel (decode_attention-inl.h),
// compiled once per Highway target: the block's logits [keys][slots] (from
// the q.k quads, or in sc.s from the integer q.k) with the logit options in
// the spec's order and the masks, then the online-softmax update of m, l,
// scale and alpha per slot, leaving p / scale in sc.s for p.v.

#if defined(GQA_SRC_KERNELS_DECODE_SCORES_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef GQA_SRC_KERNELS_DECODE_SCORES_INL_H_
#undef GQA_SRC_KERNELS_DECODE_SCORES_INL_H_
#else
#define GQA_SRC_KERNELS_DECODE_SCORES_INL_H_
#endif

#include <math.h>
#include <stdint.h>

#include "hwy/highway.h"
#include "src/attention_params.h"
#include "src/kernels/attention_common-inl.h"
#include "src/kernels/decode_micro_kernels-inl.h"
#include "src/kernels/decode_plan-inl.h"
#include "src/kernels/logit_options-inl.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// One block of keys [j0, j0 + keys) and what its masks need.
struct DecodeScoreBlock {
  int64_t j0 = 0, keys = 0;
  bool scores_in_s = false;  // the integer q.k wrote them to sc.s
  bool all_ok = true;        // no key of the block masked by the key masks
  // Position masks only where some (key, row) pair of the block may fail.
  bool mask_causal = false, mask_window = false, mask_tree = false;
  int64_t draft0 = INT64_MAX;  // position of the first draft (tree mask)
};

// sc.s [keys][slots]: the logits in, p / scale out; sc.m, sc.l, sc.scale,
// sc.alpha [slots] updated.
template <class DF>
HWY_INLINE void DecodeBlockSoftmax(DF df, const AttentionParams& p,
                                   const DecodeScratch& sc,
                                   const DecodeShape& sh,
                                   const SoftcapConsts& cap,
                                   const DecodeScoreBlock& blk) {
  using V = hn::Vec<DF>;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t slots = sh.slots, slot_vectors = slots / N;
  const V neg_inf = hn::Set(df, -INFINITY);
  const V zero = hn::Zero(df);
  const V one = hn::Set(df, 1.0f);
  const V window = hn::Set(df, static_cast<float>(p.sliding_window));
  const bool softcap = p.softcap > 0.0f, alibi = p.alibi_slopes != nullptr;
  const bool bias = p.bias != nullptr;
#if HWY_TARGET != HWY_SCALAR
  const bool pair = softcap && slot_vectors == 1 && N >= 8 && 8 * sh.tiles <= N;
#else
  const bool pair = false;
  (void)pair;
#endif
  // Under a softcap c < 52 with no other option and no masked key in the
  // block, every s - m lies in [-2c, c]: exp needs no underflow test.
  const bool in_range = p.softcap > 0.0f && p.softcap < 52.0f && !alibi &&
                        !bias && blk.all_ok && !blk.mask_causal &&
                        !blk.mask_window && !blk.mask_tree;
  // Scores, masks and the online-softmax update, key-major with the
  // slots in the lanes: m, l and alpha are elementwise across keys.
  for (int64_t c = 0; c < slot_vectors; ++c) {
    const V qpos = hn::LoadU(df, sc.qpos + c * N);
    const V m_old = hn::LoadU(df, sc.m + c * N);
    const V slope = hn::LoadU(df, sc.slope + c * N);
    V vmax = m_old;
    auto logit = [&](int64_t jj) -> V {
      return blk.scores_in_s
                 ? hn::LoadU(df, sc.s + jj * slots + c * N)
                 : ReduceQuads(
                       df, sc.part + jj * sh.quads_padded * sh.quad_floats, c);
    };
    // The logit options after the softcap, in the spec's order, then the
    // masks; the result stored and taken into the running max.
    auto finish = [&](int64_t jj, V x) {
      float* srow = sc.s + jj * slots + c * N;
      if (alibi) x = AlibiLogits(x, slope, qpos, hn::Set(df, sc.keypos[jj]));
      if (bias) {
        // Gathered per slot (broadcast strides make any layout legal).
        const int64_t key = (blk.j0 + jj) * p.bias_stride_key;
        for (int64_t i = 0; i < N; ++i) {
          const int64_t row = sc.bias_row[c * N + i];
          sc.bias_lanes[i] = row < 0 ? 0.0f : p.bias[row + key];
        }
        x = hn::Add(x, hn::LoadU(df, sc.bias_lanes));
      }
      if (!blk.all_ok && sc.keyok[jj] == 0.0f) x = neg_inf;
      if (blk.mask_causal || blk.mask_window || blk.mask_tree) {
        const V keypos = hn::Set(df, sc.keypos[jj]);
        const int64_t d = static_cast<int64_t>(sc.keypos[jj]) - blk.draft0;
        if (blk.mask_tree && d >= 0) {
          const V open = hn::LoadU(df, sc.tree + d * slots + c * N);
          x = hn::IfThenElse(hn::Eq(open, zero), neg_inf, x);
        } else if (blk.mask_causal) {
          x = hn::IfThenElse(hn::Gt(keypos, qpos), neg_inf, x);
        }
        if (blk.mask_window) {
          x = hn::IfThenElse(hn::Ge(hn::Sub(qpos, keypos), window), neg_inf, x);
          x = hn::IfThenElse(hn::Ge(hn::Sub(keypos, qpos), window), neg_inf, x);
        }
      }
      hn::StoreU(x, df, srow);
      vmax = hn::Max(vmax, x);
    };
    int64_t jj = 0;
#if HWY_TARGET != HWY_SCALAR
    // Where the used slots fill at most half a vector (e.g. 2 heads of up
    // to 4 rows in 16 lanes), two keys share one softcap: their lower
    // halves side by side, the upper halves (padding) kept.
    for (; pair && jj + 2 <= blk.keys; jj += 2) {
      const V x0 = logit(jj), x1 = logit(jj + 1);
      const V y = Softcap(df, hn::ConcatLowerLower(df, x1, x0), cap);
      finish(jj, hn::ConcatUpperLower(df, x0, y));
      finish(jj + 1, hn::ConcatUpperUpper(df, x1, y));
    }
#endif
    for (; jj < blk.keys; ++jj) {
      const V x = logit(jj);
      finish(jj, softcap ? Softcap(df, x, cap) : x);
    }
    // Slots that saw no key yet keep m = -inf: exp against 0 there.
    // Masked scores (-inf) give exactly 0; a NaN or +inf logit makes l
    // NaN for good (ExpKeepNaN keeps NaN, exp(inf - inf) is NaN).
    const auto none = hn::Eq(vmax, neg_inf);
    const V m_use = hn::IfThenZeroElse(none, vmax);
    const V alpha = hn::IfThenZeroElse(hn::Eq(m_old, neg_inf),
                                       ExpKeepNaN(df, hn::Sub(m_old, m_use)));
    // acc is kept as sum p v / scale, scale = l_old * alpha + keys >= l
    // (known before the sum): a bounded mean of V rows, no overflow where
    // the result is finite; the item's end multiplies by scale / l.
    const V scale_old = hn::LoadU(df, sc.scale + c * N);
    const V scale_new =
        hn::MulAdd(scale_old, alpha, hn::Set(df, static_cast<float>(blk.keys)));
    const V inv = hn::Div(one, scale_new);
    V vsum = zero;
    for (int64_t jj = 0; jj < blk.keys; ++jj) {
      float* srow = sc.s + jj * slots + c * N;
      const V x = hn::Sub(hn::LoadU(df, srow), m_use);
      const V e = in_range ? ExpInRange(df, x) : ExpKeepNaN(df, x);
      hn::StoreU(hn::Mul(e, inv), df, srow);
      vsum = hn::Add(vsum, e);
    }
    hn::StoreU(hn::MulAdd(hn::LoadU(df, sc.l + c * N), alpha, vsum), df,
               sc.l + c * N);
    hn::StoreU(scale_new, df, sc.scale + c * N);
    hn::StoreU(vmax, df, sc.m + c * N);
    hn::StoreU(hn::Mul(alpha, hn::Mul(scale_old, inv)), df, sc.alpha + c * N);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace gqa
HWY_AFTER_NAMESPACE();

#endif  // include guard per target
