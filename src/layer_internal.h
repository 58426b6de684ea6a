// The layer object and the steps its forwards share (src/layer_create.cc
// builds it; src/layer_forward.cc and src/layer_cached.cc run it; the steps
// are in src/layer_steps.cc).
//
// A forward: ValidateForward (once) -> its plan (the workspace regions plus
// the one core plan) -> FitAndProject -> the core (or append + attend for
// the cached forward) -> Finish (gate, output projection).
#ifndef GQA_SRC_LAYER_INTERNAL_H_
#define GQA_SRC_LAYER_INTERNAL_H_

#include <stddef.h>
#include <stdint.h>

#include "gqa/gqa.h"
#include "gqa/kv_cache.h"
#include "src/attention_core.h"
#include "src/operator.h"
#include "src/projection.h"

struct gqa_layer {
  gqa_layer_config config;
  bool f16 = false;      // dtype f16: inputs and outputs are f16
  int64_t q_width = 0;   // Hq*D
  int64_t kv_width = 0;  // Hkv*D
  gqa::Projection query, key, value, gate, output;
  unsigned char* storage = nullptr;  // f16 path: the packed weights

  ~gqa_layer() { delete[] storage; }
};

namespace gqa {

// The workspace of one forward, carved in this order; each region starts
// 64-byte aligned and ends with XNN_EXTRA_BYTES of slack so XNNPACK may
// over-read it. Byte offsets; -1: absent.
struct LayerPlan {
  int64_t q = -1, k = -1, v = -1, gate = -1, attn = -1;
  int64_t tail = -1;        // f32: one padded input row (see Projection::Run)
  int64_t x32 = -1;         // f16: the widest input converted to f32
  int64_t out32 = -1;       // f16: output rows in f32 before conversion
  int64_t core = 0;         // the core's workspace starts here
  AttentionPlan attention;  // the plain forward's core plan
  WorkspaceNeed need;       // regions + core shared, then core slots
};

// The core's shapes for a call ([B, T] queries against [B, S] keys).
AttentionParams CoreShape(const gqa_layer& L, int64_t B, int64_t T, int64_t S);

// Carves the projection regions for [B, T] queries and [B, S] keys; false
// on overflow. need.fixed is the regions' bytes (the core is added by the
// caller: PlanForward, or the cached forward's attend plan).
bool PlanRegions(const gqa_layer& L, int64_t B, int64_t T, int64_t S,
                 LayerPlan* plan);

// batch, query_len, value_len as a forward takes them (> 0, positions
// below kMaxPosition, every tensor's size representable).
gqa_status ValidateShape(const gqa_layer& L, int64_t B, int64_t T, int64_t S);
// Everything about a forward's arguments (shapes, pointers, aliasing, mask
// rank and broadcast).
gqa_status ValidateForward(const gqa_layer* L, const gqa_forward_args* a);

// The caller's workspace against plan (FitWorkspace: how many core workers
// fit into *slots), then 1. the projections: q [B*T, Hq*D], k and v
// [B*S, Hkv*D], gate logits, into the regions of plan (row strides: each
// projection's ldc).
gqa_status FitAndProject(const gqa_layer& L, const gqa_forward_args& a,
                         const LayerPlan& plan, void* workspace,
                         size_t workspace_size, pthreadpool_t pool,
                         int64_t* slots);
// The cached forwards (v1 cache: layer_cached.cc, v2: layer_block_cached.cc)
// share these: the call's own rules (value_len == query_len, no masks,
// scores or training), the attend parameters of T new tokens, and the
// workspace: projection regions for T tokens, then the attend's `need`.
gqa_status ValidateCachedArgs(const gqa_layer* L, const gqa_forward_args* a);
// A cached forward's attention_mask, when given, is the draft tree of its
// T new tokens: rank 2 (T, T) or rank 3 (B|1, T, T); *stride_batch is the
// tree's batch stride (0: broadcast). No mask: *tree null.
gqa_status CachedTreeMask(const gqa_forward_args& a, const uint8_t** tree,
                          int64_t* stride_batch);
gqa_kv_attend_params CachedAttendParams(const gqa_layer& L, int64_t T,
                                        const void* q, void* out);
bool PlanCachedRegions(const gqa_layer& L, int64_t B, int64_t T,
                       const WorkspaceNeed& attend, LayerPlan* plan);
// 3. Gate and 4. output projection from the attn region: output [B*T, Fq].
gqa_status Finish(const gqa_layer& L, const gqa_forward_args& a,
                  const LayerPlan& plan, unsigned char* ws, pthreadpool_t pool);

}  // namespace gqa

#endif  // GQA_SRC_LAYER_INTERNAL_H_
