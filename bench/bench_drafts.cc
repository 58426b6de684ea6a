// gqa-bench --drafts (see bench_drafts.h).
//
// A cache of S - T tokens is filled once and copied into enough pools to
// pass 512 MiB (shared table and lengths), as the --cache decode cases do.
// A timed verification appends the T drafts to the next copy, attends their
// T queries with a chain tree mask and truncates to S - T + 2; a timed step
// appends one token and attends its query. The lengths are put back outside
// the timing. Verifications and steps alternate, each on its own copy.
#include "bench/bench_drafts.h"

#include <math.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "bench/bench_block_cache_util.h"
#include "bench/bench_util.h"
#include "gqa/block_cache.h"
#include "gqa/gqa.hpp"

namespace gqa {
namespace {

constexpr size_t kColdBytes = size_t{512} << 20;
constexpr int64_t kKept = 2;  // drafts accepted by the timed verification

// Rows [B, T, H, D] -> the rows of token t, [B, 1, H, D].
std::vector<float> TokenRows(const std::vector<float>& x, int64_t B, int64_t T,
                             int64_t HD, int64_t t) {
  std::vector<float> y(static_cast<size_t>(B * HD));
  for (int64_t b = 0; b < B; ++b)
    memcpy(&y[b * HD], &x[(b * T + t) * HD], static_cast<size_t>(HD) * 4);
  return y;
}

void BenchOne(const Shape& s, int32_t dtype, const Options& o,
              pthreadpool_t pool, DraftsRecord* r) {
  const int64_t T = r->drafts, S = s.kv_len, B = s.batch, Hq = s.q_heads,
                Hkv = s.kv_heads, D = s.head_dim, S0 = S - T;
  const gqa_block_cache_config config =
      ConfigOf(s, S, o.block_tokens, dtype, false);
  gqa_block_cache_layout layout{};
  gqa_status st = gqa_block_cache_layout_of(&config, &layout);
  auto fail = [&](const char* call) {
    r->pass = false;
    r->error = StatusText(call, st);
  };
  if (st != GQA_STATUS_OK) return fail("layout_of");
  const size_t pool_bytes =
      static_cast<size_t>(B * layout.table_columns * layout.block_bytes);
  CacheSet set;
  st = set.Init(config, std::max<size_t>(2, 2 * (kColdBytes / pool_bytes / 2)));
  if (st != GQA_STATUS_OK) return fail("cache init");
  {
    const size_t n = static_cast<size_t>(B * S0 * Hkv * D);
    const std::vector<float> k = RandomFloats(n, 2, -1.5f, 1.5f);
    const std::vector<float> v = RandomFloats(n, 3, -1.0f, 1.0f);
    gqa_block_cache c0 = set.Cache(0);
    st = gqa_block_cache_append(&c0, S0, nullptr, k.data(), v.data(),
                                GQA_DTYPE_F32);
    if (st != GQA_STATUS_OK) return fail("append");
  }
  set.Replicate();
  // Drafts k, v [B, T, Hkv, D], their queries [B, T, Hq, D], a chain mask.
  const std::vector<float> kd = RandomFloats(B * T * Hkv * D, 4, -1.5f, 1.5f);
  const std::vector<float> vd = RandomFloats(B * T * Hkv * D, 5, -1.0f, 1.0f);
  const std::vector<float> q = RandomFloats(B * T * Hq * D, 1, -1.5f, 1.5f);
  std::vector<uint8_t> tree(static_cast<size_t>(B * T * T), 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = 0; j <= i; ++j) tree[(b * T + i) * T + j] = 1;
  std::vector<float> out_verify(q.size(), NAN), out_step(B * Hq * D, NAN);
  gqa_kv_attend_params verify =
      AttendParams(T, Hq, q.data(), out_verify.data());
  verify.tree_mask = tree.data();
  const std::vector<float> q0 = TokenRows(q, B, T, Hq * D, 0);
  const std::vector<float> k0 = TokenRows(kd, B, T, Hkv * D, 0);
  const std::vector<float> v0 = TokenRows(vd, B, T, Hkv * D, 0);
  gqa_kv_attend_params step = AttendParams(1, Hq, q0.data(), out_step.data());
  size_t bytes_verify = 0, bytes_step = 0;
  gqa_block_cache c0 = set.Cache(0);
  if ((st = gqa_block_cache_attend_workspace_size(
           &c0, &verify, o.threads, &bytes_verify)) != GQA_STATUS_OK ||
      (st = gqa_block_cache_attend_workspace_size(
           &c0, &step, o.threads, &bytes_step)) != GQA_STATUS_OK) {
    return fail("attend_workspace_size");
  }
  Workspace ws(std::max(bytes_verify, bytes_step));
  const std::vector<int64_t> back(static_cast<size_t>(B), S0);
  const std::vector<int64_t> kept(static_cast<size_t>(B), S0 + kKept);
  auto run_verify = [&](size_t copy) {
    gqa_block_cache c = set.Cache(copy);
    const double t0 = NowSeconds();
    st = gqa_block_cache_append(&c, T, nullptr, kd.data(), vd.data(),
                                GQA_DTYPE_F32);
    if (st == GQA_STATUS_OK)
      st = gqa_block_cache_attend(&c, &verify, ws.data(), ws.size(), pool);
    if (st == GQA_STATUS_OK) st = gqa_block_cache_truncate(&c, kept.data());
    const double t = NowSeconds() - t0;
    memcpy(c.lengths, back.data(), back.size() * 8);
    return t;
  };
  auto run_step = [&](size_t copy) {
    gqa_block_cache c = set.Cache(copy);
    const double t0 = NowSeconds();
    st = gqa_block_cache_append(&c, 1, nullptr, k0.data(), v0.data(),
                                GQA_DTYPE_F32);
    if (st == GQA_STATUS_OK)
      st = gqa_block_cache_attend(&c, &step, ws.data(), ws.size(), pool);
    const double t = NowSeconds() - t0;
    memcpy(c.lengths, back.data(), back.size() * 8);
    return t;
  };
  std::vector<double> t_verify, t_step;
  const size_t pairs = set.copies() / 2;
  for (int rep = 0; rep < o.reps + 1 && st == GQA_STATUS_OK; ++rep) {
    const size_t c = static_cast<size_t>(rep + 1) % pairs;
    const bool verify_first = rep % 2 == 1;  // neither always goes first
    double a = 0, b = 0;
    if (verify_first) {
      a = run_verify(2 * c);
      if (st == GQA_STATUS_OK) b = run_step(2 * c + 1);
    } else {
      b = run_step(2 * c + 1);
      if (st == GQA_STATUS_OK) a = run_verify(2 * c);
    }
    if (rep > 0) t_verify.push_back(a), t_step.push_back(b);  // 0: warm-up
  }
  if (st != GQA_STATUS_OK) return fail("verify / step");
  r->verify_ms = Median(t_verify) * 1e3;
  r->step_ms = Median(t_step) * 1e3;
  r->steps = r->verify_ms / r->step_ms;
  // The check: the T drafts' outputs against T one-token steps on copy 1.
  run_verify(0);
  gqa_block_cache c = set.Cache(1);
  for (int64_t t = 0; t < T && st == GQA_STATUS_OK; ++t) {
    const std::vector<float> qt = TokenRows(q, B, T, Hq * D, t);
    const std::vector<float> kt = TokenRows(kd, B, T, Hkv * D, t);
    const std::vector<float> vt = TokenRows(vd, B, T, Hkv * D, t);
    gqa_kv_attend_params one = AttendParams(1, Hq, qt.data(), out_step.data());
    st = gqa_block_cache_append(&c, 1, nullptr, kt.data(), vt.data(),
                                GQA_DTYPE_F32);
    if (st == GQA_STATUS_OK)
      st = gqa_block_cache_attend(&c, &one, ws.data(), ws.size(), pool);
    for (int64_t b = 0; b < B && st == GQA_STATUS_OK; ++b)
      for (int64_t i = 0; i < Hq * D; ++i) {
        const double d = fabs(out_step[b * Hq * D + i] -
                              out_verify[(b * T + t) * Hq * D + i]);
        r->max_diff = std::max(r->max_diff, isnan(d) ? INFINITY : d);
      }
  }
  memcpy(c.lengths, back.data(), back.size() * 8);
  if (st != GQA_STATUS_OK) return fail("one-by-one check");
  r->checked = true;
  r->pass = r->max_diff <= 1e-5;
  if (!r->pass) r->error = "the drafts' outputs differ from one-by-one steps";
}

}  // namespace

std::vector<DraftsRecord> BenchDrafts(const Options& o, pthreadpool_t pool) {
  std::vector<DraftsRecord> records;
  for (const Shape& s : DecodeShapesOf(o)) {
    for (int32_t dtype : {GQA_DTYPE_F32, GQA_DTYPE_F16, GQA_DTYPE_Q8}) {
      DraftsRecord r;
      r.shape = s;
      r.shape.q_len = r.drafts;
      r.dtype = DtypeName(dtype);
      r.threads = o.threads;
      r.block_tokens = o.block_tokens;
      BenchOne(s, dtype, o, pool, &r);
      records.push_back(r);
    }
  }
  return records;
}

void PrintDraftsTable(const std::vector<DraftsRecord>& records) {
  printf(
      "\nDraft verification (block cache: append 4 drafts + chain tree-mask "
      "attend + truncate to 2, vs one decode step; interleaved medians)\n");
  printf("%-5s %-26s %-5s %9s %9s %8s %9s %s\n", "case", "shape", "cache",
         "step_ms", "verify_ms", "steps", "max_diff", "check");
  for (const DraftsRecord& r : records) {
    const Shape& s = r.shape;
    const std::string label = DecodeShapeLabel(s, r.drafts);
    const char* shape = label.c_str();
    if (r.step_ms <= 0) {
      printf("%-5s %-26s %-5s FAIL: %s\n", s.name.c_str(), shape,
             r.dtype.c_str(), r.error.c_str());
      continue;
    }
    printf("%-5s %-26s %-5s %9.3f %9.3f %7.2fx %9.2e %s\n", s.name.c_str(),
           shape, r.dtype.c_str(), r.step_ms, r.verify_ms, r.steps, r.max_diff,
           !r.pass ? "FAIL" : (r.checked ? "ok" : "unchecked"));
    if (!r.error.empty()) printf("      %s\n", r.error.c_str());
  }
}

void WriteDraftsJson(FILE* f, const std::vector<DraftsRecord>& records,
                     bool* first) {
  for (const DraftsRecord& r : records) {
    const Shape& s = r.shape;
    fprintf(f,
            "%s  {\"name\": \"%s\", \"kind\": \"drafts\", \"batch\": %lld, "
            "\"q_heads\": %lld, \"kv_heads\": %lld, \"head_dim\": %lld, "
            "\"q_len\": %lld, \"kv_len\": %lld, \"dtype\": \"%s\", "
            "\"threads\": %d, \"block_tokens\": %lld, \"step_ms\": %s, "
            "\"verify_ms\": %s, \"steps\": %s, \"max_diff\": %s, "
            "\"checked\": %s, \"pass\": %s}",
            *first ? "" : ",\n", s.name.c_str(), (long long)s.batch,
            (long long)s.q_heads, (long long)s.kv_heads, (long long)s.head_dim,
            (long long)r.drafts, (long long)s.kv_len, r.dtype.c_str(),
            r.threads, (long long)r.block_tokens,
            Num("%.6f", r.step_ms).c_str(), Num("%.6f", r.verify_ms).c_str(),
            Num("%.4f", r.steps).c_str(), Num("%.3e", r.max_diff).c_str(),
            r.checked ? "true" : "false", r.pass ? "true" : "false");
    *first = false;
  }
}

}  // namespace gqa
