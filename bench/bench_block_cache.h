// gqa-bench's KV cache v2 cases (gqa/block_cache.h): decode steps of the
// D presets and a chunked prefill through the block cache in every element
// type, timed against the roofline of the run; and the accuracy of the q8
// and q4 caches (with and without rotation) against the f32 one.
#ifndef GQA_BENCH_BENCH_BLOCK_CACHE_H_
#define GQA_BENCH_BENCH_BLOCK_CACHE_H_

#include <stdint.h>
#include <stdio.h>

#include <functional>
#include <string>
#include <vector>

#include "bench/bench_options.h"
#include "bench/bench_util.h"
#include "gqa/gqa.h"

namespace gqa {

// The cache-prefill shape: B1 Hq8 Hkv2 D128, T = S = 1024, causal (the
// core's f16 prefill of it is the baseline).
Shape CachePrefillShape();

struct CacheRecord {
  Shape shape;        // B, Hq, Hkv, D; q_len = T of one attend, kv_len = S
  std::string dtype;  // cache element type: f32, f16, q8, q4
  bool rotate = false;
  bool int8_qk = false;  // the integer q.k (GQA_BLOCK_CACHE_INT8_QK)
  bool prefill = false;  // chunked prefill (q_len = S, chunks of `chunk`)
  int64_t block_tokens = 0, chunk = 0;
  int threads = 1;
  double median_ms = 0, min_ms = 0;  // attends of one step (prefill: all)
  double append_ms = 0;              // prefill: the appends of all chunks
  double flops = 0;                  // 4 * Hq * D per visible pair
  double bytes = 0;  // cache bytes the attends read (codes + scales)
  double read_bytes_per_token = 0;    // codes + scales, all kv heads, K + V
  double stored_bytes_per_token = 0;  // block_bytes / block_tokens
  double ratio = 0;                   // time / baseline time (0: none)
  std::string ratio_to;               // "f32" (same preset and T) or "core f16"
  double max_abs_err = 0;  // vs the float64 oracle on the stored rows
  bool checked = false;    // the read-back worked and the check ran
  bool pass = true;
  std::string error;  // the failing call's status and message
};

struct AccuracyRecord {
  std::string data;  // "normal" or "outliers" (4 key channels x10)
  int64_t kv_len = 0, head_dim = 0, q_heads = 0, kv_heads = 0;
  std::string dtype;
  bool rotate = false;
  bool int8_qk = false;
  bool attended = false;    // the attend ran (else only the read-back)
  double max_abs_err = 0;   // attend output vs float64 on the f32 rows
  double mean_abs_err = 0;  // the same, mean over the output elements
  double deq_abs_err = 0;   // float64 on the stored rows vs on the f32 rows
  double kl = 0;            // mean over rows of KL(p_f32 || p_stored)
  std::string error;
};

// Runs the decode shapes of o (the D presets when it names none) and the
// prefill case; reprobe() is called after each shape (the roofs are the
// best of all probes). core_f16_prefill_ms: the core's time on
// CachePrefillShape() in f16 (0: not known).
std::vector<CacheRecord> BenchBlockCache(const Options& o, pthreadpool_t pool,
                                         double core_f16_prefill_ms,
                                         const std::function<void()>& reprobe);
void PrintCacheTable(const std::vector<CacheRecord>& records,
                     const Roofs& roofs);

std::vector<AccuracyRecord> BenchAccuracy(const Options& o, pthreadpool_t pool);
void PrintAccuracyTable(const std::vector<AccuracyRecord>& records);

// JSON records ("  {...}", a comma before each but the first overall).
void WriteCacheJson(FILE* f, const std::vector<CacheRecord>& records,
                    const Roofs& roofs, bool* first);
void WriteAccuracyJson(FILE* f, const std::vector<AccuracyRecord>& records,
                       bool* first);
// The read-bandwidth probe fields every record carries (", \"read_bw_...").
std::string ReadBandwidthJson(const Roofs& roofs);

}  // namespace gqa

#endif  // GQA_BENCH_BENCH_BLOCK_CACHE_H_
