/* gqa attention core C ABI: grouped-query attention over pre-projected
 * q/k/v, for runtimes that do their own projections (LLMs, KV caches).
 *
 *   out[b,t,u,:] = sum_s softmax_s(scale * q[b,t,u,:] . k[b,s,g,:]) v[b,s,g,:]
 *   with g = u / (Hq / Hkv), over the keys s the masks allow.
 *
 * Tensors are strided views, strides in elements (not bytes), the head_dim
 * axis contiguous:
 *   q   [B, T, Hq,  D]   k [B, S, Hkv, D]   v [B, S, Hkv, Dv]
 *   out [B, T, Hq, Dv]   (Dv = value_dim, or D where it is 0)
 * All three strides 0 means token-major contiguous ([B][T][H][D]); a
 * head-major tensor ([B][H][T][D]) is described by its strides.
 * q, k/v and out may each be f32 or f16 (IEEE binary16); arithmetic, the
 * softmax and accumulation are f32, with one exception: on AArch64 CPUs
 * with FEAT_FHM (`asimdfhm` in /proc/cpuinfo; Armv8.4+ cores with FP16,
 * e.g. Cortex-A510/A710/X2, Apple M1), the decode kernel (few query rows
 * per kv head, as in a KV-cache step) rounds the scaled q rows and the
 * probabilities to f16 for f16 K/V and multiplies them with FMLAL
 * (products exact, sums f32). That moves O(1) outputs by up to ~2e-3
 * against ~1e-6 in f32; GQA_PLATFORM_KERNELS=exact in the environment
 * (read once) keeps f32 there. Calls never allocate, and results are
 * bitwise identical for any thread count.
 *
 * Threads: the core holds no state. Any number of threads may call
 * gqa_attention at once, each with its own out, scores and workspace
 * (inputs may be shared); pools may be shared or distinct.
 */
#ifndef GQA_ATTENTION_H_
#define GQA_ATTENTION_H_

#include "gqa/gqa.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gqa_attention_params {
  int64_t batch;    /* B */
  int64_t q_len;    /* T: new queries */
  int64_t kv_len;   /* S: keys/values */
  int64_t q_heads;  /* Hq */
  int64_t kv_heads; /* Hkv, divides Hq */
  int64_t head_dim; /* D */

  const void* q;
  int64_t q_stride_batch, q_stride_token, q_stride_head;
  int32_t q_dtype; /* gqa_dtype */
  const void* k;
  int64_t k_stride_batch, k_stride_token, k_stride_head;
  const void* v;
  int64_t v_stride_batch, v_stride_token, v_stride_head;
  int32_t kv_dtype; /* gqa_dtype of k and v */
  void* out;
  int64_t out_stride_batch, out_stride_token, out_stride_head;
  int32_t out_dtype; /* gqa_dtype */

  float scale; /* multiplies q.k; 0: 1/sqrt(D) */

  /* Top-left causal with an offset: query t (absolute position
   * position_offset + t) sees keys s <= position_offset + t. */
  int32_t causal;
  int64_t position_offset; /* >= 0 */
  int64_t sliding_window;  /* 0: none; else |position - s| < window */
  /* Per-batch number of valid keys [B] (each in [0, S]), or NULL. */
  const int64_t* key_lengths;
  /* [B, S] uint8 key mask (nonzero = may attend), or NULL. */
  const uint8_t* key_mask;
  /* General mask, read in place: element (b, u, t, s) at
   * mask[b*mask_stride_batch + u*mask_stride_head + t*mask_stride_query +
   *      s*mask_stride_key]; stride 0 broadcasts an axis. NULL: none. */
  const uint8_t* mask;
  int64_t mask_stride_batch, mask_stride_head, mask_stride_query,
      mask_stride_key;
  /* Rows with no allowed key: GQA_FULLY_MASKED_KERAS (zero when scores are
   * requested, else uniform), _ZERO or _UNIFORM (mean of all S values). */
  int32_t fully_masked_policy;

  /* Optional probabilities [B, Hq, T, S] (contiguous), or NULL. */
  void* scores;
  int32_t scores_dtype; /* gqa_dtype */

  /* LLM logit options (shared/spec/llm-attention-semantics.md sections
   * 2-3), applied in this order to x = scale * q.k of query head u at
   * position pq = position_offset + t and key s (position pk = s), before
   * the masks. All zero / NULL: off, at no cost. */
  /* > 0: logit softcap, x = softcap * tanh(x / softcap) (Gemma 2). 0: off;
   * negative, NaN or infinite: GQA_STATUS_INVALID_ARGUMENT. */
  float softcap;
  /* [Hq] finite ALiBi slopes: x -= alibi_slopes[u] * |pq - pk| (BLOOM,
   * MPT); gqa_alibi_slopes() gives the standard ones. NULL: none. */
  const float* alibi_slopes;
  /* Additive f32 bias read in place: x += bias[b*bias_stride_batch +
   * u*bias_stride_head + t*bias_stride_query + s*bias_stride_key]; stride 0
   * broadcasts an axis (all four 0: one value). A -inf bias masks the key;
   * NaN propagates. NULL: none. */
  const float* bias;
  int64_t bias_stride_batch, bias_stride_head, bias_stride_query,
      bias_stride_key;
  /* [Hq] finite learned sink logits (gpt-oss): one extra logit per head in
   * the softmax that carries no value, so the weights sum below 1, and a
   * row with every key masked gives out = 0 (the fully-masked policy does
   * not apply). Scores exclude the sink. NULL: none. */
  const float* sinks;
  /* Dv, the head size of v and out (DeepSeek MLA-style models): v is
   * [B, S, Hkv, Dv] and out [B, T, Hq, Dv]; q and k keep head_dim. 0: Dv =
   * head_dim. */
  int64_t value_dim;
} gqa_attention_params;

/* The standard ALiBi slopes of `heads` heads for max_bias (BLOOM's
 * geometric sequence, as ggml's max_bias): with n = 2^floor(log2(heads)),
 * head h < n gets 2^(-max_bias * (h + 1) / n) and head h >= n gets
 * 2^(-max_bias * (2 * (h - n) + 1) / (2 n)). Written to slopes[0, heads).
 * Errors: heads <= 0 or > 2^24, max_bias not finite and > 0. */
GQA_API gqa_status gqa_alibi_slopes(int64_t heads, float max_bias,
                                    float* slopes);

/* Zeroes *params; then every field has its default (f32, token-major,
 * scale 1/sqrt(D), no masks). */
GQA_API void gqa_attention_params_init(gqa_attention_params* params);

/* Workspace bytes for these shapes, run with a pool of up to max_threads
 * threads (1: no pool). It depends on B, T, Hq, Hkv, D and max_threads, not
 * on masks, flags, dtypes or pointers, and on kv_len only where the decode
 * kernel may serve the shape ((Hq / Hkv) * T <= 32): there it grows with
 * kv_len up to kv_len = 8192 (the key axis is split in up to 16 chunks of at
 * least 512 keys, one partial result each) and is the same for every
 * kv_len >= 8192. To decode into a growing cache with one workspace, size it
 * with the largest kv_len you will pass (or any kv_len >= 8192).
 * Errors: GQA_STATUS_SIZE_OVERFLOW when the size does not fit a size_t. */
GQA_API gqa_status gqa_attention_workspace_size(
    const gqa_attention_params* params, int64_t max_threads, size_t* size_out);

/* Runs attention. workspace: aligned to GQA_WORKSPACE_ALIGNMENT, at least
 * the size for max_threads = 1; a bigger pool uses as many threads as the
 * workspace has room for. On failure nothing is written.
 * Limits (each a status, never a wrapped size): positions
 * position_offset + T and kv_len <= 2^24; every view's reach and
 * B*T*Hq*D <= 2^48 elements; B*Hq*T*S < 2^60. A sliding_window >= 2^24 is
 * wider than any distance between positions and acts as none.
 * Aliasing is rejected (GQA_STATUS_INVALID_ARGUMENT): out and scores must
 * not overlap q, k, v, the masks, key_lengths or each other, and out's
 * strides must give every (b, t, u) row its own D elements. */
GQA_API gqa_status gqa_attention(const gqa_attention_params* params,
                                 void* workspace, size_t workspace_size,
                                 pthreadpool_t threadpool);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* GQA_ATTENTION_H_ */
