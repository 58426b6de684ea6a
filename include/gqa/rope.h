/* gqa RoPE C ABI: rotary position embedding with an optional RMS norm first
 * (Q/K norm), the helper an LLM runtime applies to its queries and keys
 * before attention (spec: shared/spec/llm-attention-semantics.md 5).
 *
 * Per row x of D elements (rows of x [B, T, H, D], positions [B, T] shared
 * by the H heads of a token):
 *   1. RMS norm, when params->norm_weight is set (Qwen3, Gemma 3):
 *        x_i = x_i / sqrt(mean(x^2) + eps) * w_i   (Gemma's 1 + w is the
 *      caller's to pass).
 *   2. Rotary on the first R = rotary_dim elements (R < D: partial rotary,
 *      the other D - R elements pass through), base theta:
 *        f_i = theta^(-2i/R), i in [0, R/2), angle a_i = pos * f_i,
 *      each pair (x, y) becoming (x cos a - y sin a, x sin a + y cos a).
 *      GQA_ROPE_HALF pairs (x_i, x_{i+R/2}) (Llama/HF, NeoX);
 *      GQA_ROPE_INTERLEAVED pairs (x_{2i}, x_{2i+1}) (GPT-J, Meta's original
 *      Llama).
 *   Frequency scaling: GQA_ROPE_SCALING_LINEAR divides every f_i by factor
 *   F; GQA_ROPE_SCALING_LLAMA3 (Llama 3.1) with lambda = 2 pi / f_i keeps
 *   f_i where lambda < L / hf, takes f_i / F where lambda > L / lf, and
 *   (1 - g) f_i / F + g f_i with g = (L / lambda - lf) / (hf - lf) between.
 *
 * Accuracy: the frequencies, the angles pos * f_i and their cos / sin are
 * computed in float64 once per token (shared by its heads), the rest in
 * float32: within 1e-4 of the float64 reference at positions up to 2^17 and
 * beyond (a float32 angle would be off by up to pos * 2^-23 rad). A NaN in
 * a row makes its outputs NaN (the norm spreads it over the row).
 *
 * Calls never allocate and never keep a pointer. On error nothing is
 * written and gqa_last_error_message() says why (per thread). Stateless:
 * any number of threads may call gqa_rope at once (on outputs that do not
 * overlap).
 */
#ifndef GQA_ROPE_H_
#define GQA_ROPE_H_

#include "gqa/gqa.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GQA_ROPE_HALF 0        /* pairs (x_i, x_{i+R/2}): Llama/HF, NeoX */
#define GQA_ROPE_INTERLEAVED 1 /* pairs (x_{2i}, x_{2i+1}): GPT-J */

#define GQA_ROPE_SCALING_NONE 0
#define GQA_ROPE_SCALING_LINEAR 1 /* f_i / factor */
#define GQA_ROPE_SCALING_LLAMA3 2 /* Llama 3.1's band-wise scaling */

typedef struct gqa_rope_params {
  int64_t rotary_dim; /* R: even, 0 < R <= D; 0 means D */
  int32_t style;      /* GQA_ROPE_HALF or GQA_ROPE_INTERLEAVED */
  int32_t scaling;    /* GQA_ROPE_SCALING_* */
  double theta;       /* base, finite and > 1 (e.g. 10000, 500000) */
  /* Scaling parameters (read only by the scalings that use them): */
  double factor;                /* linear, llama3: F, finite and > 0, with
                                   2^24 / F finite (angles stay finite) */
  double low_freq_factor;       /* llama3: lf, 0 < lf < hf, finite */
  double high_freq_factor;      /* llama3: hf */
  double original_max_position; /* llama3: L, finite and > 0 (e.g. 8192) */
  /* RMS norm over each row of D before the rotary, or NULL for none. */
  const float* norm_weight; /* [D] */
  float norm_eps;           /* finite, >= 0 (read only with norm_weight) */
} gqa_rope_params;

/* Fills *params with the common defaults: R = D, GQA_ROPE_HALF, theta
 * 10000, no scaling (factor 1, lf 1, hf 4, L 8192 for when it is switched
 * on: Llama 3.1's are factor 8 with these), no norm (eps 1e-6). */
GQA_API void gqa_rope_params_init(gqa_rope_params* params);

/* y[b,t,h,:] = rope(norm(x[b,t,h,:]), positions[b*T+t]) for x [B,T,H,D]
 * (x_dtype GQA_DTYPE_F32 or F16) into y [B,T,H,D] (y_dtype F32 or F16;
 * f16 is converted on the way in and out, the arithmetic stays f32).
 * positions [B,T] int64 in [0, 2^24) (the core's position limit).
 * y == x with x_dtype == y_dtype runs in place; any other overlap of y
 * with x, positions or norm_weight is GQA_STATUS_INVALID_ARGUMENT.
 * Errors: NULL pointers (GQA_STATUS_NULL_POINTER); sizes <= 0
 * (GQA_STATUS_INVALID_SIZE); head_dim > 4096 or a tensor past 2^48
 * elements (GQA_STATUS_SIZE_OVERFLOW); an unknown style, scaling or dtype
 * (GQA_STATUS_INVALID_ENUM); a bad rotary_dim, theta, scaling parameter or
 * eps, a position out of range, or overlapping buffers
 * (GQA_STATUS_INVALID_ARGUMENT). */
GQA_API gqa_status gqa_rope(const gqa_rope_params* params, int64_t batch,
                            int64_t tokens, int64_t heads, int64_t head_dim,
                            const int64_t* positions, const void* x,
                            int32_t x_dtype, void* y, int32_t y_dtype);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* GQA_ROPE_H_ */
