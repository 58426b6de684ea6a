// gqa-bench's KV cache v2 cases (see bench_block_cache.h).
//
// Decode: a cache of S tokens per sequence is filled by one append, then
// copied into enough pools to pass 512 MiB (they share the table and the
// lengths), and each timed attend reads the next copy: every step reads its
// cache from DRAM, as the core's decode presets do. Bytes per step are the
// cache's codes and scales of the S tokens (block padding is not read),
// flops 4 * Hq * D per visible query-key pair; the roof is
// max(bytes / read bandwidth, flops / FMA peak) at the run's thread count.
//
// Prefill: T = S, appended and attended chunk by chunk (each attend's T is
// the chunk) on a warm cache, against the core's f16 prefill of the shape.
#include "bench/bench_block_cache.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <memory>
#include <random>

#include "bench/bench_block_cache_util.h"
#include "gqa/block_cache.h"
#include "gqa/gqa.hpp"
#include "src/reference/attention_ref.h"
#include "src/reference/closeness.h"

namespace gqa {
namespace {

// Footprint of the rotated copies of a decode cache: past any LLC here.
constexpr size_t kColdBytes = size_t{512} << 20;

// Query row (t, u) of sequence b at `position`, alone against its kv
// head's rows [0, position] of k/v [S, Hkv, D]: the float64 oracle.
std::vector<double> OracleRow(const float* q, const std::vector<double>& k,
                              const std::vector<double>& v, int64_t S,
                              int64_t Hkv, int64_t g, int64_t D,
                              int64_t position) {
  reference::AttentionCall a;
  a.batch = a.q_len = a.q_heads = a.kv_heads = 1;
  a.kv_len = S, a.head_dim = D;
  a.q.assign(q, q + D);
  a.k.resize(static_cast<size_t>(S * D));
  a.v.resize(a.k.size());
  for (int64_t j = 0; j < S; ++j) {
    for (int64_t e = 0; e < D; ++e) {
      a.k[j * D + e] = k[(j * Hkv + g) * D + e];
      a.v[j * D + e] = v[(j * Hkv + g) * D + e];
    }
  }
  a.scale = 1.0 / sqrt(static_cast<double>(D));
  a.causal = true;
  a.position_offset = position;
  return reference::Attention(a).out;
}

// Checks `samples` rows of out [B, T, Hq, D] (queries at positions
// len - T + t) against the oracle on the cache's stored rows.
void CheckRows(const gqa_block_cache& cache, const Shape& s, int64_t T,
               const std::vector<float>& q, const std::vector<float>& out,
               int samples, double atol, CacheRecord* r) {
  const int64_t S = s.kv_len, D = s.head_dim, Hq = s.q_heads;
  std::vector<std::vector<double>> k(s.batch), v(s.batch);
  for (int64_t b = 0; b < s.batch; ++b) {
    const gqa_status st = ReadBack(cache, b, S, &k[b], &v[b]);
    if (st != GQA_STATUS_OK) {
      r->error = StatusText("gqa_block_cache_read", st);
      return;  // unchecked, not failed: the read-back may come later
    }
  }
  std::mt19937_64 rng(5);
  std::vector<float> got;
  std::vector<double> want;
  for (int i = 0; i < samples; ++i) {
    const int64_t b = rng() % s.batch, u = rng() % Hq, t = rng() % T;
    const size_t row = static_cast<size_t>(((b * T + t) * Hq + u) * D);
    const std::vector<double> w =
        OracleRow(q.data() + row, k[b], v[b], S, s.kv_heads,
                  u / (Hq / s.kv_heads), D, S - T + t);
    want.insert(want.end(), w.begin(), w.end());
    got.insert(got.end(), out.begin() + row, out.begin() + row + D);
  }
  const reference::Closeness c = reference::Compare(got, want, 0.0, atol);
  r->checked = true;
  r->max_abs_err = c.max_abs_err;
  if (!c.pass()) {
    r->pass = false;
    r->error = c.Describe("check vs the stored rows");
  }
}

// Visible query-key pairs of T newest queries against S cached tokens.
double DecodePairs(int64_t T, int64_t S) {
  double n = 0;
  for (int64_t t = 0; t < T; ++t) n += static_cast<double>(S - T + t + 1);
  return n;
}

const CacheType kDecodeTypes[] = {
    {GQA_DTYPE_F32, false},      {GQA_DTYPE_F16, false},
    {GQA_DTYPE_Q8, false},       {GQA_DTYPE_Q8, true},
    {GQA_DTYPE_Q4, false},       {GQA_DTYPE_Q4, true},
    {GQA_DTYPE_Q8, false, true}, {GQA_DTYPE_Q8, true, true},
    {GQA_DTYPE_Q4, false, true}, {GQA_DTYPE_Q4, true, true}};
const int64_t kDecodeQueryLens[] = {1, 4};

// Output tolerance of the check against the stored rows: the kernels'
// f32 arithmetic (and the f32 rotation of q and out) on |out| < ~1.5.
// The integer q.k quantizes q too (int8, one scale per row): each logit
// moves by up to s_q / 2 * sum|k| (~0.01 here), so its check is looser.
double CheckTolerance(int32_t dtype, bool int8_qk) {
  if (int8_qk) return 2e-2;
  return dtype == GQA_DTYPE_F32 || dtype == GQA_DTYPE_F16 ? 1e-3 : 2e-3;
}

// One (shape, element type): fill once, then time each T.
void BenchDecodeType(const Shape& s, const CacheType& ct, const Options& o,
                     pthreadpool_t pool,
                     std::vector<CacheRecord>* out_records) {
  const int64_t S = s.kv_len;
  std::vector<CacheRecord> recs;
  for (int64_t T : kDecodeQueryLens) {
    CacheRecord r;
    r.shape = s;
    r.shape.q_len = T;
    r.shape.decode = true;
    r.shape.causal = true;
    r.dtype = DtypeName(ct.dtype);
    r.rotate = ct.rotate;
    r.int8_qk = ct.int8_qk;
    r.block_tokens = o.block_tokens;
    r.threads = o.threads;
    r.flops = 4.0 * static_cast<double>(s.batch * s.q_heads * s.head_dim) *
              DecodePairs(T, S);
    recs.push_back(r);
  }
  auto fail_all = [&](const std::string& e) {
    for (CacheRecord& r : recs) r.pass = false, r.error = e;
    out_records->insert(out_records->end(), recs.begin(), recs.end());
  };
  const gqa_block_cache_config config =
      ConfigOf(s, S, o.block_tokens, ct.dtype, ct.rotate, ct.int8_qk);
  gqa_block_cache_layout layout{};
  gqa_status st = gqa_block_cache_layout_of(&config, &layout);
  if (st != GQA_STATUS_OK) return fail_all(StatusText("layout_of", st));
  const size_t pool_bytes =
      static_cast<size_t>(s.batch * layout.table_columns * layout.block_bytes);
  CacheSet set;
  st = set.Init(config, std::max<size_t>(1, kColdBytes / pool_bytes + 1));
  if (st != GQA_STATUS_OK) return fail_all(StatusText("cache init", st));
  const size_t nkv = static_cast<size_t>(s.batch * S * s.kv_heads * s.head_dim);
  {
    const std::vector<float> k = RandomFloats(nkv, 2, -1.5f, 1.5f);
    const std::vector<float> v = RandomFloats(nkv, 3, -1.0f, 1.0f);
    gqa_block_cache c0 = set.Cache(0);
    st = gqa_block_cache_append(&c0, S, nullptr, k.data(), v.data(),
                                GQA_DTYPE_F32);
    if (st != GQA_STATUS_OK) return fail_all(StatusText("append", st));
  }
  set.Replicate();
  for (CacheRecord& r : recs) {
    const int64_t T = r.shape.q_len;
    r.read_bytes_per_token = set.ReadBytesPerToken();
    r.stored_bytes_per_token = set.StoredBytesPerToken();
    r.bytes = static_cast<double>(s.batch * S) * r.read_bytes_per_token;
    const size_t nq = static_cast<size_t>(s.batch * T * s.q_heads * s.head_dim);
    const std::vector<float> q = RandomFloats(nq, 1, -1.5f, 1.5f);
    std::vector<float> out(nq, NAN);
    const gqa_kv_attend_params p =
        AttendParams(T, s.q_heads, q.data(), out.data());
    gqa_block_cache c0 = set.Cache(0);
    size_t ws_bytes = 0;
    st = gqa_block_cache_attend_workspace_size(&c0, &p, o.threads, &ws_bytes);
    if (st != GQA_STATUS_OK) {
      r.pass = false, r.error = StatusText("attend_workspace_size", st);
      continue;
    }
    Workspace ws(ws_bytes);
    std::vector<double> times;
    for (int rep = 0; rep < o.reps + 1 && st == GQA_STATUS_OK; ++rep) {
      const gqa_block_cache c =
          set.Cache(static_cast<size_t>(rep + 1) % set.copies());
      const double t0 = NowSeconds();
      st = gqa_block_cache_attend(&c, &p, ws.data(), ws_bytes, pool);
      if (rep > 0) times.push_back(NowSeconds() - t0);  // rep 0 warms up
    }
    if (st != GQA_STATUS_OK) {
      r.pass = false, r.error = StatusText("attend", st);
      continue;
    }
    r.median_ms = Median(times) * 1e3;
    r.min_ms = *std::min_element(times.begin(), times.end()) * 1e3;
    CheckRows(c0, r.shape, T, q, out, 32, CheckTolerance(ct.dtype, ct.int8_qk),
              &r);
  }
  out_records->insert(out_records->end(), recs.begin(), recs.end());
}

// Chunked prefill of s (T = S) through a cache of `dtype`.
CacheRecord BenchPrefill(const Shape& s, int32_t dtype, int64_t chunk,
                         const Options& o, pthreadpool_t pool,
                         double core_f16_ms) {
  CacheRecord r;
  r.shape = s;
  r.prefill = true;
  r.dtype = DtypeName(dtype);
  r.block_tokens = o.block_tokens;
  r.chunk = chunk = std::min(chunk, s.kv_len);
  r.threads = o.threads;
  const int64_t S = s.kv_len, Hq = s.q_heads, Hkv = s.kv_heads, D = s.head_dim,
                B = s.batch;
  r.flops = 4.0 * static_cast<double>(B * Hq * D) *
            (static_cast<double>(S) * static_cast<double>(S + 1) / 2);
  CacheSet set;
  gqa_status st = set.Init(ConfigOf(s, S, o.block_tokens, dtype, false), 1);
  if (st != GQA_STATUS_OK) {
    r.pass = false, r.error = StatusText("cache init", st);
    return r;
  }
  r.read_bytes_per_token = set.ReadBytesPerToken();
  r.stored_bytes_per_token = set.StoredBytesPerToken();
  // Chunk i attends to the (i + 1) chunks appended so far.
  for (int64_t end = chunk; end < S + chunk; end += chunk)
    r.bytes +=
        static_cast<double>(B * std::min(end, S)) * r.read_bytes_per_token;
  const size_t row_q = static_cast<size_t>(Hq * D),
               row_kv = static_cast<size_t>(Hkv * D);
  // q [B, S, Hq, D], k/v [B, S, Hkv, D]; each chunk's slices are copied
  // into contiguous [B, C, ...] buffers first (outside the timing).
  const std::vector<float> q = RandomFloats(B * S * row_q, 1, -1.5f, 1.5f);
  const std::vector<float> k = RandomFloats(B * S * row_kv, 2, -1.5f, 1.5f);
  const std::vector<float> v = RandomFloats(B * S * row_kv, 3, -1.0f, 1.0f);
  std::vector<float> out(q.size(), NAN);
  const int64_t chunks = (S + chunk - 1) / chunk;
  struct Chunk {
    int64_t len;
    std::vector<float> q, k, v, out;
  };
  std::vector<Chunk> cs(static_cast<size_t>(chunks));
  for (int64_t i = 0; i < chunks; ++i) {
    Chunk& c = cs[i];
    c.len = std::min(chunk, S - i * chunk);
    for (int64_t b = 0; b < B; ++b) {
      const size_t t0 = static_cast<size_t>(b * S + i * chunk);
      c.q.insert(c.q.end(), q.begin() + t0 * row_q,
                 q.begin() + (t0 + c.len) * row_q);
      c.k.insert(c.k.end(), k.begin() + t0 * row_kv,
                 k.begin() + (t0 + c.len) * row_kv);
      c.v.insert(c.v.end(), v.begin() + t0 * row_kv,
                 v.begin() + (t0 + c.len) * row_kv);
    }
    c.out.assign(c.q.size(), NAN);
  }
  gqa_block_cache cache = set.Cache(0);
  size_t ws_bytes = 0;
  {
    const gqa_kv_attend_params p =
        AttendParams(chunk, Hq, cs[0].q.data(), cs[0].out.data());
    st =
        gqa_block_cache_attend_workspace_size(&cache, &p, o.threads, &ws_bytes);
  }
  if (st != GQA_STATUS_OK) {
    r.pass = false, r.error = StatusText("attend_workspace_size", st);
    return r;
  }
  Workspace ws(ws_bytes);
  std::vector<double> attend_times, append_times;
  for (int rep = 0; rep < o.reps + 1; ++rep) {
    set.Reset();
    double attend = 0, append = 0;
    for (Chunk& c : cs) {
      double t0 = NowSeconds();
      st = gqa_block_cache_append(&cache, c.len, nullptr, c.k.data(),
                                  c.v.data(), GQA_DTYPE_F32);
      append += NowSeconds() - t0;
      if (st != GQA_STATUS_OK) {
        r.pass = false, r.error = StatusText("append", st);
        return r;
      }
      const gqa_kv_attend_params p =
          AttendParams(c.len, Hq, c.q.data(), c.out.data());
      t0 = NowSeconds();
      st = gqa_block_cache_attend(&cache, &p, ws.data(), ws_bytes, pool);
      attend += NowSeconds() - t0;
      if (st != GQA_STATUS_OK) {
        r.pass = false, r.error = StatusText("attend", st);
        return r;
      }
    }
    if (rep > 0) attend_times.push_back(attend), append_times.push_back(append);
  }
  r.median_ms = Median(attend_times) * 1e3;
  r.min_ms = *std::min_element(attend_times.begin(), attend_times.end()) * 1e3;
  r.append_ms = Median(append_times) * 1e3;
  if (core_f16_ms > 0)
    r.ratio = r.median_ms / core_f16_ms, r.ratio_to = "core f16";
  // Reassemble out [B, S, Hq, D] and check it as a T = S attend.
  for (int64_t i = 0; i < chunks; ++i) {
    const Chunk& c = cs[i];
    for (int64_t b = 0; b < B; ++b) {
      const size_t t0 = static_cast<size_t>(b * S + i * chunk);
      std::copy(c.out.begin() + b * c.len * row_q,
                c.out.begin() + (b + 1) * c.len * row_q,
                out.begin() + t0 * row_q);
    }
  }
  CheckRows(cache, s, S, q, out, 16, CheckTolerance(dtype, false), &r);
  return r;
}

}  // namespace

Shape CachePrefillShape() {
  Shape s;
  s.name = "CP1";
  s.batch = 1, s.q_heads = 8, s.kv_heads = 2, s.head_dim = 128;
  s.q_len = s.kv_len = 1024;
  s.causal = true;
  return s;
}

std::vector<CacheRecord> BenchBlockCache(const Options& o, pthreadpool_t pool,
                                         double core_f16_prefill_ms,
                                         const std::function<void()>& reprobe) {
  std::vector<Shape> shapes;
  for (const Shape& s : o.shapes) {
    if (s.decode || (!s.layer && s.name == "custom")) shapes.push_back(s);
  }
  if (shapes.empty()) shapes = DecodePresets();
  std::vector<CacheRecord> records;
  for (const Shape& s : shapes) {
    const size_t first = records.size();
    // Rotation needs a power-of-two D (elsewhere only the plain types).
    const bool pow2 = (s.head_dim & (s.head_dim - 1)) == 0;
    for (const CacheType& ct : kDecodeTypes) {
      if (!ct.rotate || pow2) BenchDecodeType(s, ct, o, pool, &records);
    }
    // Ratios to the f32 cache of the same shape and T.
    for (size_t i = first; i < records.size(); ++i) {
      for (size_t j = first; j < records.size(); ++j) {
        if (records[j].dtype == "f32" &&
            records[j].shape.q_len == records[i].shape.q_len &&
            records[j].median_ms > 0 && records[i].median_ms > 0) {
          records[i].ratio = records[i].median_ms / records[j].median_ms;
          records[i].ratio_to = "f32";
        }
      }
    }
    if (reprobe) reprobe();
  }
  const Shape p = CachePrefillShape();
  std::vector<int64_t> chunks = {o.chunk};
  if (o.chunk < p.kv_len) chunks.push_back(p.kv_len);
  for (int32_t dtype : {GQA_DTYPE_F16, GQA_DTYPE_Q8}) {
    for (int64_t chunk : chunks)
      records.push_back(
          BenchPrefill(p, dtype, chunk, o, pool, core_f16_prefill_ms));
  }
  if (reprobe) reprobe();
  return records;
}

void PrintCacheTable(const std::vector<CacheRecord>& records,
                     const Roofs& roofs) {
  printf(
      "\nKV cache v2 (block cache, block_tokens %lld; roof = max(bytes / "
      "%.1f GB/s, flops / %.1f GFLOP/s), %d thread(s))\n",
      records.empty() ? 0LL : (long long)records[0].block_tokens,
      roofs.bw.best_gbps, roofs.peak_gflops, roofs.threads);
  printf("%-5s %-26s %-10s %9s %9s %9s %7s %7s %9s %6s %-4s %7s %-5s %9s %s\n",
         "case", "shape", "cache", "median_ms", "min_ms", "KB/step", "B/tok",
         "st_B/tok", "roof_ms", "%roof", "bind", "ratio", "goal", "max_err",
         "check");
  for (const CacheRecord& r : records) {
    const Shape& s = r.shape;
    char shape[64];
    if (r.prefill) {
      snprintf(shape, sizeof(shape), "B%lld Hq%lld Hkv%lld D%lld S%lld C%lld",
               (long long)s.batch, (long long)s.q_heads, (long long)s.kv_heads,
               (long long)s.head_dim, (long long)s.kv_len, (long long)r.chunk);
    } else {
      snprintf(shape, sizeof(shape), "B%lld Hq%lld Hkv%lld D%lld T%lld S%lld",
               (long long)s.batch, (long long)s.q_heads, (long long)s.kv_heads,
               (long long)s.head_dim, (long long)s.q_len, (long long)s.kv_len);
    }
    if (r.median_ms <= 0) {  // it did not run
      printf("%-5s %-26s %-10s FAIL: %s\n", s.name.c_str(), shape,
             TypeLabel(r.dtype, r.rotate, r.int8_qk).c_str(), r.error.c_str());
      continue;
    }
    const RoofOf f = Roof(r, roofs);
    char ratio[32] = "-";
    if (r.ratio > 0) snprintf(ratio, sizeof(ratio), "%.3fx", r.ratio);
    // Issue 12's goals for decode: q8 <= 0.30x and q4 <= 0.20x the f32
    // cache's time.
    const double goal =
        r.prefill || r.ratio_to != "f32"
            ? 0
            : (r.dtype == "q8" ? 0.30 : (r.dtype == "q4" ? 0.20 : 0));
    const char* goal_text =
        goal == 0 ? "-" : (r.ratio <= goal ? "met" : "MISS");
    char err[32] = "-";
    if (r.checked) snprintf(err, sizeof(err), "%.2e", r.max_abs_err);
    printf(
        "%-5s %-26s %-10s %9.3f %9.3f %9.1f %7.1f %8.1f %9.3f %5.1f%% %-4s "
        "%7s %-5s %9s %s\n",
        s.name.c_str(), shape, TypeLabel(r.dtype, r.rotate, r.int8_qk).c_str(),
        r.median_ms, r.min_ms, r.bytes / 1024.0, r.read_bytes_per_token,
        r.stored_bytes_per_token, f.ms, f.pct, f.memory ? "mem" : "fma", ratio,
        goal_text, err, !r.pass ? "FAIL" : (r.checked ? "ok" : "unchecked"));
    if (!r.error.empty()) printf("      %s\n", r.error.c_str());
    if (r.prefill && r.append_ms > 0)
      printf(
          "      (appends of the %lld-token chunks: %.3f ms; ratio is to "
          "the core's f16 prefill)\n",
          (long long)r.chunk, r.append_ms);
  }
}

}  // namespace gqa
