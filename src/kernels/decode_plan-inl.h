// The decode kernel's plan, compiled once per Highway target: the shapes
// and flags it serves, its score slots, the one layout of its per-slot
// scratch and shared partials (carved at base 0 it sizes them), and its
// split of a call into (batch, chunk of keys) items. The kernel:
// decode_attention-inl.h.

#if defined(GQA_SRC_KERNELS_DECODE_PLAN_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef GQA_SRC_KERNELS_DECODE_PLAN_INL_H_
#undef GQA_SRC_KERNELS_DECODE_PLAN_INL_H_
#else
#define GQA_SRC_KERNELS_DECODE_PLAN_INL_H_
#endif

#include <stddef.h>
#include <stdint.h>

#include "hwy/highway.h"
#include "platforms/f16_fml.h"
#include "platforms/platform_kernels.h"
#include "platforms/qk_int8.h"
#include "src/attention_core.h"
#include "src/kernels/attention_common-inl.h"
#include "src/kernels/decode_micro_kernels-inl.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

constexpr int64_t kDecodeMaxRows = 32;  // G*T rows per kv head, at most
constexpr int64_t kDecodeMinChunk = 512;
constexpr int64_t kDecodeMaxSplits = 16;
// Keys per block: at most this many, and fewer where the q.k partial sums
// of a block ([Bk][quads][N]) would pass kDecodePartFloats.
constexpr int64_t kDecodeBlockKeys = 64;
constexpr int64_t kDecodePartFloats = 4096;

// The shapes the decode kernel serves: few query rows per kv head.
HWY_INLINE bool DecodeServesShape(const AttentionParams& p) {
  return (p.q_heads / p.kv_heads) * p.q_len <= kDecodeMaxRows;
}
// The flags it serves: none of the outputs or masks it lacks. The additive
// bias it reads per logit, gathered across the slots; a draft tree (the
// verification of T drafts against a cache) as a lane mask per draft.
HWY_INLINE bool DecodeServesFlags(const AttentionParams& p) {
  return p.scores == nullptr && p.mask == nullptr && !p.apply_dropout &&
         p.query_mask == nullptr;
}

// Score slots: the rows of each kv head are cut into tiles of up to 4; tile
// t owns slots [4t, 4t + 4) (slots past the tile's rows are padding). A
// block's scores are kept key-major, [Bk][slots], so the online softmax runs
// across keys with rows in the lanes: no horizontal reductions.
struct DecodeShape {
  int64_t heads;           // Hkv
  int64_t tiles_per_head;  // ceil(G*T / 4)
  int64_t tiles;           // Hkv * tiles_per_head
  int64_t quads_padded;    // tiles rounded up to whole vectors of slots
  int64_t slots;           // 4 * quads_padded, a multiple of N
  int64_t quad_floats;     // max(N, 4): floats of one stored quad
};

HWY_INLINE DecodeShape MakeDecodeShape(const AttentionParams& p, int64_t N) {
  DecodeShape s;
  const int64_t rows_per_group = (p.q_heads / p.kv_heads) * p.q_len;
  s.heads = p.kv_heads;
  s.tiles_per_head = (rows_per_group + kDecodeTileRows - 1) / kDecodeTileRows;
  s.tiles = p.kv_heads * s.tiles_per_head;
  const int64_t quads_per_vector = N >= 4 ? N / 4 : 1;
  s.quads_padded = RoundUp(s.tiles, quads_per_vector);
  s.slots = 4 * s.quads_padded;
  s.quad_floats = N > 4 ? N : 4;
  return s;
}

struct DecodeScratch {
  float* q;       // [R][Dp] queries * scale, R = Hq*T rows (row = u*T + t)
  float* kb;      // [Bk][Hkv][Dp] key block, f32 (packed path only)
  float* vb;      // [Bk][Hkv][Dvp] value block (packed path only)
  float* part;    // [Bk][quads_padded][quad_floats] q.k quads
  float* s;       // [Bk][slots] scores, then probabilities
  float* acc;     // [R][Dvp]
  float* m;       // [slots] running max
  float* l;       // [slots] running sum
  float* scale;   // [slots] acc holds sum p v / scale (scale >= l)
  float* alpha;   // [slots] rescale of acc for the current block
  float* qpos;    // [slots] query position of the slot's row
  float* slope;   // [slots] ALiBi slope of the slot's head (0: padding)
  float* keyok;   // [Bk] 1 if the key may be attended (before causal/window)
  float* keypos;  // [Bk] key positions
  unsigned char* q8;  // [R][qk_int8_row_bytes] prepared rows (integer q.k)
  float* qscale;      // [slots] s_q of the slot's row (0 in padding);
                      // FMLAL: the row's q.k factor 2^e (1 in padding)
  int64_t* bias_row;  // [slots] the slot's bias row offset (-1: padding)
  float* bias_lanes;  // [N] one key's bias across a vector of slots
  float* tree;        // [T][slots] 1 where the slot's query sees draft d
  uint16_t* q16;      // [R][Dp] the q rows in f16 (FMLAL path only)
  int64_t bytes;      // size of the slot: 20 regions, each 64-byte rounded
};

// The one layout of a slot: at base nullptr, only .bytes is meaningful.
HWY_INLINE DecodeScratch CarveDecodeSlot(const AttentionParams& p,
                                         const KernelPlan& plan,
                                         unsigned char* base) {
  const int64_t R = plan.rows, Dp = plan.dim_padded, N = plan.lanes;
  const int64_t Dvp = plan.value_dim_padded;
  const int64_t Bk = plan.keys_per_tile, H = p.kv_heads;
  const DecodeShape sh = MakeDecodeShape(p, N);
  ScratchCarver c(base);
  DecodeScratch s;
  s.q = c.Take<float>(R * Dp);
  s.kb = c.Take<float>(Bk * H * Dp);
  s.vb = c.Take<float>(Bk * H * Dvp);
  s.part = c.Take<float>(Bk * sh.quads_padded * sh.quad_floats);
  s.s = c.Take<float>(Bk * sh.slots);
  s.acc = c.Take<float>(R * Dvp);
  s.m = c.Take<float>(sh.slots);
  s.l = c.Take<float>(sh.slots);
  s.scale = c.Take<float>(sh.slots);
  s.alpha = c.Take<float>(sh.slots);
  s.qpos = c.Take<float>(sh.slots);
  s.slope = c.Take<float>(sh.slots);
  s.keyok = c.Take<float>(Bk);
  s.keypos = c.Take<float>(Bk);
  s.q8 = c.Take<unsigned char>(
      plan.qk_int8_row_bytes ? R * plan.qk_int8_row_bytes : 0);
  s.qscale =
      c.Take<float>(plan.qk_int8_row_bytes || plan.f16_fml ? sh.slots : 0);
  s.bias_row = c.Take<int64_t>(p.bias ? sh.slots : 0);
  s.bias_lanes = c.Take<float>(p.bias ? N : 0);
  // (Always: a workspace sized without the tree serves an attend with it.)
  s.tree = c.Take<float>(p.q_len * sh.slots);
  s.q16 = c.Take<uint16_t>(plan.f16_fml ? R * Dp : 0);
  s.bytes = c.Bytes();
  return s;
}

// The workspace's shared part: the partial results of every item.
struct DecodeShared {
  float* partials;  // [B * splits][R][2 + Dvp]: (max, sum, acc / sum) per row
  int64_t bytes;
};
HWY_INLINE DecodeShared CarveDecodeShared(const KernelPlan& plan,
                                          unsigned char* base) {
  ScratchCarver c(base);
  DecodeShared s;
  s.partials =
      c.Take<float>(plan.items * plan.rows * (plan.value_dim_padded + 2));
  s.bytes = c.Bytes();
  return s;
}

// Work item = (batch, chunk of keys) over all kv heads: the K/V rows of a
// key are contiguous across heads ([S][Hkv][D]), so an item reads its range
// of the cache front to back, the order the hardware prefetchers follow.
void MakeDecodePlan(const AttentionParams& p, KernelPlan* plan) {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t R = p.q_heads * p.q_len;
  const int64_t Dp = RoundUp(p.head_dim, N);
  const DecodeShape sh = MakeDecodeShape(p, N);
  plan->lanes = N;
  plan->rows = R;
  plan->rows_padded = R;
  plan->dim_padded = Dp;
  plan->value_dim_padded = RoundUp(ValueDim(p), N);
  int64_t Bk = kDecodePartFloats / (sh.quads_padded * sh.quad_floats) / 4 * 4;
  if (Bk > kDecodeBlockKeys) Bk = kDecodeBlockKeys;
  if (Bk < 4) Bk = 4;
  plan->keys_per_tile = Bk;
  plan->block_positions = p.q_len;
  plan->blocks_per_head = 1;
  int64_t chunk =
      RoundUp((p.kv_len + kDecodeMaxSplits - 1) / kDecodeMaxSplits, Bk);
  if (chunk < kDecodeMinChunk) chunk = RoundUp(kDecodeMinChunk, Bk);
  plan->split_keys = chunk;
  plan->splits = (p.kv_len + chunk - 1) / chunk;
  plan->items = p.batch * plan->splits;
  // Integer q.k: reserved for q8 / q4 blocked keys whenever the CPU has
  // it; used when the call allows it.
  const bool codes = p.kv_blocks.pool != nullptr &&
                     (p.kv_type == ElemType::kQ8 || p.kv_type == ElemType::kQ4);
  const PlatformKernels mode = PlatformKernelsMode();
  const QkInt8Kernels* qk =
      codes && mode != PlatformKernels::kOff ? BestQkInt8Kernels() : nullptr;
  if (qk != nullptr &&
      QkInt8ServesDim(p.kv_type == ElemType::kQ4, p.head_dim)) {
    plan->qk_int8_row_bytes = QkInt8PreparedBytes(p.head_dim);
    plan->qk_int8 = p.qk_int8 ? qk : nullptr;
  }
  // FMLAL (q and p rounded to f16: in mode `on`, the default, not `exact`):
  // f16 K/V, strided or blocked, read in place (whole 8-element groups of
  // the head dims); the f32 path otherwise.
  if (p.kv_type == ElemType::kF16 && mode == PlatformKernels::kOn &&
      F16FmlServesDims(p.head_dim, ValueDim(p))) {
    plan->f16_fml = BestF16FmlKernels();
  }
  plan->slot_bytes = CarveDecodeSlot(p, *plan, nullptr).bytes;
  plan->shared_bytes = CarveDecodeShared(*plan, nullptr).bytes;
}

}  // namespace HWY_NAMESPACE
}  // namespace gqa
HWY_AFTER_NAMESPACE();

#endif  // include guard per target
