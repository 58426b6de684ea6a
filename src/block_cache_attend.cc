// KV cache v2, the reading side: the attend (its arguments against a
// validated cache, the plan of the core over the blocks, whose kernels read
// the table and dequantize; the rotation of q and of the output for rotating
// caches) and the read-back of a stored row, with their C ABI.
#include <pthreadpool.h>
#include <string.h>

#include "gqa/block_cache.h"
#include "src/attention_core.h"
#include "src/block_cache.h"
#include "src/elementwise.h"
#include "src/half.h"
#include "src/operator.h"
#include "src/quantize.h"
#include "src/status.h"

namespace gqa {
namespace {

int64_t Round64(int64_t x) { return (x + 63) / 64 * 64; }

// A stored row dequantized to f32.
void LoadRow(int32_t dtype, const unsigned char* codes,
             const unsigned char* scales, int64_t n, float* out) {
  const uint16_t* s = reinterpret_cast<const uint16_t*>(scales);
  switch (dtype) {
    case GQA_DTYPE_F32:
      memcpy(out, codes, static_cast<size_t>(n) * 4);
      break;
    case GQA_DTYPE_F16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        memcpy(&h, codes + 2 * i, 2);
        out[i] = HalfToFloat(h);
      }
      break;
    case GQA_DTYPE_Q8:
      DequantizeRowQ8(reinterpret_cast<const int8_t*>(codes), s[0], n, out);
      break;
    default:
      DequantizeRowQ4(codes, s, n, out);
      break;
  }
}

ElemType CacheElem(int32_t d) {
  switch (d) {
    case GQA_DTYPE_F16:
      return ElemType::kF16;
    case GQA_DTYPE_Q8:
      return ElemType::kQ8;
    case GQA_DTYPE_Q4:
      return ElemType::kQ4;
    default:
      return ElemType::kF32;
  }
}

// The core's view of the attend: q, out and the query offsets are bound
// by RunBlockAttend.
AttentionParams CoreParams(const BlockCacheView& v,
                           const gqa_kv_attend_params& a) {
  const gqa_block_cache& c = *v.cache;
  const gqa_block_cache_config& cf = c.config;
  const gqa_block_cache_layout& l = v.layout;
  AttentionParams p;
  p.batch = cf.batch;
  p.q_len = a.q_len;
  p.kv_len = cf.capacity;
  p.q_heads = a.q_heads;
  p.kv_heads = cf.kv_heads;
  p.head_dim = cf.head_dim;
  p.value_dim = v.value_dim;
  p.q_stride_head = cf.head_dim;
  p.q_stride_token = a.q_heads * cf.head_dim;
  p.q_stride_batch = a.q_len * p.q_stride_token;
  // A rotating cache attends with rotated f32 queries into f32 rows.
  p.q_type = v.rotate ? ElemType::kF32 : ToElem(a.q_dtype);
  p.out_type = v.rotate ? ElemType::kF32 : ToElem(a.out_dtype);
  p.kv_type = CacheElem(cf.dtype);
  p.qk_int8 = (cf.flags & GQA_BLOCK_CACHE_INT8_QK) != 0;
  KvBlocks& kb = p.kv_blocks;
  kb.pool = static_cast<const unsigned char*>(c.blocks);
  kb.table = c.block_table;
  kb.table_stride = l.table_columns;
  kb.block_tokens = cf.block_tokens;
  kb.block_bytes = l.block_bytes;
  kb.k_codes = l.k_codes;
  kb.k_scales = l.k_scales;
  kb.v_codes = l.v_codes;
  kb.v_scales = l.v_scales;
  kb.k_row_bytes = l.k_row_bytes;
  kb.v_row_bytes = l.v_row_bytes;
  kb.k_row_scales = l.k_row_scales;
  kb.v_row_scales = l.v_row_scales;
  p.out_stride_head = v.value_dim;
  p.out_stride_token = a.q_heads * v.value_dim;
  p.out_stride_batch = a.q_len * p.out_stride_token;
  p.scale = ResolveScale(a.scale, cf.head_dim);
  p.causal = true;
  p.key_lengths = c.lengths;
  p.ring_capacity = v.ring ? cf.capacity : 0;
  p.sliding_window = EffectiveWindow(a.sliding_window);
  p.fully_masked_uniform = UniformFullyMasked(a.fully_masked_policy, false);
  p.softcap = a.softcap;
  p.alibi_slopes = a.alibi_slopes;
  p.sinks = a.sinks;
  p.tree_mask = a.tree_mask;
  p.tree_stride_batch = a.q_len * a.q_len;
  p.held_from = v.ring ? c.held_from : nullptr;
  return p;
}

}  // namespace

gqa_status ValidateBlockAttend(const BlockCacheView& v,
                               const gqa_kv_attend_params* a,
                               bool need_pointers, CacheRope* q_rope) {
  const gqa_block_cache& c = *v.cache;
  const gqa_block_cache_config& cf = c.config;
  CacheShape shape;
  shape.batch = cf.batch, shape.kv_heads = cf.kv_heads;
  shape.head_dim = cf.head_dim, shape.capacity = cf.capacity;
  shape.value_dim = v.value_dim;
  shape.ring = v.ring;  // dtype f32: q8/q4 take the rules of f32 and f16
  gqa_status s = ValidateCacheAttendArgs(shape, a, need_pointers);
  if (s != GQA_STATUS_OK) return s;
  if ((s = ValidateCacheRope(a->q_rope, a->q_positions, cf.batch, a->q_len,
                             nullptr, cf.head_dim, need_pointers, "q_rope",
                             q_rope)) != GQA_STATUS_OK ||
      !need_pointers) {
    return s;
  }
  // out is written while q and the cache are read.
  const int64_t q_elems = cf.batch * a->q_len * a->q_heads * cf.head_dim;
  const int64_t o_elems = cf.batch * a->q_len * a->q_heads * v.value_dim;
  const int64_t cols = v.layout.table_columns;
  const ByteRange out = RangeOf(a->out, o_elems, DtypeBytes(a->out_dtype));
  const ByteRange ins[5] = {
      RangeOf(a->q, q_elems, DtypeBytes(a->q_dtype)),
      RangeOf(c.blocks, c.num_blocks * v.layout.block_bytes, 1),
      RangeOf(c.block_table, cf.batch * cols, 4),
      RangeOf(c.lengths, cf.batch, 8),
      RangeOf(a->q_positions, cf.batch * a->q_len, 8)};
  for (const ByteRange& in : ins) {
    if (Overlap(out, in)) {
      return Fail(GQA_STATUS_INVALID_ARGUMENT,
                  "`out` overlaps q, q_positions or the cache (outputs must "
                  "not alias inputs)");
    }
  }
  const gqa_status fit = CachedQueriesFit(c.lengths, cf.batch, a->q_len);
  if (fit != GQA_STATUS_OK) return fit;
  return CheckAttendHeld(PositionsOf(v), a->q_len,
                         EffectiveWindow(a->sliding_window));
}

BlockAttendPlan PlanBlockAttend(const BlockCacheView& v,
                                const gqa_kv_attend_params& a,
                                const CacheRope* q_rope) {
  BlockAttendPlan ap;
  ap.core = CoreParams(v, a);
  ap.q_rope = q_rope && q_rope->on ? q_rope : nullptr;
  // Staged queries are packed f32.
  if (ap.q_rope) ap.core.q_type = ElemType::kF32;
  ap.plan = PlanAttention(ap.core);
  const gqa_block_cache_config& cf = v.cache->config;
  ap.offsets_bytes = Round64(cf.batch * 8);
  // Staged q [B*T][Hq][D] and rotated out [B*T][Hq][Dv] in f32.
  const int64_t rows = cf.batch * a.q_len * a.q_heads;
  ap.q_rows_bytes = v.rotate || ap.q_rope ? Round64(rows * cf.head_dim * 4) : 0;
  ap.out_rows_bytes = v.rotate ? Round64(rows * v.value_dim * 4) : 0;
  ap.need.fixed = ap.offsets_bytes + ap.q_rows_bytes + ap.out_rows_bytes +
                  ap.plan.shared_bytes;
  ap.need.slot = ap.plan.slot_bytes;
  ap.q_f16 = a.q_dtype == GQA_DTYPE_F16;
  ap.out_f16 = a.out_dtype == GQA_DTYPE_F16;
  return ap;
}

void RunBlockAttend(const BlockCacheView& v, const BlockAttendPlan& ap,
                    const void* q, int64_t q_token_stride, void* out,
                    void* workspace, int64_t slots, pthreadpool_t pool) {
  const gqa_block_cache& c = *v.cache;
  unsigned char* ws = static_cast<unsigned char*>(workspace);
  int64_t* offsets = reinterpret_cast<int64_t*>(ws);
  for (int64_t b = 0; b < c.config.batch; ++b) {
    offsets[b] = c.lengths[b] - ap.core.q_len;
  }
  AttentionParams p = ap.core;
  const int64_t D = p.head_dim, Hq = p.q_heads;
  const int64_t rows = p.batch * p.q_len * Hq;
  const int64_t qs = q_token_stride > 0 ? q_token_stride : Hq * D;
  float* q_rot = reinterpret_cast<float*>(ws + ap.offsets_bytes);
  float* out_rot =
      reinterpret_cast<float*>(ws + ap.offsets_bytes + ap.q_rows_bytes);
  if (ap.q_rope) {
    // q [B*T][Hq][D] -> RoPE(q) (H), packed f32.
    StageRopeQueries(*ap.q_rope, c.lengths, p.batch, p.q_len, Hq, q, ap.q_f16,
                     q_token_stride, q_rot);
    if (v.rotate) {
      for (int64_t r = 0; r < rows; ++r) RotateRowF32(q_rot + r * D, D);
    }
    p.q = q_rot;
  } else if (v.rotate) {
    // q [B*T][Hq][D] -> q H, packed f32.
    for (int64_t bt = 0; bt < p.batch * p.q_len; ++bt) {
      for (int64_t u = 0; u < Hq; ++u) {
        float* dst = q_rot + (bt * Hq + u) * D;
        const int64_t at = bt * qs + u * D;
        if (ap.q_f16) {
          ConvertF16ToF32(static_cast<const uint16_t*>(q) + at, dst,
                          static_cast<size_t>(D));
        } else {
          memcpy(dst, static_cast<const float*>(q) + at,
                 static_cast<size_t>(D) * 4);
        }
        RotateRowF32(dst, D);
      }
    }
    p.q = q_rot;
  } else {
    p.q = q;
    if (q_token_stride > 0) {
      p.q_stride_token = q_token_stride;
      p.q_stride_batch = p.q_len * q_token_stride;
    }
  }
  p.out = v.rotate ? static_cast<void*>(out_rot) : out;
  p.position_offsets = offsets;
  RunAttention(p, ap.plan,
               ws + ap.offsets_bytes + ap.q_rows_bytes + ap.out_rows_bytes,
               slots, pool);
  if (v.rotate) {
    // out = (sum p v H) H, then in out_dtype.
    const int64_t Dv = v.value_dim;
    for (int64_t r = 0; r < rows; ++r) {
      float* row = out_rot + r * Dv;
      RotateRowF32(row, Dv);
      if (ap.out_f16) {
        ConvertF32ToF16(row, static_cast<uint16_t*>(out) + r * Dv,
                        static_cast<size_t>(Dv));
      } else {
        memcpy(static_cast<float*>(out) + r * Dv, row,
               static_cast<size_t>(Dv) * 4);
      }
    }
  }
}

}  // namespace gqa

extern "C" {

gqa_status gqa_block_cache_attend_workspace_size(
    const gqa_block_cache* cache, const gqa_kv_attend_params* params,
    int64_t max_threads, size_t* size_out) {
  if (!size_out) return gqa::Fail(GQA_STATUS_NULL_POINTER, "size_out is NULL");
  if (max_threads <= 0) {
    return gqa::Fail(GQA_STATUS_INVALID_SIZE, "max_threads must be > 0");
  }
  gqa::BlockCacheView v;
  gqa_status s = gqa::ValidateBlockCache(cache, &v);
  if (s != GQA_STATUS_OK) return s;
  gqa::CacheRope q_rope;
  s = gqa::ValidateBlockAttend(v, params, /*need_pointers=*/false, &q_rope);
  if (s != GQA_STATUS_OK) return s;
  const gqa::BlockAttendPlan plan = gqa::PlanBlockAttend(v, *params, &q_rope);
  return gqa::WorkspaceSizeFor(plan.need, max_threads, size_out);
}

gqa_status gqa_block_cache_attend(const gqa_block_cache* cache,
                                  const gqa_kv_attend_params* params,
                                  void* workspace, size_t workspace_size,
                                  pthreadpool_t threadpool) {
  gqa::BlockCacheView v;
  gqa_status s = gqa::ValidateBlockCache(cache, &v);
  if (s != GQA_STATUS_OK) return s;
  gqa::CacheRope q_rope;
  s = gqa::ValidateBlockAttend(v, params, /*need_pointers=*/true, &q_rope);
  if (s != GQA_STATUS_OK) return s;
  const gqa::BlockAttendPlan plan = gqa::PlanBlockAttend(v, *params, &q_rope);
  int64_t slots = 0;
  if ((s = gqa::FitWorkspace(plan.need, workspace, workspace_size, threadpool,
                             &slots)) != GQA_STATUS_OK) {
    return s;
  }
  gqa::RunBlockAttend(v, plan, params->q, 0, params->out, workspace, slots,
                      threadpool);
  return GQA_STATUS_OK;
}

gqa_status gqa_block_cache_read(const gqa_block_cache* cache, int64_t batch,
                                int64_t position, int64_t head, float* k_row,
                                float* v_row) {
  gqa::BlockCacheView v;
  gqa_status s = gqa::ValidateBlockCache(cache, &v);
  if (s != GQA_STATUS_OK) return s;
  const gqa_block_cache_config& cf = cache->config;
  if (!k_row || !v_row) {
    return gqa::Fail(GQA_STATUS_NULL_POINTER, "k_row or v_row is NULL");
  }
  if (batch < 0 || batch >= cf.batch || head < 0 || head >= cf.kv_heads) {
    return gqa::Fail(GQA_STATUS_INVALID_ARGUMENT,
                     "batch %lld or kv head %lld is out of range",
                     static_cast<long long>(batch),
                     static_cast<long long>(head));
  }
  const int64_t len = cache->lengths[batch];
  // A ring holds the last `capacity` positions, or fewer (held_from).
  const int64_t first = gqa::HeldFrom(gqa::PositionsOf(v), batch);
  if (position < first || position >= len) {
    return gqa::Fail(
        GQA_STATUS_INVALID_ARGUMENT,
        "position %lld is not held by batch %lld (it holds [%lld, "
        "%lld))",
        static_cast<long long>(position), static_cast<long long>(batch),
        static_cast<long long>(first), static_cast<long long>(len));
  }
  const int64_t pool = cache->num_blocks * v.layout.block_bytes;
  const gqa::ByteRange in = gqa::RangeOf(cache->blocks, pool, 1);
  if (gqa::Overlap(gqa::RangeOf(k_row, cf.head_dim, 4), in) ||
      gqa::Overlap(gqa::RangeOf(v_row, v.value_dim, 4), in) ||
      gqa::Overlap(gqa::RangeOf(k_row, cf.head_dim, 4),
                   gqa::RangeOf(v_row, v.value_dim, 4))) {
    return gqa::Fail(GQA_STATUS_INVALID_ARGUMENT,
                     "k_row / v_row overlap each other or the cache");
  }
  const int64_t slot = v.ring ? position % cf.capacity : position;
  const unsigned char* blk = gqa::BlockOf(v, batch, slot / cf.block_tokens);
  const int64_t r = (slot % cf.block_tokens) * cf.kv_heads + head;
  const gqa_block_cache_layout& l = v.layout;
  gqa::LoadRow(cf.dtype, blk + l.k_codes + r * l.k_row_bytes,
               blk + l.k_scales + r * l.k_row_scales * 2, cf.head_dim, k_row);
  gqa::LoadRow(cf.dtype, blk + l.v_codes + r * l.v_row_bytes,
               blk + l.v_scales + r * l.v_row_scales * 2, v.value_dim, v_row);
  return GQA_STATUS_OK;
}

}  // extern "C"
