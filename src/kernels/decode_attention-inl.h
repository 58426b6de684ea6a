// Decode attention (few query rows per kv head, e.g. T = 1..4 new tokens
// against a KV cache), compiled once per Highway target. Each K/V row is
// read from memory once and serves all G*T query rows of its kv group.
//
// Work item = (batch b, chunk c of the key axis), all kv heads: the key axis
// is cut into fixed chunks (a function of S only), so the partition never
// depends on the thread count, and an item reads memory in order. Per block
// of Bk keys (up to 4 vectors of keys):
//   K, V block -> f32, repacked per head ([Hkv][Bk][Dp])
//   q.k: per row, per key, a vector of partial sums over D (rows in
//        registers, two at a time); a transpose-add tree (ConcatEven/Odd,
//        3(N-1) ops per N keys) turns N of them into a vector of N scores
//   masks, online softmax per row (one serial chain per block)
//   p.v: up to 4 rows of a group at a time, each V row loaded once for them
// Each item leaves (max, sum, acc) per row in the shared partials; a second
// pass merges the chunks of each batch in chunk order and writes out.

#if defined(GQA_SRC_KERNELS_DECODE_ATTENTION_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef GQA_SRC_KERNELS_DECODE_ATTENTION_INL_H_
#undef GQA_SRC_KERNELS_DECODE_ATTENTION_INL_H_
#else
#define GQA_SRC_KERNELS_DECODE_ATTENTION_INL_H_
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <pthreadpool.h>

#include "hwy/cache_control.h"
#include "hwy/contrib/math/math-inl.h"
#include "hwy/highway.h"
#include "src/attention_core.h"
#include "src/half.h"
#include "src/kernels/flash_attention-inl.h"

HWY_BEFORE_NAMESPACE();
namespace gqa {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

constexpr int64_t kDecodeMaxRows = 16;
constexpr int64_t kDecodeMinChunk = 512;
constexpr int64_t kDecodeMaxSplits = 16;
// Keys per block, in vectors: the softmax update (a serial chain of
// reductions and exp per row) is paid once per block; up to 4*N keys, fewer
// where the packed K and V blocks of all heads would pass ~128 KiB.
constexpr int64_t kDecodeMaxBlockVectors = 4;
constexpr int64_t kDecodeBlockFloats = 16384;  // per K (or V) block

// True when the decode path can serve p (few rows, nothing it lacks).
HWY_INLINE bool UseDecode(const AttentionParams& p) {
  return (p.q_heads / p.kv_heads) * p.q_len <= kDecodeMaxRows && p.scores == nullptr &&
         p.mask == nullptr && !p.apply_dropout && p.query_mask == nullptr;
}

struct DecodeScratch {
  float* q;       // [R][Dp] queries * scale, R = Hq*T rows (row = u*T + t)
  float* kb;      // [Hkv][Bk][Dp] key block, f32, per head contiguous
  float* vb;      // [Hkv][Bk][Dp] value block
  float* part;    // [2][Bk][N] per-key partial sums of two rows
  float* s;       // [R][Bk] probabilities of the block
  float* acc;     // [R][Dp]
  float* m;       // [R]
  float* l;       // [R]
  float* keyok;   // [Bk] 1 if the key may be attended (before causal/window)
  float* keypos;  // [Bk] key positions
  float* qpos;    // [R] query positions
};

// Work item = (batch, chunk of keys) over all kv heads: the K/V rows of a
// key are contiguous across heads ([S][Hkv][D]), so an item streams memory
// in order (one head per item would stride by Hkv*D and defeat the
// prefetchers).
void MakeDecodePlan(const AttentionParams& p, AttentionPlan* plan) {
  const hn::ScalableTag<float> df;
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  const int64_t R = p.q_heads * p.q_len;
  const int64_t Dp = RoundUp(p.head_dim, N);
  plan->decode = true;
  plan->lanes = N;
  plan->rows = R;
  plan->rows_padded = R;
  plan->dim_padded = Dp;
  int64_t vectors = kDecodeBlockFloats / (p.kv_heads * Dp * N);
  if (vectors < 1) vectors = 1;
  if (vectors > kDecodeMaxBlockVectors) vectors = kDecodeMaxBlockVectors;
  const int64_t Bk = vectors * N;
  plan->keys_per_tile = Bk;
  plan->block_positions = p.q_len;
  plan->blocks_per_head = 1;
  int64_t chunk = RoundUp((p.kv_len + kDecodeMaxSplits - 1) / kDecodeMaxSplits, Bk);
  if (chunk < kDecodeMinChunk) chunk = RoundUp(kDecodeMinChunk, Bk);
  plan->split_keys = chunk;
  plan->splits = (p.kv_len + chunk - 1) / chunk;
  plan->items = p.batch * plan->splits;
  const int64_t H = p.kv_heads;
  const int64_t floats =
      R * Dp + 2 * Bk * H * Dp + 2 * Bk * N + R * Bk + R * Dp + 2 * R + 2 * Bk + R;
  plan->slot_bytes = RoundUp(floats * 4 + 11 * 64, 64);
  plan->shared_bytes = RoundUp(plan->items * R * (Dp + 2) * 4, 64);
}

DecodeScratch CarveDecodeSlot(const AttentionParams& p, const AttentionPlan& plan,
                              unsigned char* base) {
  const int64_t R = plan.rows, Dp = plan.dim_padded, N = plan.lanes, H = p.kv_heads;
  const int64_t Bk = plan.keys_per_tile;
  unsigned char* ptr = base;
  auto take = [&ptr](int64_t floats) {
    float* r = reinterpret_cast<float*>(ptr);
    ptr += RoundUp(floats * 4, 64);
    return r;
  };
  DecodeScratch s;
  s.q = take(R * Dp);
  s.kb = take(Bk * H * Dp);
  s.vb = take(Bk * H * Dp);
  s.part = take(2 * Bk * N);
  s.s = take(R * Bk);
  s.acc = take(R * Dp);
  s.m = take(R);
  s.l = take(R);
  s.keyok = take(Bk);
  s.keypos = take(Bk);
  s.qpos = take(R);
  return s;
}

// Lane j of the result = sum of the lanes of part[j] (N vectors of N lanes).
template <class DF>
HWY_INLINE hn::Vec<DF> TransposeAdd(DF df, float* HWY_RESTRICT part) {
  const size_t N = hn::Lanes(df);
#if HWY_TARGET == HWY_SCALAR
  (void)N;
  return hn::LoadU(df, part);
#else
  // In place: each level halves the vector count, pairing neighbours.
  for (size_t count = N; count > 1; count /= 2) {
    for (size_t i = 0; i < count; i += 2) {
      const auto lo = hn::LoadU(df, part + i * N);
      const auto hi = hn::LoadU(df, part + (i + 1) * N);
      const auto sum = hn::Add(hn::ConcatEven(df, hi, lo), hn::ConcatOdd(df, hi, lo));
      hn::StoreU(sum, df, part + (i / 2) * N);
    }
  }
  return hn::LoadU(df, part);
#endif
}

// Rows of one key block for all heads, converted to f32 and repacked head
// by head ([Hkv][Bk][Dp], zero padded): reads go through memory in order
// (key by key, all heads), and each head's block is then one compact
// region instead of Bk rows Hkv*D apart (a page per row: TLB misses).
struct BlockView {
  const float* base;  // row (jj, g) at base + g * head_stride + jj * key_stride
  int64_t key_stride, head_stride;
};

template <typename T>
HWY_INLINE BlockView PackBlock(const AttentionParams& p, const T* src, int64_t src_key_stride,
                               int64_t src_head_stride, int64_t keys, int64_t Dp, int64_t Bk,
                               float* dst) {
  const hn::ScalableTag<float> df;
  const int64_t D = p.head_dim, H = p.kv_heads;
  for (int64_t jj = 0; jj < Bk; ++jj) {
    for (int64_t g = 0; g < H; ++g) {
      float* row = dst + (g * Bk + jj) * Dp;
      if (jj < keys) {
        RowToF32(df, src + jj * src_key_stride + g * src_head_stride, row, D);
        for (int64_t d = D; d < Dp; ++d) row[d] = 0.0f;
      } else {
        memset(row, 0, static_cast<size_t>(Dp) * 4);
      }
    }
  }
  return BlockView{dst, Dp, Bk * Dp};
}

// part[jj] = q (.) k[jj] (N lanes, summed over the head dim later) for keys
// [0, keys) of one head, for ROWS query rows (1 or 2) held in registers:
// NV = Dp / N vectors each. Each key row is loaded once for the rows.
template <int ROWS, int NV, class DF>
HWY_INLINE void QkRowsFixed(DF df, const float* HWY_RESTRICT q0, const float* HWY_RESTRICT q1,
                            const float* HWY_RESTRICT krow, int64_t key_stride, int64_t keys,
                            float* part0, float* part1) {
  using V = hn::Vec<DF>;
  const size_t N = hn::Lanes(df);
  V a0 = hn::LoadU(df, q0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  V b0 = a0, b1 = a0, b2 = a0, b3 = a0, b4 = a0, b5 = a0, b6 = a0, b7 = a0;
#define GQA_LOADQ(i)                                  \
  if (NV > i) {                                       \
    a##i = hn::LoadU(df, q0 + i * N);                 \
    if (ROWS > 1) b##i = hn::LoadU(df, q1 + i * N);   \
  }
  GQA_LOADQ(0) GQA_LOADQ(1) GQA_LOADQ(2) GQA_LOADQ(3)
  GQA_LOADQ(4) GQA_LOADQ(5) GQA_LOADQ(6) GQA_LOADQ(7)
#undef GQA_LOADQ
  for (int64_t jj = 0; jj < keys; ++jj) {
    const float* kr = krow + jj * key_stride;
    V s0 = hn::Zero(df), s1 = s0, t0 = s0, t1 = s0;
#define GQA_FMA(i, sa, sb)                            \
  if (NV > i) {                                       \
    const V k = hn::LoadU(df, kr + i * N);            \
    sa = hn::MulAdd(a##i, k, sa);                     \
    if (ROWS > 1) sb = hn::MulAdd(b##i, k, sb);       \
  }
    GQA_FMA(0, s0, t0) GQA_FMA(1, s1, t1) GQA_FMA(2, s0, t0) GQA_FMA(3, s1, t1)
    GQA_FMA(4, s0, t0) GQA_FMA(5, s1, t1) GQA_FMA(6, s0, t0) GQA_FMA(7, s1, t1)
#undef GQA_FMA
    hn::StoreU(hn::Add(s0, s1), df, part0 + jj * N);
    if (ROWS > 1) hn::StoreU(hn::Add(t0, t1), df, part1 + jj * N);
  }
}

// Any Dp: q from memory.
template <class DF>
HWY_INLINE void QkRowGeneric(DF df, const float* HWY_RESTRICT q, const float* HWY_RESTRICT krow,
                             int64_t key_stride, int64_t keys, int64_t Dp,
                             float* HWY_RESTRICT part) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  for (int64_t jj = 0; jj < keys; ++jj) {
    const float* kr = krow + jj * key_stride;
    auto sum0 = hn::Zero(df), sum1 = hn::Zero(df);
    int64_t d = 0;
    for (; d + 2 * N <= Dp; d += 2 * N) {
      sum0 = hn::MulAdd(hn::LoadU(df, q + d), hn::LoadU(df, kr + d), sum0);
      sum1 = hn::MulAdd(hn::LoadU(df, q + d + N), hn::LoadU(df, kr + d + N), sum1);
    }
    if (d < Dp) sum0 = hn::MulAdd(hn::LoadU(df, q + d), hn::LoadU(df, kr + d), sum0);
    hn::StoreU(hn::Add(sum0, sum1), df, part + jj * N);
  }
}

// Two rows at a time where both fit in registers with their key loads.
template <class DF>
HWY_INLINE void QkRows(DF df, int rows, const float* q0, const float* q1, const float* krow,
                       int64_t key_stride, int64_t keys, int64_t Dp, float* part0,
                       float* part1) {
  const int64_t nv = Dp / static_cast<int64_t>(hn::Lanes(df));
  const bool pair = rows > 1;
#define GQA_CASE(n)                                                                     \
  case n:                                                                               \
    if (pair && n <= 4) {                                                               \
      QkRowsFixed<2, n>(df, q0, q1, krow, key_stride, keys, part0, part1);              \
    } else {                                                                            \
      QkRowsFixed<1, n>(df, q0, q0, krow, key_stride, keys, part0, part0);              \
      if (pair) QkRowsFixed<1, n>(df, q1, q1, krow, key_stride, keys, part1, part1);    \
    }                                                                                   \
    return;
  switch (nv) {
    GQA_CASE(1) GQA_CASE(2) GQA_CASE(3) GQA_CASE(4)
    GQA_CASE(5) GQA_CASE(6) GQA_CASE(7) GQA_CASE(8)
    default:
      QkRowGeneric(df, q0, krow, key_stride, keys, Dp, part0);
      if (pair) QkRowGeneric(df, q1, krow, key_stride, keys, Dp, part1);
  }
#undef GQA_CASE
}

// acc[i][d..] += sum_jj p[i][jj] * v[jj][d..] for ROWS rows, 4 (or 1)
// vectors of head dims at a time: one load of each V row serves all rows.
template <int ROWS, int NV, class DF>
HWY_INLINE void PvRowsFixed(DF df, const float* HWY_RESTRICT pr, int64_t p_stride,
                            const float* HWY_RESTRICT vrow, int64_t key_stride, int64_t keys,
                            float* HWY_RESTRICT acc, int64_t acc_stride, int64_t d) {
  using V = hn::Vec<DF>;
  const size_t N = hn::Lanes(df);
#define GQA_LOADA(r)                                                          \
  V c##r##0 = hn::Zero(df), c##r##1 = c##r##0, c##r##2 = c##r##0, c##r##3 = c##r##0; \
  if (ROWS > r) {                                                             \
    c##r##0 = hn::LoadU(df, acc + r * acc_stride + d);                        \
    if (NV > 1) {                                                             \
      c##r##1 = hn::LoadU(df, acc + r * acc_stride + d + N);                  \
      c##r##2 = hn::LoadU(df, acc + r * acc_stride + d + 2 * N);              \
      c##r##3 = hn::LoadU(df, acc + r * acc_stride + d + 3 * N);              \
    }                                                                         \
  }
  GQA_LOADA(0) GQA_LOADA(1) GQA_LOADA(2) GQA_LOADA(3)
#undef GQA_LOADA
  for (int64_t jj = 0; jj < keys; ++jj) {
    const float* vr = vrow + jj * key_stride + d;
    const V v0 = hn::LoadU(df, vr);
    V v1 = v0, v2 = v0, v3 = v0;
    if (NV > 1) {
      v1 = hn::LoadU(df, vr + N);
      v2 = hn::LoadU(df, vr + 2 * N);
      v3 = hn::LoadU(df, vr + 3 * N);
    }
#define GQA_ROW(r)                                          \
  if (ROWS > r) {                                           \
    const V w = hn::Set(df, pr[r * p_stride + jj]);         \
    c##r##0 = hn::MulAdd(w, v0, c##r##0);                   \
    if (NV > 1) {                                           \
      c##r##1 = hn::MulAdd(w, v1, c##r##1);                 \
      c##r##2 = hn::MulAdd(w, v2, c##r##2);                 \
      c##r##3 = hn::MulAdd(w, v3, c##r##3);                 \
    }                                                       \
  }
    GQA_ROW(0) GQA_ROW(1) GQA_ROW(2) GQA_ROW(3)
#undef GQA_ROW
  }
#define GQA_STOREA(r)                                                 \
  if (ROWS > r) {                                                     \
    hn::StoreU(c##r##0, df, acc + r * acc_stride + d);                \
    if (NV > 1) {                                                     \
      hn::StoreU(c##r##1, df, acc + r * acc_stride + d + N);          \
      hn::StoreU(c##r##2, df, acc + r * acc_stride + d + 2 * N);      \
      hn::StoreU(c##r##3, df, acc + r * acc_stride + d + 3 * N);      \
    }                                                                 \
  }
  GQA_STOREA(0) GQA_STOREA(1) GQA_STOREA(2) GQA_STOREA(3)
#undef GQA_STOREA
}

template <int ROWS, class DF>
HWY_INLINE void PvRowsAllDims(DF df, const float* pr, int64_t p_stride, const float* vrow,
                              int64_t key_stride, int64_t keys, float* acc, int64_t Dp) {
  const int64_t N = static_cast<int64_t>(hn::Lanes(df));
  int64_t d = 0;
  for (; d + 4 * N <= Dp; d += 4 * N) {
    PvRowsFixed<ROWS, 4>(df, pr, p_stride, vrow, key_stride, keys, acc, Dp, d);
  }
  for (; d < Dp; d += N) PvRowsFixed<ROWS, 1>(df, pr, p_stride, vrow, key_stride, keys, acc, Dp, d);
}

// Rows per PV pass: 4 x 4 accumulators where there are 32 vector registers.
constexpr int64_t kDecodePvRows = kNV > 2 ? 4 : 2;

template <class DF>
HWY_INLINE void PvRows(DF df, int rows, const float* pr, int64_t p_stride, const float* vrow,
                       int64_t key_stride, int64_t keys, float* acc, int64_t Dp) {
  switch (rows) {
    case 1: PvRowsAllDims<1>(df, pr, p_stride, vrow, key_stride, keys, acc, Dp); break;
    case 2: PvRowsAllDims<2>(df, pr, p_stride, vrow, key_stride, keys, acc, Dp); break;
    case 3: PvRowsAllDims<3>(df, pr, p_stride, vrow, key_stride, keys, acc, Dp); break;
    default: PvRowsAllDims<4>(df, pr, p_stride, vrow, key_stride, keys, acc, Dp); break;
  }
}

template <typename TQ, typename T>
void DecodeItem(const AttentionParams& p, const AttentionPlan& plan, int64_t index,
                const DecodeScratch& sc, float* partials) {
  const hn::ScalableTag<float> df;
  const int64_t N = plan.lanes, Dp = plan.dim_padded, D = p.head_dim, R = plan.rows;
  const int64_t group = p.q_heads / p.kv_heads, q_len = p.q_len;
  const int64_t split = index % plan.splits;
  const int64_t b = index / plan.splits;

  // Rows r = u * T + t, queries scaled.
  for (int64_t r = 0; r < R; ++r) {
    const int64_t u = r / q_len, t = r % q_len;
    const TQ* q = static_cast<const TQ*>(p.q) + b * p.q_stride_b + t * p.q_stride_t +
                  u * p.q_stride_h;
    float* dst = sc.q + r * Dp;
    for (int64_t d = 0; d < D; ++d) dst[d] = ToF32<TQ>(q[d]) * p.scale;
    for (int64_t d = D; d < Dp; ++d) dst[d] = 0.0f;
    sc.qpos[r] = static_cast<float>(QueryPosition(p, b, t));
    sc.m[r] = -INFINITY;
    sc.l[r] = 0.0f;
  }
  memset(sc.acc, 0, static_cast<size_t>(R * Dp) * 4);

  // Keys of this chunk that any row may see.
  const int64_t len = p.key_lengths ? p.key_lengths[b] : p.kv_len;
  int64_t lo = split * plan.split_keys, hi = lo + plan.split_keys;
  int64_t filled = len;
  if (p.ring_capacity > 0 && filled > p.ring_capacity) filled = p.ring_capacity;
  if (hi > filled) hi = filled;
  if (p.ring_capacity == 0) {
    const int64_t first_pos = QueryPosition(p, b, 0);
    const int64_t last_pos = first_pos + q_len - 1;
    if (p.causal && hi > last_pos + 1) hi = last_pos + 1;
    if (p.sliding_window > 0) {
      if (lo < first_pos - p.sliding_window + 1) lo = first_pos - p.sliding_window + 1;
      if (hi > last_pos + p.sliding_window) hi = last_pos + p.sliding_window;
    }
  }
  const T* k = static_cast<const T*>(p.k) + b * p.k_stride_b;
  const T* v = static_cast<const T*>(p.v) + b * p.v_stride_b;
  const auto neg_inf = hn::Set(df, -INFINITY);
  const auto zero = hn::Zero(df);
  const auto window = hn::Set(df, static_cast<float>(p.sliding_window));

  const int64_t Bk = plan.keys_per_tile;
  for (int64_t j0 = lo; j0 < hi; j0 += Bk) {
    const int64_t keys = hi - j0 < Bk ? hi - j0 : Bk;
    bool any_key = false;
    for (int64_t jj = 0; jj < Bk; ++jj) {
      const int64_t j = j0 + jj;
      const bool ok = jj < keys && (!p.key_mask0 || p.key_mask0[b * p.kv_len + j]) &&
                      (!p.key_mask1 || p.key_mask1[b * p.kv_len + j]);
      sc.keyok[jj] = ok ? 1.0f : 0.0f;
      sc.keypos[jj] = static_cast<float>(jj < keys ? KeyPosition(p, b, j) : 0);
      any_key = any_key || ok;
    }
    if (!any_key) continue;
    // Rows of one head are Hkv*D apart: page-crossing strides the hardware
    // prefetchers do not follow. Prefetch the next block (contiguous over
    // all heads) while this one is computed.
    if (j0 + Bk < hi) {
      const int64_t next = hi - (j0 + Bk) < Bk ? hi - (j0 + Bk) : Bk;
      const char* kn = reinterpret_cast<const char*>(k + (j0 + Bk) * p.k_stride_s);
      const char* vn = reinterpret_cast<const char*>(v + (j0 + Bk) * p.v_stride_s);
      const int64_t kbytes = (next - 1) * p.k_stride_s * static_cast<int64_t>(sizeof(T)) +
                             p.kv_heads * p.k_stride_h * static_cast<int64_t>(sizeof(T));
      const int64_t vbytes = (next - 1) * p.v_stride_s * static_cast<int64_t>(sizeof(T)) +
                             p.kv_heads * p.v_stride_h * static_cast<int64_t>(sizeof(T));
      for (int64_t off = 0; off < kbytes; off += 64) hwy::Prefetch(kn + off);
      for (int64_t off = 0; off < vbytes; off += 64) hwy::Prefetch(vn + off);
    }
    const BlockView kv =
        PackBlock(p, k + j0 * p.k_stride_s, p.k_stride_s, p.k_stride_h, keys, Dp, Bk, sc.kb);
    const int64_t key_vectors = (keys + N - 1) / N;
    bool any_p = false;
    // Scores of row r from its partial sums: transpose-add, masks, then the
    // online-softmax update (one serial chain per row and block).
    auto finish_row = [&](int64_t r, float* part) {
      const auto qpos = hn::Set(df, sc.qpos[r]);
      float* srow = sc.s + r * Bk;
      auto vmax = neg_inf;
      for (int64_t c = 0; c < key_vectors; ++c) {
        auto x = TransposeAdd(df, part + c * N * N);
        const auto keypos = hn::LoadU(df, sc.keypos + c * N);
        x = hn::IfThenElse(hn::Eq(hn::LoadU(df, sc.keyok + c * N), zero), neg_inf, x);
        if (p.causal) x = hn::IfThenElse(hn::Gt(keypos, qpos), neg_inf, x);
        if (p.sliding_window > 0) {
          x = hn::IfThenElse(hn::Ge(hn::Sub(qpos, keypos), window), neg_inf, x);
          x = hn::IfThenElse(hn::Ge(hn::Sub(keypos, qpos), window), neg_inf, x);
        }
        hn::StoreU(x, df, srow + c * N);
        vmax = hn::Max(vmax, x);
      }
      const float m_old = sc.m[r];
      const float m_blk = hn::GetLane(hn::MaxOfLanes(df, vmax));
      const float m_new = m_blk > m_old ? m_blk : m_old;
      if (m_new == -INFINITY) {
        for (int64_t c = 0; c < key_vectors; ++c) hn::StoreU(zero, df, srow + c * N);
        return;
      }
      const auto vm = hn::Set(df, m_new);
      auto vsum = zero;
      for (int64_t c = 0; c < key_vectors; ++c) {
        const auto x = hn::LoadU(df, srow + c * N);
        const auto e = hn::IfThenZeroElse(hn::Eq(x, neg_inf), hn::Exp(df, hn::Sub(x, vm)));
        hn::StoreU(e, df, srow + c * N);
        vsum = hn::Add(vsum, e);
      }
      const float alpha = m_old == -INFINITY ? 0.0f : expf(m_old - m_new);
      sc.l[r] = sc.l[r] * alpha + hn::GetLane(hn::SumOfLanes(df, vsum));
      sc.m[r] = m_new;
      if (alpha != 1.0f) {
        const auto va = hn::Set(df, alpha);
        float* acc = sc.acc + r * Dp;
        for (int64_t d = 0; d < Dp; d += N) {
          hn::StoreU(hn::Mul(hn::LoadU(df, acc + d), va), df, acc + d);
        }
      }
      any_p = true;
    };
    const int64_t rows_per_group = group * q_len;
    for (int64_t r = 0; r < R;) {
      const int64_t g = r / rows_per_group;
      const int rows = (r + 1 < R && (r + 1) / rows_per_group == g) ? 2 : 1;
      float* part0 = sc.part;
      float* part1 = sc.part + Bk * N;
      QkRows(df, rows, sc.q + r * Dp, sc.q + (r + rows - 1) * Dp, kv.base + g * kv.head_stride,
             kv.key_stride, key_vectors * N, Dp, part0, part1);
      finish_row(r, part0);
      if (rows > 1) finish_row(r + 1, part1);
      r += rows;
    }
    if (!any_p) continue;
    const BlockView vv =
        PackBlock(p, v + j0 * p.v_stride_s, p.v_stride_s, p.v_stride_h, keys, Dp, Bk, sc.vb);
    // acc[r] += sum_j p[r][j] v[j], kDecodePvRows rows of a group at a time
    // so each V row is loaded once for all of them.
    for (int64_t g = 0; g < p.kv_heads; ++g) {
      const float* vrow = vv.base + g * vv.head_stride;
      for (int64_t r = g * rows_per_group; r < (g + 1) * rows_per_group; r += kDecodePvRows) {
        const int64_t rows = (g + 1) * rows_per_group - r < kDecodePvRows
                                 ? (g + 1) * rows_per_group - r
                                 : kDecodePvRows;
        PvRows(df, static_cast<int>(rows), sc.s + r * Bk, Bk, vrow, vv.key_stride, keys,
               sc.acc + r * Dp, Dp);
      }
    }
  }
  // Partial result of this chunk: [R][m, l, acc...].
  float* out = partials + index * R * (Dp + 2);
  for (int64_t r = 0; r < R; ++r) {
    out[r * (Dp + 2) + 0] = sc.m[r];
    out[r * (Dp + 2) + 1] = sc.l[r];
    memcpy(out + r * (Dp + 2) + 2, sc.acc + r * Dp, static_cast<size_t>(Dp) * 4);
  }
}

// Merges the chunks of batch b in chunk order and writes its rows out.
template <typename T>
void DecodeMerge(const AttentionParams& p, const AttentionPlan& plan, int64_t b,
                 const float* partials, float* tmp) {
  const int64_t R = plan.rows, Dp = plan.dim_padded, D = p.head_dim;
  const int64_t group = p.q_heads / p.kv_heads;
  for (int64_t r = 0; r < R; ++r) {
    float m = -INFINITY;
    for (int64_t c = 0; c < plan.splits; ++c) {
      const float mc = partials[((b * plan.splits + c) * R + r) * (Dp + 2)];
      if (mc > m) m = mc;
    }
    float l = 0.0f;
    for (int64_t d = 0; d < D; ++d) tmp[d] = 0.0f;
    if (m != -INFINITY) {
      for (int64_t c = 0; c < plan.splits; ++c) {
        const float* part = partials + ((b * plan.splits + c) * R + r) * (Dp + 2);
        if (part[0] == -INFINITY) continue;
        const float w = expf(part[0] - m);
        l += part[1] * w;
        for (int64_t d = 0; d < D; ++d) tmp[d] += part[2 + d] * w;
      }
    }
    const int64_t u = r / p.q_len, t = r % p.q_len, g = u / group;
    if (l > 0.0f) {
      const float inv = 1.0f / l;
      for (int64_t d = 0; d < D; ++d) tmp[d] *= inv;
    } else if (p.fully_masked_uniform) {
      const T* v = static_cast<const T*>(p.v) + b * p.v_stride_b + g * p.v_stride_h;
      for (int64_t j = 0; j < p.kv_len; ++j) {
        for (int64_t d = 0; d < D; ++d) tmp[d] += ToF32<T>(v[j * p.v_stride_s + d]);
      }
      const float inv = 1.0f / static_cast<float>(p.kv_len);
      for (int64_t d = 0; d < D; ++d) tmp[d] *= inv;
    }
    const int64_t at = b * p.out_stride_b + t * p.out_stride_t + u * p.out_stride_h;
    if (p.out_type == ElemType::kF16) {
      uint16_t* o = static_cast<uint16_t*>(p.out) + at;
      for (int64_t d = 0; d < D; ++d) o[d] = FloatToHalf(tmp[d]);
    } else {
      memcpy(static_cast<float*>(p.out) + at, tmp, static_cast<size_t>(D) * 4);
    }
  }
}

struct DecodeContext {
  const AttentionParams* p;
  const AttentionPlan* plan;
  unsigned char* slots;
  float* partials;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> next_merge{0};
};

template <typename TQ, typename T>
void DecodeSlotTask(void* context, size_t slot) {
  DecodeContext& ctx = *static_cast<DecodeContext*>(context);
  const DecodeScratch sc = CarveDecodeSlot(
      *ctx.p, *ctx.plan, ctx.slots + slot * static_cast<size_t>(ctx.plan->slot_bytes));
  for (;;) {
    const int64_t i = ctx.next.fetch_add(1, std::memory_order_relaxed);
    if (i >= ctx.plan->items) break;
    DecodeItem<TQ, T>(*ctx.p, *ctx.plan, i, sc, ctx.partials);
  }
}

template <typename T>
void DecodeMergeTask(void* context, size_t slot) {
  DecodeContext& ctx = *static_cast<DecodeContext*>(context);
  // The slot's accumulator region is free now: use it as the row buffer.
  const DecodeScratch sc = CarveDecodeSlot(
      *ctx.p, *ctx.plan, ctx.slots + slot * static_cast<size_t>(ctx.plan->slot_bytes));
  const int64_t heads = ctx.p->batch;
  for (;;) {
    const int64_t i = ctx.next_merge.fetch_add(1, std::memory_order_relaxed);
    if (i >= heads) break;
    DecodeMerge<T>(*ctx.p, *ctx.plan, i, ctx.partials, sc.acc);
  }
}

void RunDecode(const AttentionParams& p, const AttentionPlan& plan, void* workspace,
               int64_t slots, pthreadpool_t pool) {
  DecodeContext ctx;
  ctx.p = &p;
  ctx.plan = &plan;
  ctx.partials = static_cast<float*>(workspace);
  ctx.slots = static_cast<unsigned char*>(workspace) + plan.shared_bytes;
  const bool q16 = p.q_type == ElemType::kF16, kv16 = p.kv_type == ElemType::kF16;
  const pthreadpool_task_1d_t fn = q16 ? (kv16 ? &DecodeSlotTask<uint16_t, uint16_t>
                                               : &DecodeSlotTask<uint16_t, float>)
                                       : (kv16 ? &DecodeSlotTask<float, uint16_t>
                                               : &DecodeSlotTask<float, float>);
  int64_t n = slots < plan.items ? slots : plan.items;
  pthreadpool_parallelize_1d(pool, fn, &ctx, static_cast<size_t>(n), 0);
  const int64_t heads = p.batch;
  n = slots < heads ? slots : heads;
  pthreadpool_parallelize_1d(pool, kv16 ? &DecodeMergeTask<uint16_t> : &DecodeMergeTask<float>,
                             &ctx, static_cast<size_t>(n), 0);
}

// The core's two entry points: the plan (workspace) and the run, each
// choosing the decode or the flash path the same way.
// The workspace must not depend on the call's flags (scores, masks,
// dropout pick the path), so where the decode path may serve these shapes
// the slots fit both paths and the decode partials are always reserved.
void MakePlanImpl(const AttentionParams& p, AttentionPlan* plan) {
  AttentionPlan flash;
  MakeFlashPlan(p, &flash);
  if ((p.q_heads / p.kv_heads) * p.q_len > kDecodeMaxRows) {
    *plan = flash;
    return;
  }
  AttentionPlan decode;
  MakeDecodePlan(p, &decode);
  *plan = UseDecode(p) ? decode : flash;
  plan->slot_bytes = flash.slot_bytes > decode.slot_bytes ? flash.slot_bytes : decode.slot_bytes;
  plan->shared_bytes = decode.shared_bytes;
}

void RunAttentionImpl(const AttentionParams& p, void* workspace, int64_t slots,
                      pthreadpool_t pool) {
  AttentionPlan plan;
  MakePlanImpl(p, &plan);
  if (plan.decode) {
    RunDecode(p, plan, workspace, slots, pool);
  } else {
    RunFlash(p, plan, workspace, slots, pool);
  }
}

}  // namespace HWY_NAMESPACE
}  // namespace gqa
HWY_AFTER_NAMESPACE();

#endif  // include guard per target
