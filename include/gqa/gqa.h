/* gqa C ABI: keras.layers.GroupQueryAttention as an opaque, allocation-free
 * layer object, usable from C, JNI, Swift and Kotlin/Native.
 *
 * Life cycle:
 *   gqa_layer_create()          copies/packs the weights (allocates, once)
 *   gqa_layer_workspace_size()  bytes of scratch one forward call needs
 *   gqa_layer_forward()         runs the layer; never allocates
 *   gqa_layer_destroy()
 *
 * Every function returns a gqa_status; on failure nothing is written to any
 * output and gqa_last_error_message() tells what was wrong (per thread).
 * Sizes are int64_t so that negative values are detected, not wrapped.
 *
 * Threads: any number of threads may call gqa_layer_forward,
 * gqa_layer_forward_cached, gqa_layer_workspace_size and
 * gqa_layer_cached_workspace_size on one layer at the same time, each with
 * its own workspace, outputs and KV cache (inputs and masks are only read
 * and may be shared); results equal those of one call at a time, bitwise.
 * Calls may pass different thread pools or the same one (pthreadpool then
 * runs their parallel sections one after another). Each f32 projection of
 * a layer (an XNNPACK operator) serves one call at a time, so concurrent
 * f32 calls wait briefly for each other there. gqa_layer_create and
 * gqa_layer_destroy of a layer must not overlap any other use of it;
 * distinct layers are independent. Error messages are per thread.
 *
 * Tensor layouts are row-major (C order), exactly as Keras stores them:
 *   query [B,T,Fq], value [B,S,Fv], key [B,S,Fk], output [B,T,Fq],
 *   scores [B,Hq,T,S]; weights as in Keras' get_weights() (see
 *   gqa_layer_weights). With dtype GQA_DTYPE_F16 every floating tensor the
 *   caller passes or receives (inputs, weights, outputs, scores) is IEEE
 *   binary16; accumulation and softmax are float32.
 */
#ifndef GQA_GQA_H_
#define GQA_GQA_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define GQA_API __declspec(dllexport)
#else
#define GQA_API __attribute__((visibility("default")))
#endif

/* Opaque handle of a thread pool from libpthreadpool (may be NULL: then the
 * call runs on the calling thread). Compatible with <pthreadpool.h>. */
typedef struct pthreadpool* pthreadpool_t;

typedef enum gqa_status {
  GQA_STATUS_OK = 0,
  GQA_STATUS_NULL_POINTER = 1,           /* a required pointer is NULL */
  GQA_STATUS_INVALID_SIZE = 2,           /* a size is zero or negative */
  GQA_STATUS_SIZE_OVERFLOW = 3,          /* a product of sizes overflows */
  GQA_STATUS_HEADS_NOT_DIVISIBLE = 4,    /* Hq % Hkv != 0 */
  GQA_STATUS_INVALID_SLIDING_WINDOW = 5, /* sliding_window < 0 */
  GQA_STATUS_INVALID_DROPOUT = 6,        /* rate outside [0,1] or NaN */
  GQA_STATUS_INVALID_ENUM = 7,           /* unknown dtype / policy / mode */
  GQA_STATUS_SHAPE_MISMATCH = 8,         /* feature sizes, key vs value */
  GQA_STATUS_INVALID_MASK_RANK = 9,      /* attention_mask rank not 2/3/4 */
  GQA_STATUS_MASK_NOT_BROADCASTABLE = 10,
  GQA_STATUS_WORKSPACE_TOO_SMALL = 11,
  GQA_STATUS_WORKSPACE_MISALIGNED = 12, /* not GQA_WORKSPACE_ALIGNMENT */
  GQA_STATUS_UNSUPPORTED_HARDWARE = 13, /* the CPU lacks a needed feature */
  GQA_STATUS_OUT_OF_MEMORY = 14,        /* only at creation */
  GQA_STATUS_BACKEND_FAILURE = 15,      /* XNNPACK reported an error */
  GQA_STATUS_MISSING_WEIGHT = 16,       /* a weight the config needs is NULL */
  GQA_STATUS_INVALID_ARGUMENT = 17,     /* anything else, see the message */
  GQA_STATUS_CACHE_OVERFLOW = 18,       /* a KV cache append past capacity */
  GQA_STATUS_BLOCK_MISSING = 19 /* a block-table column a call needs is -1 */
} gqa_status;

typedef enum gqa_dtype {
  GQA_DTYPE_F32 = 0,
  GQA_DTYPE_F16 = 1, /* IEEE binary16 storage, float32 arithmetic */
  /* KV cache v2 element types only (gqa/block_cache.h): */
  GQA_DTYPE_Q8 = 2, /* int8 codes, one f16 scale per row */
  GQA_DTYPE_Q4 = 3  /* 4-bit codes, one f16 scale per 32 elements */
} gqa_dtype;

/* What a query row with no allowed key produces (spec section 4). */
typedef enum gqa_fully_masked_policy {
  /* zero if dropout > 0 or scores are requested, else uniform (Keras >= 3.10)
   */
  GQA_FULLY_MASKED_KERAS = 0,
  GQA_FULLY_MASKED_ZERO = 1,   /* probabilities 0: the head contributes 0 */
  GQA_FULLY_MASKED_UNIFORM = 2 /* probabilities 1/S: mean of all values */
} gqa_fully_masked_policy;

/* Alignment the forward workspace must have, in bytes. */
#define GQA_WORKSPACE_ALIGNMENT 64

typedef struct gqa_layer_config {
  int64_t head_dim;            /* D   > 0 */
  int64_t num_query_heads;     /* Hq  > 0 */
  int64_t num_key_value_heads; /* Hkv > 0, divides Hq */
  int64_t query_features;      /* Fq: last axis of query and of the output */
  int64_t key_features;        /* Fk: last axis of key (= Fv if key omitted) */
  int64_t value_features;      /* Fv: last axis of value */
  int32_t use_bias;            /* nonzero: all five sub-layers have biases */
  int32_t use_gate;            /* nonzero: sigmoid gate (Keras >= 3.14) */
  int64_t sliding_window;      /* 0: none; else keys with |t - s| < w */
  float dropout;               /* rate in [0, 1] on the probabilities */
  uint64_t seed;               /* dropout draws (not Keras' RNG stream) */
  /* Enums travel as int32_t: a fixed size across compilers and languages,
   * and an out-of-range value is an error status, not undefined behaviour. */
  int32_t fully_masked_policy; /* gqa_fully_masked_policy */
  int32_t dtype;               /* gqa_dtype */
} gqa_layer_config;

/* Fills *config with Keras' defaults (bias on, no gate, no window, no
 * dropout, keras policy, f32) for the given heads and feature sizes;
 * key_features = value_features. */
GQA_API void gqa_layer_config_init(gqa_layer_config* config, int64_t head_dim,
                                   int64_t num_query_heads,
                                   int64_t num_key_value_heads,
                                   int64_t query_features,
                                   int64_t value_features);

/* Weights in Keras' layout, element type = config dtype. Copied (or packed)
 * by gqa_layer_create; the caller may free them afterwards.
 *   query_kernel  (Fq, Hq, D)   query_bias  (Hq, D)
 *   key_kernel    (Fk, Hkv, D)  key_bias    (Hkv, D)
 *   value_kernel  (Fv, Hkv, D)  value_bias  (Hkv, D)
 *   gate_kernel   (Fq, Hq, D)   gate_bias   (Hq, D)     use_gate only
 *   output_kernel (Hq, D, Fq)   output_bias (Fq)
 * Biases are read only when use_bias is set. */
typedef struct gqa_layer_weights {
  const void* query_kernel;
  const void* query_bias;
  const void* key_kernel;
  const void* key_bias;
  const void* value_kernel;
  const void* value_bias;
  const void* gate_kernel;
  const void* gate_bias;
  const void* output_kernel;
  const void* output_bias;
} gqa_layer_weights;

typedef struct gqa_layer* gqa_layer_t;

/* One call of the layer. Masks are uint8 (nonzero = may attend). */
typedef struct gqa_forward_args {
  int64_t batch;     /* B */
  int64_t query_len; /* T */
  int64_t value_len; /* S */
  const void* query; /* [B, T, Fq] */
  const void* value; /* [B, S, Fv] */
  const void* key;   /* [B, S, Fk] or NULL: the value is used as key */
  /* attention_mask of rank 2 (T,S), 3 (B,T,S) or 4 (B,Hq,T,S); each of
   * attention_mask_dims[0..rank) is 1 (broadcast) or the full size. */
  const uint8_t* attention_mask;
  int32_t attention_mask_rank;
  int64_t attention_mask_dims[4];
  const uint8_t* query_mask; /* [B, T] or NULL */
  const uint8_t* value_mask; /* [B, S] or NULL */
  const uint8_t* key_mask;   /* [B, S] or NULL */
  int32_t use_causal_mask;   /* top-left: query t sees keys s <= t */
  int32_t training;          /* enables dropout when the rate is > 0 */
  /* [B, Hq, T, S] keep decisions (nonzero = keep) replacing the seeded
   * draw in training; NULL = draw from the layer's seed. */
  const uint8_t* dropout_keep_mask;
  void* output; /* [B, T, Fq] */
  void* scores; /* [B, Hq, T, S] probabilities before dropout, or NULL */
} gqa_forward_args;

GQA_API gqa_status gqa_layer_create(const gqa_layer_config* config,
                                    const gqa_layer_weights* weights,
                                    gqa_layer_t* layer_out);
GQA_API void gqa_layer_destroy(gqa_layer_t layer);

/* Bytes of workspace gqa_layer_forward needs for this B, T, S when run
 * with a pool of up to max_threads threads (1: no pool); the same for every
 * mask and flag combination. A smaller pool needs no more; a bigger pool
 * with this workspace uses max_threads of its threads for attention. */
GQA_API gqa_status gqa_layer_workspace_size(gqa_layer_t layer, int64_t batch,
                                            int64_t query_len,
                                            int64_t value_len,
                                            int64_t max_threads,
                                            size_t* size_out);

/* Runs the layer. workspace: >= gqa_layer_workspace_size bytes, aligned to
 * GQA_WORKSPACE_ALIGNMENT. threadpool may be NULL. Results do not depend on
 * the number of threads. Limits (each a status): query_len and value_len
 * <= 2^24 (the core's position limit); every tensor <= 2^48 elements.
 * output and scores must not overlap query, key, value or each other
 * (GQA_STATUS_INVALID_ARGUMENT). A sliding_window >= 2^24 acts as none. */
GQA_API gqa_status gqa_layer_forward(gqa_layer_t layer,
                                     const gqa_forward_args* args,
                                     void* workspace, size_t workspace_size,
                                     pthreadpool_t threadpool);

/* Incremental decoding with a KV cache (gqa/kv_cache.h): T new tokens:
 * query [B,T,Fq] and value (key) [B,T,F] are projected, their k and v are
 * appended to `cache` (its Hkv and D must match the layer), and the queries
 * attend causally to everything cached (with the layer's sliding window);
 * then gate and output projection as in gqa_layer_forward. args->value_len
 * must equal args->query_len; query/value/key masks, scores and training
 * are not taken. Draft verification: an attention_mask of rank 2 (T, T) or
 * 3 (B|1, T, T) is the tree of the T new tokens (gqa_kv_attend_params'
 * tree_mask: query t sees new token t' where it is nonzero, every older
 * token as before); then gqa_kv_cache_truncate / _keep drop the rejected
 * drafts.
 * Running a sequence token by token equals gqa_layer_forward on the whole
 * sequence with use_causal_mask (to float rounding). */
struct gqa_kv_cache;
GQA_API gqa_status gqa_layer_cached_workspace_size(
    gqa_layer_t layer, const struct gqa_kv_cache* cache, int64_t new_tokens,
    int64_t max_threads, size_t* size_out);
GQA_API gqa_status gqa_layer_forward_cached(
    gqa_layer_t layer, const gqa_forward_args* args, struct gqa_kv_cache* cache,
    void* workspace, size_t workspace_size, pthreadpool_t threadpool);

/* Static name of a status ("GQA_STATUS_..."). */
GQA_API const char* gqa_status_name(gqa_status status);
/* Message of the last failed call on this thread ("" if none). */
GQA_API const char* gqa_last_error_message(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* GQA_GQA_H_ */
