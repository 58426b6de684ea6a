/* gqa KV cache v2 C ABI: a blocked, optionally quantized key/value cache in
 * caller memory, addressed through a per-sequence block table (the layout of
 * an LLM runtime's paged cache), with append, attend and read-back.
 *
 * Format (documented, stable). A cache is a pool of equal blocks and a
 * table. Each block holds `block_tokens` consecutive token slots of one
 * sequence, all kv heads, keys, values and their scales side by side, so a
 * decode step over a sequence reads one block after another:
 *
 *   K codes   [block_tokens][Hkv][D]    element type below
 *   K scales  [block_tokens][Hkv][D/g]  f16 (q8: g = D; q4: g = 32)
 *   V codes   [block_tokens][Hkv][Dv]
 *   V scales  [block_tokens][Hkv][Dv/g]
 *
 * each region starting at a multiple of 64 bytes from the block's start
 * (gqa_block_cache_layout gives the offsets; the scale regions are empty
 * for f32 and f16). Element types (spec: shared/spec/llm-attention-
 * semantics.md 4.2, the dequantized values are exact):
 *   GQA_DTYPE_F32, GQA_DTYPE_F16: the row as given / rounded to nearest even.
 *   GQA_DTYPE_Q8: int8 codes in [-127, 127], one f16 scale d per row:
 *     x ~ code * d with d = f16(max|x| / 127).
 *   GQA_DTYPE_Q4: 4-bit codes in [-7, 7], one f16 scale per group of 32
 *     elements (D and Dv multiples of 32); a row of n elements is n/2 bytes:
 *     in each group of 32, byte i (0..15) holds element i in its low nibble
 *     and element i + 16 in its high nibble, each as code + 8.
 * A NaN or infinity in a quantized row, or a row too large for an f16
 * scale, stores a NaN scale: the row reads back (and attends) as NaN.
 * GQA_BLOCK_CACHE_ROTATE multiplies every stored row by the normalised
 * Walsh-Hadamard matrix first (D and Dv powers of two): outliers spread
 * over the row before quantization. Attention rotates q and the output
 * back, so results equal those of unrotated attention up to rounding; a
 * read-back returns the row as stored (rotated).
 *
 * Integer q.k (GQA_BLOCK_CACHE_INT8_QK, off by default): on CPUs with an
 * int8 dot product (x86 AVX512-VNNI or AVX-VNNI, AArch64 SDOT) the decode
 * of a q8 cache (D a multiple of 32) or a q4 cache (D a multiple of 64)
 * quantizes each scaled query row to int8, one f32 scale per row
 * (s_q = max|q| / 127, codes rounded to nearest even; a row with a NaN or
 * Inf gives NaN), and computes q.k in integers: each logit moves by up to
 * s_q / 2 * sum|k|.
 * That is faster and less exact (on the golden-llm q8 / q4 cases up to
 * 1.5e-2 off, past their 1e-2 tolerance), so it is the caller's choice.
 * Without the flag q stays f32 against the dequantized keys: the spec's
 * values up to f32 rounding. Either way results are bitwise identical for
 * any thread count on one machine.
 *
 * Slots and blocks: the token at position p of sequence b lives in slot
 * s = p (linear) or p % capacity (ring), in the block of table column
 * s / block_tokens, row s % block_tokens. The table is
 * [B][columns] int32, columns = ceil(capacity / block_tokens); an entry is
 * the index of a pool block, or -1 for a column without one yet. The caller
 * hands blocks as sequences grow: every call needs a block in every column
 * that holds a token of its sequence, and an append also in every column it
 * writes to (GQA_STATUS_BLOCK_MISSING otherwise, with the batch and column
 * in the message); other entries may be -1. A linear cache of consecutive
 * blocks is a table 0, 1, 2, ...; a ring reuses its columns' blocks. Sequences
 * may share a block (a common prefix); an append writes through to every
 * sequence that shares it.
 *
 * Linear cache: a sequence holds positions [0, capacity). Ring
 * (GQA_BLOCK_CACHE_RING): the last `capacity` tokens stay; one append of
 * more tokens than the ring holds keeps its last `capacity`; attention
 * must use a sliding window W with W + T - 1 <= capacity. Capacity and
 * positions stay below 2^24; k_new and v_new must not be NULL (also for
 * new_tokens 0). Calls never allocate; on error nothing is written (lengths
 * included). Value heads may have another size than the key heads
 * (value_dim Dv != D, MLA-style): v_new is [B, n, Hkv, Dv] and an attend's
 * out [B, T, Hq, Dv].
 *
 * Threads: the cache is caller memory and is never locked. An append, a
 * truncate and a keep write blocks and lengths: each must not run
 * concurrently with any other call on the same cache (or on a cache
 * sharing its blocks). Attends, the
 * read-back and the size queries only read: any number may run at once.
 */
#ifndef GQA_BLOCK_CACHE_H_
#define GQA_BLOCK_CACHE_H_

#include "gqa/gqa.h"
#include "gqa/kv_cache.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GQA_BLOCK_CACHE_RING 1u    /* ring of `capacity` slots per sequence */
#define GQA_BLOCK_CACHE_ROTATE 2u  /* Hadamard rotation of stored rows */
#define GQA_BLOCK_CACHE_INT8_QK 4u /* q8/q4: int8 q, integer q.k */

typedef struct gqa_block_cache_config {
  int64_t batch;        /* B sequences */
  int64_t kv_heads;     /* Hkv */
  int64_t head_dim;     /* D */
  int64_t value_dim;    /* Dv; 0 means D */
  int64_t capacity;     /* slots per sequence: a linear limit, a ring size */
  int64_t block_tokens; /* token slots per block, in [1, 4096] */
  int32_t dtype;        /* GQA_DTYPE_F32, F16, Q8 or Q4 */
  uint32_t flags;       /* GQA_BLOCK_CACHE_RING | _ROTATE | _INT8_QK */
} gqa_block_cache_config;

/* Where the regions of one block lie (bytes from the block's start), and
 * the bytes of a block (a multiple of 64). */
typedef struct gqa_block_cache_layout {
  int64_t block_bytes;
  int64_t k_codes, k_scales, v_codes, v_scales; /* region offsets */
  int64_t k_row_bytes, v_row_bytes;             /* codes of one row */
  int64_t k_row_scales, v_row_scales;           /* f16 scales per row */
  int64_t table_columns;                        /* ceil(capacity / tokens) */
} gqa_block_cache_layout;

/* Validates a configuration and gives its layout. */
GQA_API gqa_status gqa_block_cache_layout_of(
    const gqa_block_cache_config* config, gqa_block_cache_layout* layout);

typedef struct gqa_block_cache {
  gqa_block_cache_config config;
  void* blocks;         /* num_blocks * layout.block_bytes, 64-byte aligned */
  int64_t num_blocks;   /* blocks in the pool (< 2^31) */
  int32_t* block_table; /* [B][table_columns]: pool index, or -1 */
  int64_t* lengths;     /* [B] tokens appended so far (0 for a new cache) */
  /* [B] the oldest position each sequence still holds, or NULL; as in
   * gqa_kv_cache (gqa/kv_cache.h): only a ring reads it, and needs it to
   * truncate or keep. */
  int64_t* held_from;
} gqa_block_cache;

/* Appends k_new [B, new_tokens, Hkv, D] and v_new [B, new_tokens, Hkv, Dv]
 * (src_dtype f32 or f16; rotated, converted or quantized on the way in).
 * counts [B]: tokens taken from each batch's rows (<= new_tokens; ragged),
 * or NULL for new_tokens each. Errors: GQA_STATUS_CACHE_OVERFLOW past a
 * linear cache's capacity or 2^24 positions; GQA_STATUS_BLOCK_MISSING when
 * a column it writes has no block; GQA_STATUS_INVALID_ARGUMENT when the
 * sources or counts overlap the pool, table or lengths. */
GQA_API gqa_status gqa_block_cache_append(gqa_block_cache* cache,
                                          int64_t new_tokens,
                                          const int64_t* counts,
                                          const void* k_new, const void* v_new,
                                          int32_t src_dtype);
/* An append with RoPE on the keys, as gqa_kv_cache_append_rope
 * (gqa/kv_cache.h): each key row is normed and rotated at its position
 * (positions [B, new_tokens] or NULL: lengths[b] + i) first, then rotated
 * (GQA_BLOCK_CACHE_ROTATE), converted or quantized as any appended row. */
GQA_API gqa_status gqa_block_cache_append_rope(
    gqa_block_cache* cache, int64_t new_tokens, const int64_t* counts,
    const void* k_new, const void* v_new, int32_t src_dtype,
    const gqa_rope_params* rope, const int64_t* positions);

/* Attention of the newest params->q_len tokens of each sequence against
 * the cache (always causal; query t of batch b at position
 * lengths[b] - T + t). params as for gqa_kv_cache_attend: q [B, T, Hq, D],
 * out [B, T, Hq, Dv]. The workspace depends on the cache's configuration,
 * T, Hq and max_threads only, not on the lengths or the table: one serves
 * every decode step. Results are bitwise identical for any thread count. */
GQA_API gqa_status gqa_block_cache_attend_workspace_size(
    const gqa_block_cache* cache, const gqa_kv_attend_params* params,
    int64_t max_threads, size_t* size_out);
GQA_API gqa_status gqa_block_cache_attend(const gqa_block_cache* cache,
                                          const gqa_kv_attend_params* params,
                                          void* workspace,
                                          size_t workspace_size,
                                          pthreadpool_t threadpool);

/* Draft verification (spec 4.4), as gqa_kv_cache_truncate and
 * gqa_kv_cache_keep: truncate forgets the newest tokens; keep moves an
 * accepted path of drafts down (codes and scales copied as stored, through
 * to every sequence sharing the block). Attends take a tree mask in
 * gqa_kv_attend_params. Both write; no other call may run at once. */
GQA_API gqa_status gqa_block_cache_truncate(gqa_block_cache* cache,
                                            const int64_t* new_lengths);
GQA_API gqa_status gqa_block_cache_keep(gqa_block_cache* cache, int64_t batch,
                                        int64_t drafts, const int64_t* indices,
                                        int64_t count);

/* The stored rows of the token at `position` of sequence `batch`, kv head
 * `head`, dequantized to f32 (rotated where the cache rotates): k_row [D],
 * v_row [Dv]. The position must be one the cache holds. */
GQA_API gqa_status gqa_block_cache_read(const gqa_block_cache* cache,
                                        int64_t batch, int64_t position,
                                        int64_t head, float* k_row,
                                        float* v_row);

/* The layer's incremental decoding over a v2 cache: as
 * gqa_layer_forward_cached (gqa.h), with the new tokens' k and v appended
 * to `cache` (its Hkv and D, and Dv, must match the layer's head size). */
GQA_API gqa_status gqa_layer_block_cached_workspace_size(
    gqa_layer_t layer, const gqa_block_cache* cache, int64_t new_tokens,
    int64_t max_threads, size_t* size_out);
GQA_API gqa_status gqa_layer_forward_block_cached(
    gqa_layer_t layer, const gqa_forward_args* args, gqa_block_cache* cache,
    void* workspace, size_t workspace_size, pthreadpool_t threadpool);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* GQA_BLOCK_CACHE_H_ */
