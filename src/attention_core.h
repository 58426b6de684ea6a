// The attention core's internal interface: the plan a kernel makes for an
// AttentionParams (src/attention_params.h), and the plan / run entry points,
// one dynamic dispatch each to the best Highway target.
#ifndef GQA_SRC_ATTENTION_CORE_H_
#define GQA_SRC_ATTENTION_CORE_H_

#include <pthreadpool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/attention_params.h"

namespace gqa {

struct QkInt8Kernels;  // platforms/qk_int8.h
struct F16FmlKernels;  // platforms/f16_fml.h

// The kernels the core chooses between (kernel selection:
// src/kernels/select_kernel-inl.h). Room for more (e.g. a quantized-KV one).
enum class AttentionKernel : int {
  kFlash = 0,   // tiled streaming attention, any shapes and flags
  kDecode = 1,  // few query rows per kv head: keys split in fixed chunks
};

// How one kernel of the current Highway target splits a call (what the
// kernels read; callers read AttentionPlan).
struct KernelPlan {
  int64_t lanes = 0;             // f32 lanes of the target
  int64_t block_positions = 0;   // Tb: query positions per work item
  int64_t rows = 0;              // G * Tb query rows per item (decode: Hq*T)
  int64_t rows_padded = 0;       // Mp
  int64_t dim_padded = 0;        // Dp: D padded (q and k rows)
  int64_t value_dim_padded = 0;  // Dvp: Dv padded (v rows, accumulators)
  int64_t keys_per_tile = 0;     // Bk
  int64_t blocks_per_head = 0;   // ceil(T / Tb)
  int64_t items = 0;             // flash: B*Hkv*blocks_per_head; decode:
                                 // B*splits
  // Workspace layout the kernel runs in: slots of slot_bytes start at
  // shared_bytes (both the whole plan's, which fit every kernel in it).
  int64_t slot_bytes = 0;
  int64_t shared_bytes = 0;
  // Decode: keys split in fixed chunks, partial (max, sum, acc) per chunk
  // merged in chunk order.
  int64_t splits = 0;      // chunks of the key axis per batch
  int64_t split_keys = 0;  // keys per chunk
  // Decode of q8 / q4 blocked keys: the integer q.k kernels when the call
  // allows them (AttentionParams::qk_int8) and the CPU has them, else null.
  const QkInt8Kernels* qk_int8 = nullptr;
  // Bytes of one prepared query row for them (reserved in the slots
  // whenever the CPU has them, whatever the call's qk_int8: the workspace
  // does not depend on it), 0 where none.
  int64_t qk_int8_row_bytes = 0;
  // Decode of f16 K/V: the FEAT_FHM (FMLAL) q.k and p.v where the CPU has
  // them, the head dims allow and the platform-kernel mode is `on` (the
  // default; platforms/platform_kernels.h), else null.
  const F16FmlKernels* f16_fml = nullptr;
};

// The plan of a call's shapes on the current Highway target. The flags
// (scores, general mask, query mask, dropout) may differ from call to call
// and never change the workspace: `kernel` is the kernel these shapes get,
// and a call with flags it lacks runs flash, whose split the plan always
// holds. Made by PlanAttention, used as is by RunAttention.
struct AttentionPlan {
  AttentionKernel kernel = AttentionKernel::kFlash;
  int64_t target = 0;      // the Highway target that made the plan
  KernelPlan flash;        // always made
  KernelPlan decode;       // made when kernel == kDecode
  int64_t slot_bytes = 0;  // scratch of one worker (64-byte multiple)
  // Before the slots: the decode partials [B*splits][Hq*T][Dp + 2] f32
  // where the decode kernel serves the shapes, else 0.
  int64_t shared_bytes = 0;
};

// The plan for p's shapes on the best target the CPU has (one dynamic
// dispatch). Its sizes depend on the shapes only, never on the flags, so
// one plan and one workspace serve every call of those shapes.
AttentionPlan PlanAttention(const AttentionParams& p);

// Workspace of RunAttention for `slots` concurrent workers: one slot each,
// plus the shared partial results of the decode path. Independent of S.
inline int64_t AttentionWorkspaceBytes(const AttentionPlan& plan,
                                       int64_t slots) {
  return plan.shared_bytes + plan.slot_bytes * slots;
}

// Position of query t of batch b, and of the key in slot j.
inline int64_t QueryPosition(const AttentionParams& p, int64_t b, int64_t t) {
  return (p.position_offsets ? p.position_offsets[b] : p.position_offset) + t;
}
inline int64_t KeyPosition(const AttentionParams& p, int64_t b, int64_t j) {
  if (p.ring_capacity == 0) return j;
  const int64_t last = p.key_lengths[b] - 1;
  return last -
         ((last - j) % p.ring_capacity + p.ring_capacity) % p.ring_capacity;
}

// Draft d of batch b's tree row t is visible (p.tree_mask set).
inline bool TreeOpen(const AttentionParams& p, int64_t b, int64_t t,
                     int64_t d) {
  return p.tree_mask[b * p.tree_stride_batch + t * p.q_len + d] != 0;
}

// Computes out (and scores) for p with at most `slots` workers, with the
// plan PlanAttention made for p's shapes (any flags; the workspace holds
// AttentionWorkspaceBytes(plan, slots), 64-byte aligned). One dynamic
// dispatch; the plan is not recomputed, only its kernel or flash chosen by
// p's flags. Plan and run under the same Highway target (a plan made for
// another aborts). Inputs are assumed validated. Results are bitwise
// identical for any pool size and slots.
void RunAttention(const AttentionParams& p, const AttentionPlan& plan,
                  void* workspace, int64_t slots, pthreadpool_t pool);

// The seeded dropout draw: keep decision for flat probability index `index`
// of [B, Hq, T, S]. A counter-based hash (splitmix64 finaliser), so every
// element's draw is independent of tiling and thread count. Keeps with
// probability 1 - rate, to 2^-24 resolution.
inline bool DropoutKeep(uint64_t seed, uint64_t index, float rate) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (index + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  const float u = static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
  return u < 1.0f - rate;
}

}  // namespace gqa

#endif  // GQA_SRC_ATTENTION_CORE_H_
