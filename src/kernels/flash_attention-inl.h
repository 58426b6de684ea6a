// Tiled streaming ("flash") attention, compiled once per Highway target.
//
// Work item = (batch b, kv head g, block of Tb query positions). Its M =
// G*Tb query rows (all G = Hq/Hkv heads of the group, row m = h*Tb + tt)
// are held transposed and pre-scaled, qt [D][Mp], so that each K/V tile of
// Bk = kKeysPerTile keys is loaded once per group and serves all G heads:
//
//   s^T [Bk][Mp] = K_tile [Bk][D] . qt [D][Mp]
//       micro-tiles of 4 keys x kFlashTileVectors vectors of queries
//   masks -> -inf; online softmax down the key axis, vectorised over the
//   queries: m' = max(m, max_j s), alpha = exp(m - m'), p = exp(s - m'),
//   l = l*alpha + sum_j p, o *= alpha
//   o [Mp][Dp] += p [Mp][Bk] . V_tile [Bk][Dp]
//       micro-tiles of 4 queries x kFlashTileVectors vectors of head dims
//   out = o / l
//
// Per tile: 2*Mp*Bk*D flops for each product; K and V tiles are converted to
// f32 once ([Bk][D] each) and the scores tile never leaves L1/L2. Keys past
// the causal/window bounds and tiles wholly masked are skipped. With scores
// requested, a first pass finds (m, l) and a second writes p = exp(s-m)/l.
// Every item is computed the same way whatever thread runs it, so results
// are bitwise identical for any thread count. The tile steps:
// flash_tiles-inl.h; the register micro-tiles: flash_micro_kernels-inl.h.

#if defined(GQA_SRC_KERNELS_FLASH_ATTENTION_INL_H_) == \
    defined(HWY_TARGET_TOGGLE)
#ifdef GQA_SRC_KERNELS_FLASH_ATTENTION_INL_H_
#undef GQA_SRC_KERNELS_FLASH_ATTENTION_INL_H_
#else
#define GQA_SRC_KERNELS_FLASH_ATTENTION_INL_H_
#endif

#include <math.h>
#include <pthreadpool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hwy/highway.h"
#include "src/attention_core.h"
#include "src/kernels/attention_common-inl.h"
#include "src/kernels/flash_tiles-inl.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

constexpr int64_t kKeysPerTile = 128;  // Bk, a multiple of 4
constexpr int64_t kTargetRows = 128;   // aim for M = G*Tb close to this

void MakeFlashPlan(const AttentionParams& p, KernelPlan* plan) {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t group = p.q_heads / p.kv_heads;
  int64_t tb = kTargetRows / group;
  if (tb < 1) tb = 1;
  if (tb > p.q_len) tb = p.q_len;
  const int64_t rows = group * tb;
  // Rows fill whole q.k micro-tiles (kFlashTileVectors vectors) and whole
  // p.v micro-tiles (4 rows); head dims whole p.v micro-tiles.
  const int64_t tile = kFlashTileVectors * N;
  const int64_t gran = tile > 4 ? tile : 4;
  plan->lanes = N;
  plan->block_positions = tb;
  plan->rows = rows;
  plan->rows_padded = RoundUp(rows, gran);
  plan->dim_padded = RoundUp(p.head_dim, tile);
  plan->value_dim_padded = RoundUp(ValueDim(p), tile);
  plan->keys_per_tile = kKeysPerTile;
  plan->blocks_per_head = (p.q_len + tb - 1) / tb;
  plan->items = p.batch * p.kv_heads * plan->blocks_per_head;
  plan->slot_bytes = CarveFlashSlot(*plan, p.head_dim, nullptr).bytes;
}

template <typename TQ, typename T>
void RunItem(const AttentionParams& p, const KernelPlan& plan, int64_t index,
             const Scratch& sc) {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t group = p.q_heads / p.kv_heads;
  const int64_t Mp = plan.rows_padded, Dp = plan.value_dim_padded,
                Bk = plan.keys_per_tile;
  Item it;
  const int64_t block = index % plan.blocks_per_head;
  const int64_t bg = index / plan.blocks_per_head;
  it.g = bg % p.kv_heads;
  it.b = bg / p.kv_heads;
  it.t0 = block * plan.block_positions;
  it.tb = plan.block_positions < p.q_len - it.t0 ? plan.block_positions
                                                 : p.q_len - it.t0;
  const int64_t first_pos = QueryPosition(p, it.b, it.t0);
  const int64_t last_pos = first_pos + it.tb - 1;
  it.pos_min = static_cast<float>(first_pos);
  it.pos_max = static_cast<float>(last_pos);
  VisibleKeys(p, it.b, first_pos, last_pos, &it.lo, &it.hi);
  const int64_t rows = group * it.tb;

  PackQueries<TQ>(p, plan, it, sc);
  // A sink starts a row's softmax as one logit sigma with no value: m =
  // sigma, l = exp(0) = 1, o = 0 (then l > 0: never "fully masked").
  for (int64_t m = 0; m < Mp; ++m) {
    sc.m[m] = -INFINITY;
    sc.l[m] = 0.0f;
    if (p.sinks != nullptr && m < rows) {
      int64_t u, t;
      RowOf(p, plan, it, m, &u, &t);
      sc.m[m] = p.sinks[u];
      sc.l[m] = 1.0f;
    }
  }
  memset(sc.o, 0, static_cast<size_t>(Mp * Dp) * 4);
  const bool fused = p.scores == nullptr;
  // Tiles start at multiples of Bk from lo, so a tile's keys are contiguous.
  auto tile_keys = [&](int64_t j0) {
    return it.hi - j0 < Bk ? it.hi - j0 : Bk;
  };
  auto tile_closed = [&](int64_t j0, int64_t keys) {
    if (!p.key_mask && !p.key_mask2) return false;
    for (int64_t jj = 0; jj < keys; ++jj) {
      if (KeyOpen(p, it.b, j0 + jj)) return false;
    }
    return true;
  };

  for (int64_t j0 = it.lo; j0 < it.hi; j0 += Bk) {
    const int64_t keys = tile_keys(j0);
    if (tile_closed(j0, keys)) continue;
    const TileView view = ScoreTile<T>(p, plan, it, j0, keys, sc);
    SoftmaxTile(plan, keys, sc, fused);
    if (!fused) continue;
    if (p.apply_dropout) DropoutTile(p, plan, it, j0, keys, sc);
    AccumulateTile(plan, keys, view, sc, sc.alpha);
  }

  if (!fused) {
    // Pass 2: exact probabilities p = exp(s - m) / l, written and used.
    for (int64_t m = 0; m < rows; ++m) {
      int64_t u, t;
      RowOf(p, plan, it, m, &u, &t);
      const uint64_t row = ScoreRow(p, it.b, u, t);
      for (int64_t j = 0; j < p.kv_len; ++j) StoreScore(p, row + j, 0.0f);
    }
    // l == 0: nothing allowed; NaN l (non-finite logits) stays NaN.
    for (int64_t m = 0; m < Mp; ++m)
      sc.alpha[m] = sc.l[m] == 0.0f ? 0.0f : 1.0f / sc.l[m];
    const auto neg_inf = hn::Set(df, -INFINITY);
    for (int64_t j0 = it.lo; j0 < it.hi; j0 += Bk) {
      const int64_t keys = tile_keys(j0);
      if (tile_closed(j0, keys)) continue;
      const TileView view = ScoreTile<T>(p, plan, it, j0, keys, sc);
      for (int64_t jj = 0; jj < keys; ++jj) {
        float* row = sc.s + jj * Mp;
        for (int64_t m0 = 0; m0 < Mp; m0 += N) {
          const auto x = hn::LoadU(df, row + m0);
          const auto mm = hn::LoadU(df, sc.m + m0);
          const auto mref = hn::IfThenZeroElse(hn::Eq(mm, neg_inf), mm);
          const auto e = ExpKeepNaN(df, hn::Sub(x, mref));
          hn::StoreU(hn::Mul(e, hn::LoadU(df, sc.alpha + m0)), df, row + m0);
        }
      }
      for (int64_t m = 0; m < rows; ++m) {
        int64_t u, t;
        RowOf(p, plan, it, m, &u, &t);
        const uint64_t row =
            ScoreRow(p, it.b, u, t) + static_cast<uint64_t>(j0);
        for (int64_t jj = 0; jj < keys; ++jj)
          StoreScore(p, row + jj, sc.s[jj * Mp + m]);
      }
      if (p.apply_dropout) DropoutTile(p, plan, it, j0, keys, sc);
      AccumulateTile(plan, keys, view, sc, nullptr);
    }
  }

  // l == 0: no allowed key, or every allowed logit is -inf (q or k with
  // infinities, or scale*q.k overflowing), which is NaN (exp(-inf + inf)).
  // Rare: tell them apart by scoring the tiles again with zero queries
  // (allowed keys score 0, masked ones -inf) and mark the latter l = NaN.
  bool any_empty = false;
  for (int64_t m = 0; m < rows; ++m)
    any_empty = any_empty || (sc.l[m] == 0.0f && sc.open[m] != 0.0f);
  if (any_empty) {
    memset(sc.qt, 0, static_cast<size_t>(p.head_dim * Mp) * 4);
    for (int64_t j0 = it.lo; j0 < it.hi; j0 += Bk) {
      const int64_t keys = tile_keys(j0);
      if (tile_closed(j0, keys)) continue;
      ScoreTile<T>(p, plan, it, j0, keys, sc);
      for (int64_t m = 0; m < rows; ++m) {
        if (sc.l[m] != 0.0f || sc.open[m] == 0.0f) continue;
        for (int64_t jj = 0; jj < keys; ++jj) {
          if (sc.s[jj * Mp + m] != -INFINITY) {
            sc.l[m] = NAN;
            for (int64_t d = 0; d < Dp; ++d) sc.o[m * Dp + d] = NAN;
            if (p.scores) {
              int64_t u, t;
              RowOf(p, plan, it, m, &u, &t);
              const uint64_t row = ScoreRow(p, it.b, u, t);
              for (int64_t j = 0; j < p.kv_len; ++j)
                StoreScore(p, row + j, NAN);
            }
            break;
          }
        }
      }
    }
  }

  // Output rows: o (already divided by l), or the fully-masked policy. A
  // row is fully masked when l == 0 (no allowed key); a NaN l means
  // non-finite logits and its o is NaN.
  for (int64_t m = 0; m < rows; ++m) {
    int64_t u, t;
    RowOf(p, plan, it, m, &u, &t);
    float* o = sc.o + m * Dp;
    if (sc.l[m] != 0.0f) {
      // o is the output already.
    } else if (p.fully_masked_uniform) {
      UniformRow<T>(p, it.b, u, t, o);
    } else {
      for (int64_t d = 0; d < ValueDim(p); ++d) o[d] = 0.0f;
    }
    StoreOutputRow(p, it.b, t, u, o);
  }
}

// The items of a call for the work-stealing loop (RunItems).
template <typename TQ, typename T>
struct FlashItems : WorkItems {
  const AttentionParams* p;
  const KernelPlan* plan;
  unsigned char* slots;  // slot s at slots + s * plan->slot_bytes
  Scratch Carve(size_t slot) const {
    return CarveFlashSlot(*plan, p->head_dim,
                          slots + slot * static_cast<size_t>(plan->slot_bytes));
  }
  void Run(int64_t item, const Scratch& sc) const {
    RunItem<TQ, T>(*p, *plan, item, sc);
  }
};

template <typename TQ, typename T>
void RunFlashTyped(const AttentionParams& p, const KernelPlan& plan,
                   void* workspace, int64_t slots, pthreadpool_t pool) {
  FlashItems<TQ, T> ctx;
  ctx.p = &p;
  ctx.plan = &plan;
  ctx.slots = static_cast<unsigned char*>(workspace) + plan.shared_bytes;
  ctx.count = plan.items;
  RunItems(pool, &ctx, slots);
}

template <typename TQ>
void RunFlashKv(const AttentionParams& p, const KernelPlan& plan,
                void* workspace, int64_t slots, pthreadpool_t pool) {
  switch (p.kv_type) {
    case ElemType::kF16:
      return RunFlashTyped<TQ, uint16_t>(p, plan, workspace, slots, pool);
    case ElemType::kQ8:
      return RunFlashTyped<TQ, KvQ8>(p, plan, workspace, slots, pool);
    case ElemType::kQ4:
      return RunFlashTyped<TQ, KvQ4>(p, plan, workspace, slots, pool);
    case ElemType::kF32:
      break;
  }
  RunFlashTyped<TQ, float>(p, plan, workspace, slots, pool);
}

// Workspace: shared_bytes (unused here, kept for the decode kernel), then
// `slots` slots of plan.slot_bytes.
void RunFlash(const AttentionParams& p, const KernelPlan& plan, void* workspace,
              int64_t slots, pthreadpool_t pool) {
  // Blocked f32 / f16 K/V share the strided instantiations (the tile pack
  // tells them apart); q8 / q4 exist only blocked.
  if (p.q_type == ElemType::kF16) {
    RunFlashKv<uint16_t>(p, plan, workspace, slots, pool);
  } else {
    RunFlashKv<float>(p, plan, workspace, slots, pool);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace gqa
HWY_AFTER_NAMESPACE();

#endif  // include guard per target
