// Decode attention (few query rows per kv head, e.g. T = 1..4 new tokens
// against a KV cache), compiled once per Highway target. Each K/V row is
// read from memory once and serves all G*T query rows of its kv group.
//
// Work item = (batch b, chunk c of the key axis), all kv heads: the key axis
// is cut into fixed chunks (a function of S only), so the partition never
// depends on the thread count. Per block of Bk keys:
//   q.k: key by key, head by head: the cache is read front to back, the one
//        order the hardware prefetchers follow at full speed (measured: 4
//        keys side by side or head-major order lose up to half the
//        bandwidth). One key row against a tile of up to 4 query rows gives
//        4 partial-sum vectors; two transpose-add levels fold them into one
//        "quad" vector; the rest of the tree runs per key over all tiles, so
//        a block's scores are [Bk][slots] with the rows in the lanes.
//   softmax: online, elementwise across keys (max, exp, sum per slot
//        vector): no horizontal reductions, no per-row serial chain.
//   p.v: head by head over the block, up to kDecodePvRows rows at a time
//        (8 rows x 2 vectors or 4 x 4 of accumulators with 32 registers,
//        2 x 4 with 16) in registers, rescaled by alpha on load; V rows
//        prefetched in memory order during q.k.
// Each item leaves (max, sum, acc) per row in the shared partials; a second
// pass merges the chunks of each batch in chunk order and writes out. The
// plan and scratch layout: decode_plan-inl.h; the register micro-kernels:
// decode_micro_kernels-inl.h; the per-ISA platform kernels that may take
// the q.k (integer, q8 / q4 keys) or the q.k and p.v (FMLAL, f16 K/V):
// decode_platform-inl.h.

#if defined(GQA_SRC_KERNELS_DECODE_ATTENTION_INL_H_) == \
    defined(HWY_TARGET_TOGGLE)
#ifdef GQA_SRC_KERNELS_DECODE_ATTENTION_INL_H_
#undef GQA_SRC_KERNELS_DECODE_ATTENTION_INL_H_
#else
#define GQA_SRC_KERNELS_DECODE_ATTENTION_INL_H_
#endif

#include <math.h>
#include <pthreadpool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "hwy/cache_control.h"
#include "hwy/highway.h"
#include "src/attention_core.h"
#include "src/kernels/attention_common-inl.h"
#include "src/kernels/decode_blocks-inl.h"
#include "src/kernels/decode_merge-inl.h"
#include "src/kernels/decode_micro_kernels-inl.h"
#include "src/kernels/decode_plan-inl.h"
#include "src/kernels/decode_platform-inl.h"
#include "src/kernels/decode_scores-inl.h"
#include "src/kernels/logit_options-inl.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// T: float, uint16_t (strided, or blocked when kBlocked), KvQ8, KvQ4
// (blocked only).
template <typename TQ, typename T, bool kBlocked>
void DecodeItem(const AttentionParams& p, const KernelPlan& plan, int64_t index,
                const DecodeScratch& sc, float* partials) {
  const hn::ScalableTag<float> df;
  const int64_t N = plan.lanes, Dp = plan.dim_padded, D = p.head_dim,
                R = plan.rows;
  const int64_t Dvp = plan.value_dim_padded, Dv = ValueDim(p);
  const int64_t group = p.q_heads / p.kv_heads, q_len = p.q_len, H = p.kv_heads;
  const int64_t rows_per_group = group * q_len;
  const int64_t split = index % plan.splits;
  const int64_t b = index / plan.splits;
  const DecodeShape sh = MakeDecodeShape(p, N);
  const int64_t slots = sh.slots;

  // Rows r = u * T + t, queries scaled.
  for (int64_t r = 0; r < R; ++r) {
    const int64_t u = r / q_len, t = r % q_len;
    const TQ* q = static_cast<const TQ*>(p.q) + b * p.q_stride_batch +
                  t * p.q_stride_token + u * p.q_stride_head;
    float* dst = sc.q + r * Dp;
    for (int64_t d = 0; d < D; ++d) dst[d] = ToF32<TQ>(q[d]) * p.scale;
    for (int64_t d = D; d < Dp; ++d) dst[d] = 0.0f;
  }
  memset(sc.acc, 0, static_cast<size_t>(R * Dvp) * 4);
  // Integer q.k (q8 / q4 keys, platforms/qk_int8.h): each row quantized
  // once per item; s_q by slot, 0 in the padding slots.
  const QkInt8Kernels* qk_int8 = IsKvCodes<T>() ? plan.qk_int8 : nullptr;
  const int64_t slots_per_head = sh.tiles_per_head * kDecodeTileRows;
  if (qk_int8 != nullptr) {
    memset(sc.qscale, 0, static_cast<size_t>(slots) * 4);
    for (int64_t r = 0; r < R; ++r) {
      const int64_t g = r / rows_per_group, i = r % rows_per_group;
      sc.qscale[g * slots_per_head + i] =
          PrepareQkInt8Row(sc.q + r * Dp, D, hwy::IsSame<T, KvQ4>(),
                           sc.q8 + r * plan.qk_int8_row_bytes);
    }
  }
  // f16 K/V through FMLAL (platforms/f16_fml.h): q rounded to f16 once.
  const float* fml_undo = nullptr;
  const F16FmlKernels* fml =
      hwy::IsSame<T, uint16_t>()
          ? DecodeF16FmlPrepare(plan, sc, rows_per_group, slots_per_head, slots,
                                &fml_undo)
          : nullptr;
  // Platform kernels write scores in slot order, never the slots past the
  // heads': finite from the start.
  const bool direct = qk_int8 != nullptr || fml != nullptr;
  for (int64_t jj = 0;
       direct && slots > H * slots_per_head && jj < plan.keys_per_tile; ++jj) {
    memset(sc.s + jj * slots + H * slots_per_head, 0,
           static_cast<size_t>(slots - H * slots_per_head) * 4);
  }
  // Slot i of tile (g, t) is row g * rows_per_group + 4t + i (padding slots
  // take the tile's first row: computed, never read back).
  auto slot_row = [&](int64_t slot) {
    const int64_t tile = slot / 4, i = slot % 4;
    const int64_t g = tile / sh.tiles_per_head, t = tile % sh.tiles_per_head;
    const int64_t r = g * rows_per_group + t * kDecodeTileRows;
    if (g >= H) return int64_t{-1};
    return (t * kDecodeTileRows + i < rows_per_group) ? r + i : int64_t{-1};
  };
  int64_t min_qpos = INT64_MAX, max_qpos = INT64_MIN;
  for (int64_t slot = 0; slot < slots; ++slot) {
    const int64_t r = slot_row(slot);
    const int64_t pos = QueryPosition(p, b, r >= 0 ? r % q_len : 0);
    sc.qpos[slot] = static_cast<float>(pos);
    sc.slope[slot] =
        (r >= 0 && p.alibi_slopes) ? p.alibi_slopes[r / q_len] : 0.0f;
    if (p.bias) {
      sc.bias_row[slot] = r < 0 ? -1
                                : b * p.bias_stride_batch +
                                      (r / q_len) * p.bias_stride_head +
                                      (r % q_len) * p.bias_stride_query;
    }
    for (int64_t d = 0; p.tree_mask && d < q_len; ++d) {
      sc.tree[d * slots + slot] =
          r < 0 || TreeOpen(p, b, r % q_len, d) ? 1.0f : 0.0f;
    }
    sc.m[slot] = -INFINITY;
    sc.l[slot] = 0.0f;
    sc.scale[slot] = 0.0f;
    if (pos < min_qpos) min_qpos = pos;
    if (pos > max_qpos) max_qpos = pos;
  }
  // Padding quads (past the last tile) stay zero. (No zero-length memset
  // calls: one costs hundreds of cycles on some CPUs.)
  for (int64_t jj = 0; sh.quads_padded > sh.tiles && jj < plan.keys_per_tile;
       ++jj) {
    float* quads = sc.part + jj * sh.quads_padded * sh.quad_floats;
    memset(
        quads + sh.tiles * sh.quad_floats, 0,
        static_cast<size_t>((sh.quads_padded - sh.tiles) * sh.quad_floats) * 4);
  }

  // Keys of this chunk that any row may see.
  const int64_t first_pos = QueryPosition(p, b, 0);
  const int64_t draft0 = p.tree_mask ? first_pos : INT64_MAX;
  int64_t lo, hi;
  VisibleKeys(p, b, first_pos, first_pos + q_len - 1, &lo, &hi);
  const int64_t chunk_lo = split * plan.split_keys;
  if (lo < chunk_lo) lo = chunk_lo;
  if (hi > chunk_lo + plan.split_keys) hi = chunk_lo + plan.split_keys;
  // Where the block's rows are read in place (f32 / f16): base pointers
  // and strides in elements; blocked ones point into the cache block.
  using TR = typename KvReadType<T>::type;
  const int64_t e = static_cast<int64_t>(sizeof(TR));
  const int64_t kh = kBlocked ? p.kv_blocks.k_row_bytes / e : p.k_stride_head;
  const int64_t vh = kBlocked ? p.kv_blocks.v_row_bytes / e : p.v_stride_head;
  const int64_t ks = kBlocked ? H * kh : p.k_stride_token;
  const int64_t vs = kBlocked ? H * vh : p.v_stride_token;
  const int64_t block_tokens = kBlocked ? p.kv_blocks.block_tokens : 1;
  const TR* k = nullptr;
  const TR* v = nullptr;
  if constexpr (!kBlocked) {
    k = static_cast<const T*>(p.k) + b * p.k_stride_batch;
    v = static_cast<const T*>(p.v) + b * p.v_stride_batch;
  }
  const SoftcapConsts cap = MakeSoftcap(p.softcap);
  // Rows are read in place when whole vectors tile the head dim; otherwise
  // each block is packed to f32 with zero padding.
  const bool in_place = D % N == 0 && Dv % N == 0 && !IsKvCodes<T>();
  // q8 V read in place (codes to f32 in the p.v loads, the row scales
  // folded into p) where whole vectors tile the head dim.
  const bool v_codes_in_place = hwy::IsSame<T, KvQ8>() && Dv % N == 0;
  const int64_t nv = Dp / N;
  const int64_t Bk = plan.keys_per_tile;
  const int64_t v_row_bytes = Dv * static_cast<int64_t>(sizeof(TR));

  for (int64_t j0 = lo, next = lo; j0 < hi; j0 = next) {
    // Blocked rows are read in place (f32 / f16, q8 V, the integer q.k):
    // a block never straddles two cache blocks.
    const int64_t cut = kBlocked ? block_tokens - j0 % block_tokens : Bk;
    const int64_t room = cut < Bk ? cut : Bk;
    const int64_t keys = hi - j0 < room ? hi - j0 : room;
    next = j0 + keys;
    bool any_key = false, all_ok = true;
    int64_t min_kpos = INT64_MAX, max_kpos = INT64_MIN;
    for (int64_t jj = 0; jj < keys; ++jj) {
      const int64_t j = j0 + jj;
      const bool ok = KeyOpen(p, b, j);
      const int64_t pos = KeyPosition(p, b, j);
      sc.keyok[jj] = ok ? 1.0f : 0.0f;
      sc.keypos[jj] = static_cast<float>(pos);
      any_key = any_key || ok;
      all_ok = all_ok && ok;
      if (pos < min_kpos) min_kpos = pos;
      if (pos > max_kpos) max_kpos = pos;
    }
    if (!any_key) continue;
    // Position masks only where some (key, row) pair of the block may fail.
    const bool mask_causal = p.causal && max_kpos > min_qpos;
    const bool mask_window =
        p.sliding_window > 0 && (max_qpos - min_kpos >= p.sliding_window ||
                                 max_kpos - min_qpos >= p.sliding_window);
    // Drafts in the block: masked by the tree, not causally.
    const bool mask_tree = max_kpos >= draft0;
    const TR* kb = nullptr;
    const TR* vb = nullptr;
    if constexpr (!kBlocked) {
      kb = k + j0 * ks;
      vb = v + j0 * vs;
    } else if constexpr (!IsKvCodes<T>()) {
      const unsigned char* blk = KvBlockOf(p.kv_blocks, b, j0);
      const int64_t row = j0 % block_tokens;
      kb = reinterpret_cast<const TR*>(blk + p.kv_blocks.k_codes) + row * ks;
      vb = reinterpret_cast<const TR*>(blk + p.kv_blocks.v_codes) + row * vs;
    }
    if (qk_int8 != nullptr) {
      DecodeQkInt8(p, plan, sc, b, j0, keys, rows_per_group, slots,
                   slots_per_head, hwy::IsSame<T, KvQ4>());
    } else if (fml != nullptr) {
      DecodeF16FmlQk(fml, sc, H, rows_per_group, Dp, D, kb, ks, kh, keys, slots,
                     slots_per_head, vb, vs, fml_undo);
    } else if (IsKvCodes<T>()) {
      DequantBlock<T>(p, false, b, j0, keys, Dp, sc.kb);
      DecodeBlockQk(df, sc, sh, rows_per_group, Dp,
                    static_cast<const float*>(sc.kb), H * Dp, Dp, keys, nv,
                    nullptr, 0, 0, 0);
    } else if (in_place) {
      DecodeBlockQk(df, sc, sh, rows_per_group, Dp, kb, ks, kh, keys, nv,
                    reinterpret_cast<const unsigned char*>(vb), vs * e, vh * e,
                    v_row_bytes);
    } else {
      PackBlock(kb, ks, kh, keys, H, D, Dp, sc.kb);
      DecodeBlockQk(df, sc, sh, rows_per_group, Dp,
                    static_cast<const float*>(sc.kb), H * Dp, Dp, keys, nv,
                    nullptr, 0, 0, 0);
    }
    DecodeScoreBlock blk;
    blk.j0 = j0;
    blk.keys = keys;
    blk.scores_in_s = direct;
    blk.all_ok = all_ok;
    blk.mask_causal = mask_causal;
    blk.mask_window = mask_window;
    blk.mask_tree = mask_tree;
    blk.draft0 = draft0;
    DecodeBlockSoftmax(df, p, sc, sh, cap, blk);
    // acc[r] = acc[r] * alpha + sum_j p[j][r] v[j], head by head, up to
    // kDecodePvRows rows at a time so each V row is loaded once for them.
    // vscale: q8 V read in place, the keys' scales [keys][Hkv] (else null).
    auto pv = [&](const auto* vrows, int64_t vs, int64_t vh,
                  const float* vscale) {
      for (int64_t g = 0; g < H; ++g) {
        // A head's rows have consecutive slots (its tiles are full but the
        // last), so passes may span tiles.
        const int64_t slot_head = g * sh.tiles_per_head * 4;
        for (int64_t i = 0; i < rows_per_group; i += kDecodePvRows) {
          const int64_t n = rows_per_group - i < kDecodePvRows
                                ? rows_per_group - i
                                : kDecodePvRows;
          PvRows(df, n, sc.s + slot_head + i, slots, sc.alpha + slot_head + i,
                 vrows + g * vh, vs, vscale ? vscale + g : nullptr, H, keys,
                 sc.acc + (g * rows_per_group + i) * Dvp, Dvp);
        }
      }
    };
    if constexpr (hwy::IsSame<T, KvQ8>()) {
      if (v_codes_in_place) {
        const int8_t* codes = ValueScalesOf(p, b, j0, keys, sc.vb);
        pv(codes, H * p.kv_blocks.v_row_bytes, p.kv_blocks.v_row_bytes, sc.vb);
        continue;
      }
    }
    if (fml != nullptr) {
      DecodeF16FmlPv(fml, sc, H, rows_per_group, Dv, Dvp, vb, vs, vh, keys,
                     slots, slots_per_head);
    } else if (IsKvCodes<T>()) {
      DequantBlock<T>(p, true, b, j0, keys, Dvp, sc.vb);
      pv(static_cast<const float*>(sc.vb), H * Dvp, Dvp, nullptr);
    } else if (in_place) {
      pv(vb, vs, vh, nullptr);
    } else {
      PackBlock(vb, vs, vh, keys, H, Dv, Dvp, sc.vb);
      pv(static_cast<const float*>(sc.vb), H * Dvp, Dvp, nullptr);
    }
  }
  // Partial result of this chunk: [R][m, l, acc...].
  float* out = partials + index * R * (Dvp + 2);
  for (int64_t slot = 0; slot < slots; ++slot) {
    const int64_t r = slot_row(slot);
    if (r < 0) continue;
    const float l = sc.l[slot];
    out[r * (Dvp + 2) + 0] = sc.m[slot];
    out[r * (Dvp + 2) + 1] = l;
    // acc / l: the chunk's weighted mean of V (0 with nothing allowed).
    const float f = l == 0.0f ? 0.0f : sc.scale[slot] / l;
    for (int64_t d = 0; d < Dvp; ++d)
      out[r * (Dvp + 2) + 2 + d] = sc.acc[r * Dvp + d] * f;
  }
}

// The chunk items of a call for the work-stealing loop (RunItems).
template <typename TQ, typename T, bool kBlocked>
struct DecodeItems : WorkItems {
  const AttentionParams* p;
  const KernelPlan* plan;
  unsigned char* slots;  // slot s at slots + s * plan->slot_bytes
  float* partials;
  DecodeScratch Carve(size_t slot) const {
    return CarveDecodeSlot(
        *p, *plan, slots + slot * static_cast<size_t>(plan->slot_bytes));
  }
  void Run(int64_t item, const DecodeScratch& sc) const {
    DecodeItem<TQ, T, kBlocked>(*p, *plan, item, sc, partials);
  }
};

// The merge items: one per batch (all its kv heads and rows).
template <typename T>
struct DecodeMerges : WorkItems {
  const AttentionParams* p;
  const KernelPlan* plan;
  unsigned char* slots;
  const float* partials;
  // The slot's accumulator region is free now: the row buffer.
  float* Carve(size_t slot) const {
    return CarveDecodeSlot(*p, *plan,
                           slots + slot * static_cast<size_t>(plan->slot_bytes))
        .acc;
  }
  void Run(int64_t batch, float* row) const {
    DecodeMerge<T>(*p, *plan, batch, partials, row);
  }
};

// Workspace: the shared partials (plan.shared_bytes), then `slots` slots.
template <typename TQ, typename T, bool kBlocked>
void RunDecodeTyped(const AttentionParams& p, const KernelPlan& plan,
                    void* workspace, int64_t slots, pthreadpool_t pool) {
  unsigned char* base = static_cast<unsigned char*>(workspace);
  float* partials = CarveDecodeShared(plan, base).partials;
  DecodeItems<TQ, T, kBlocked> items;
  items.p = &p;
  items.plan = &plan;
  items.slots = base + plan.shared_bytes;
  items.partials = partials;
  items.count = plan.items;
  RunItems(pool, &items, slots);
  DecodeMerges<T> merges;
  merges.p = &p;
  merges.plan = &plan;
  merges.slots = base + plan.shared_bytes;
  merges.partials = partials;
  merges.count = p.batch;  // batches merged
  RunItems(pool, &merges, slots);
}

template <typename TQ>
void RunDecodeKv(const AttentionParams& p, const KernelPlan& plan,
                 void* workspace, int64_t slots, pthreadpool_t pool) {
  const bool blocked = p.kv_blocks.pool != nullptr;
  switch (p.kv_type) {
    case ElemType::kF16:
      if (blocked) {
        return RunDecodeTyped<TQ, uint16_t, true>(p, plan, workspace, slots,
                                                  pool);
      }
      return RunDecodeTyped<TQ, uint16_t, false>(p, plan, workspace, slots,
                                                 pool);
    case ElemType::kQ8:
      return RunDecodeTyped<TQ, KvQ8, true>(p, plan, workspace, slots, pool);
    case ElemType::kQ4:
      return RunDecodeTyped<TQ, KvQ4, true>(p, plan, workspace, slots, pool);
    case ElemType::kF32:
      break;
  }
  if (blocked) {
    return RunDecodeTyped<TQ, float, true>(p, plan, workspace, slots, pool);
  }
  RunDecodeTyped<TQ, float, false>(p, plan, workspace, slots, pool);
}

void RunDecode(const AttentionParams& p, const KernelPlan& plan,
               void* workspace, int64_t slots, pthreadpool_t pool) {
  if (p.q_type == ElemType::kF16) {
    RunDecodeKv<uint16_t>(p, plan, workspace, slots, pool);
  } else {
    RunDecodeKv<float>(p, plan, workspace, slots, pool);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace gqa
HWY_AFTER_NAMESPACE();

#endif  // include guard per target
