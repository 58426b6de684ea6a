/* gqa KV cache C ABI: a per-layer key/value cache in caller memory, append
 * of new tokens, and attention of the newest T >= 1 queries against
 * everything cached (token-by-token decoding of an LLM on device).
 *
 * Layout (documented, stable): k and v are each [B, capacity, Hkv, D],
 * row-major, in the cache's dtype (f32 or IEEE f16). lengths[b] counts the
 * tokens written to batch b so far (ragged batches are fine). Linear cache:
 * token p of batch b is at slot p, and p < capacity. Ring cache (ring != 0):
 * token p is at slot p % capacity, the last `capacity` tokens stay, and
 * attention must use a sliding window W with W + T - 1 <= capacity.
 *
 * Queries of a call are the last T tokens of each batch: query t of batch b
 * has position lengths[b] - T + t and sees the cached keys at positions <= its
 * own (and > position - W with a window). Calls never allocate; on error
 * nothing is written (lengths included).
 *
 * Threads: the cache is caller memory and is never locked. An append
 * (gqa_kv_cache_append, or gqa_layer_forward_cached, which appends), a
 * truncate and a keep write k, v, lengths and held_from: each must not run
 * concurrently with any other call on the same cache. Attends
 * (gqa_kv_cache_attend) and the workspace size queries only read the cache: any
 * number may run at once on one cache, each with its own q, out and workspace.
 * Distinct caches are independent.
 */
#ifndef GQA_KV_CACHE_H_
#define GQA_KV_CACHE_H_

#include "gqa/gqa.h"
#include "gqa/rope.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gqa_kv_cache {
  int64_t batch;    /* B */
  int64_t capacity; /* slots per batch */
  int64_t kv_heads; /* Hkv */
  int64_t head_dim; /* D */
  int32_t dtype;    /* gqa_dtype of k and v */
  int32_t ring;     /* nonzero: ring of `capacity` slots */
  void* k;          /* [B, capacity, Hkv, D] */
  void* v;          /* [B, capacity, Hkv, D] */
  int64_t* lengths; /* [B] tokens written so far */
  /* [B] the oldest position each sequence still holds, or NULL. Only a
   * ring reads it, and a ring needs it to truncate or keep drafts (after
   * that it may hold fewer than its last `capacity` positions); the calls
   * keep it (zeros for a new cache). NULL: a ring holds its last
   * `capacity` positions. */
  int64_t* held_from;
} gqa_kv_cache;

/* Appends new tokens: k_new, v_new [B, new_tokens, Hkv, D] in src_dtype
 * (converted to the cache's dtype). counts: [B] tokens to take from each
 * batch's rows (<= new_tokens; ragged), or NULL for new_tokens each.
 * Errors: GQA_STATUS_CACHE_OVERFLOW when a linear cache would pass its
 * capacity, a ring append is longer than the ring, or a ring's positions
 * would pass 2^24; GQA_STATUS_SIZE_OVERFLOW when the sources
 * [B, new_tokens, Hkv, D] exceed 2^48 elements; GQA_STATUS_INVALID_ARGUMENT
 * when k_new, v_new or counts overlap the cache's k, v or lengths. */
GQA_API gqa_status gqa_kv_cache_append(gqa_kv_cache* cache, int64_t new_tokens,
                                       const int64_t* counts, const void* k_new,
                                       const void* v_new, int32_t src_dtype);

/* An append with RoPE on the keys (gqa/rope.h): as gqa_kv_cache_append,
 * each key row normed (rope->norm_weight) and rotated at its position
 * before it is stored (then converted to the cache's dtype); value rows are
 * stored as given. positions [B, new_tokens] int64 in [0, 2^24) (entries
 * past counts[b] are not read), or NULL for the rows' cache positions
 * lengths[b] + i; a draft tree passes its tokens' depths from the cache's
 * length. rope NULL is a plain append (positions must then be NULL).
 * Errors as gqa_kv_cache_append and gqa_rope (a bad rope parameter or
 * position: nothing written); positions must not overlap the cache. */
GQA_API gqa_status gqa_kv_cache_append_rope(
    gqa_kv_cache* cache, int64_t new_tokens, const int64_t* counts,
    const void* k_new, const void* v_new, int32_t src_dtype,
    const gqa_rope_params* rope, const int64_t* positions);

typedef struct gqa_kv_attend_params {
  int64_t q_len;   /* T: the newest T tokens of each batch */
  int64_t q_heads; /* Hq, a multiple of the cache's Hkv */
  const void* q;   /* [B, T, Hq, D] */
  int32_t q_dtype;
  void* out; /* [B, T, Hq, Dv] (Dv: the cache's value_dim, D in v1) */
  int32_t out_dtype;
  float scale;            /* 0: 1/sqrt(D) */
  int64_t sliding_window; /* 0: none */
  int32_t fully_masked_policy;
  /* LLM logit options, as in gqa_attention_params (gqa/attention.h): a
   * softcap (0: off), [Hq] finite ALiBi slopes over token positions, [Hq]
   * finite learned sinks; NULL / 0: off. */
  float softcap;
  const float* alibi_slopes;
  const float* sinks;
  /* Draft verification (speculative decoding): [B, T, T] uint8 or NULL.
   * The newest T tokens are drafts; query t sees draft t' iff
   * tree_mask[(b * T + t) * T + t'] != 0, in place of causality among
   * them (a chain is the lower triangle; a tree gives each draft its
   * ancestors and itself). Older tokens stay visible (window permitting;
   * the window applies to drafts too). A row with no visible key follows
   * the policy, `uniform` averaging the tokens the cache holds. */
  const uint8_t* tree_mask;
  /* RoPE (and Q/K norm) of the queries on their way in (gqa/rope.h), or
   * NULL: q is attended as given. Query t of batch b is normed and rotated
   * at q_positions[b * T + t] (int64 in [0, 2^24)), or, with q_positions
   * NULL, at its cache position lengths[b] - T + t; q is not written (the
   * rotated rows, B*T*Hq*D f32, live in the workspace). With the cache
   * filled by gqa_*_cache_append_rope, a decode step is append-with-rope +
   * attend. q_positions without q_rope is an error. */
  const gqa_rope_params* q_rope;
  const int64_t* q_positions;
} gqa_kv_attend_params;

/* Workspace of an attend on this cache: it depends on the cache's B,
 * capacity, Hkv, D and on T, Hq and max_threads (not on lengths), so one
 * workspace serves every decode step of a cache.
 * Attend errors beyond the usual: a ring needs 0 < W and W + T - 1 <=
 * capacity (checked without overflow); a sliding_window >= 2^24 on a linear
 * cache acts as none; out must not overlap q or the cache. */
GQA_API gqa_status gqa_kv_cache_attend_workspace_size(
    const gqa_kv_cache* cache, const gqa_kv_attend_params* params,
    int64_t max_threads, size_t* size_out);

GQA_API gqa_status gqa_kv_cache_attend(const gqa_kv_cache* cache,
                                       const gqa_kv_attend_params* params,
                                       void* workspace, size_t workspace_size,
                                       pthreadpool_t threadpool);

/* Forgets the newest tokens (rejected drafts): lengths[b] = new_lengths[b],
 * with 0 <= new_lengths[b] <= lengths[b]. A ring then holds the positions
 * [held_from[b], new length) (held_from lowered to the new length where it
 * was above it; after appends alone held_from is max(0, length -
 * capacity)): an attend whose window reaches an older position is an
 * error. A ring needs held_from. new_lengths must not overlap k, v,
 * lengths or held_from. Writes lengths (and held_from) only. */
GQA_API gqa_status gqa_kv_cache_truncate(gqa_kv_cache* cache,
                                         const int64_t* new_lengths);

/* Keeps an accepted path of drafts: among the newest `drafts` tokens of
 * batch `batch` (in [0, B)), the `count` ones at `indices` (strictly
 * ascending in [0, drafts)) move down to positions len - drafts + j, their
 * stored rows unchanged; the others are forgotten; lengths[batch] becomes
 * len - drafts + count. The drafts must all be held. A ring needs
 * held_from. indices must not overlap k, v, lengths or held_from (nor
 * held_from lengths). Like an append, it must not run concurrently with
 * other calls on the cache. */
GQA_API gqa_status gqa_kv_cache_keep(gqa_kv_cache* cache, int64_t batch,
                                     int64_t drafts, const int64_t* indices,
                                     int64_t count);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* GQA_KV_CACHE_H_ */
