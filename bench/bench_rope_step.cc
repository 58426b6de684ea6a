// gqa-bench --rope (see bench_rope_step.h).
//
// A cache of S - 1 tokens is filled once and copied into enough pools to
// pass 512 MiB (shared table and lengths), as the --cache decode cases do.
// A timed step appends token S - 1 to the next copy and attends its query
// against all S tokens; the lengths are then put back (outside the timing).
// Plain and fused steps alternate, each on its own copy, so both see the
// same cold caches and the same machine state; the medians are compared.
#include "bench/bench_rope_step.h"

#include <string.h>

#include <algorithm>
#include <vector>

#include "bench/bench_block_cache_util.h"
#include "bench/bench_util.h"
#include "gqa/block_cache.h"
#include "gqa/gqa.hpp"
#include "gqa/rope.h"
#include "platforms/machine_peak.h"

namespace gqa {
namespace {

constexpr size_t kColdBytes = size_t{512} << 20;

// Llama 3.1's RoPE: theta 500000, llama3 scaling (factor 8), R = D.
gqa_rope_params LlamaRope() {
  gqa_rope_params p;
  gqa_rope_params_init(&p);
  p.theta = 500000.0;
  p.scaling = GQA_ROPE_SCALING_LLAMA3;
  p.factor = 8.0;
  return p;
}

void BenchOne(const Shape& s, int32_t dtype, const Options& o,
              pthreadpool_t pool, RopeStepRecord* r) {
  const int64_t S = s.kv_len, B = s.batch, Hq = s.q_heads, Hkv = s.kv_heads,
                D = s.head_dim;
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
  // Even copies for plain steps, odd ones for fused steps.
  st = set.Init(config, std::max<size_t>(2, 2 * (kColdBytes / pool_bytes / 2)));
  if (st != GQA_STATUS_OK) return fail("cache init");
  const gqa_rope_params rope = LlamaRope();
  {
    const size_t n = static_cast<size_t>(B * (S - 1) * Hkv * D);
    const std::vector<float> k = RandomFloats(n, 2, -1.5f, 1.5f);
    const std::vector<float> v = RandomFloats(n, 3, -1.0f, 1.0f);
    gqa_block_cache c0 = set.Cache(0);
    st = gqa_block_cache_append_rope(&c0, S - 1, nullptr, k.data(), v.data(),
                                     GQA_DTYPE_F32, &rope, nullptr);
    if (st != GQA_STATUS_OK) return fail("append_rope");
  }
  set.Replicate();
  const size_t nk = static_cast<size_t>(B * Hkv * D);
  const size_t nq = static_cast<size_t>(B * Hq * D);
  const std::vector<float> k1 = RandomFloats(nk, 4, -1.5f, 1.5f);
  const std::vector<float> v1 = RandomFloats(nk, 5, -1.0f, 1.0f);
  const std::vector<float> q = RandomFloats(nq, 1, -1.5f, 1.5f);
  std::vector<float> out_plain(nq, NAN), out_rope(nq, NAN);
  gqa_kv_attend_params plain = AttendParams(1, Hq, q.data(), out_plain.data());
  gqa_kv_attend_params fused = AttendParams(1, Hq, q.data(), out_rope.data());
  fused.q_rope = &rope;
  size_t bytes_plain = 0, bytes_rope = 0;
  gqa_block_cache c0 = set.Cache(0);
  if ((st = gqa_block_cache_attend_workspace_size(
           &c0, &plain, o.threads, &bytes_plain)) != GQA_STATUS_OK ||
      (st = gqa_block_cache_attend_workspace_size(
           &c0, &fused, o.threads, &bytes_rope)) != GQA_STATUS_OK) {
    return fail("attend_workspace_size");
  }
  Workspace ws(std::max(bytes_plain, bytes_rope));
  std::vector<int64_t> back(static_cast<size_t>(B), S - 1);
  auto step = [&](size_t copy, bool with_rope) {
    gqa_block_cache c = set.Cache(copy);
    const double t0 = NowSeconds();
    st = with_rope
             ? gqa_block_cache_append_rope(&c, 1, nullptr, k1.data(), v1.data(),
                                           GQA_DTYPE_F32, &rope, nullptr)
             : gqa_block_cache_append(&c, 1, nullptr, k1.data(), v1.data(),
                                      GQA_DTYPE_F32);
    if (st == GQA_STATUS_OK) {
      st = gqa_block_cache_attend(&c, with_rope ? &fused : &plain, ws.data(),
                                  ws.size(), pool);
    }
    const double t = NowSeconds() - t0;
    memcpy(c.lengths, back.data(), back.size() * 8);
    return t;
  };
  std::vector<double> t_plain, t_rope;
  const size_t pairs = set.copies() / 2;
  for (int rep = 0; rep < o.reps + 1 && st == GQA_STATUS_OK; ++rep) {
    const size_t c = static_cast<size_t>(rep + 1) % pairs;
    // Alternate which goes first, so neither always follows the other.
    const bool rope_first = rep % 2 == 1;
    const double a = step(2 * c + (rope_first ? 1 : 0), rope_first);
    const double b = step(2 * c + (rope_first ? 0 : 1), !rope_first);
    if (rep > 0) {  // rep 0 warms up
      t_plain.push_back(rope_first ? b : a);
      t_rope.push_back(rope_first ? a : b);
    }
  }
  if (st != GQA_STATUS_OK) return fail("step");
  r->plain_ms = Median(t_plain) * 1e3;
  r->rope_ms = Median(t_rope) * 1e3;
  r->ratio = r->rope_ms / r->plain_ms;
  // The check: the fused step against gqa_rope on q and k, then the plain
  // calls, on copy 0 (positions S - 1 for the new key and the query).
  std::vector<int64_t> positions(static_cast<size_t>(B), S - 1);
  std::vector<float> k_rot(nk), q_rot(nq), out_check(nq, NAN);
  if ((st = gqa_rope(&rope, B, 1, Hkv, D, positions.data(), k1.data(),
                     GQA_DTYPE_F32, k_rot.data(), GQA_DTYPE_F32)) !=
          GQA_STATUS_OK ||
      (st = gqa_rope(&rope, B, 1, Hq, D, positions.data(), q.data(),
                     GQA_DTYPE_F32, q_rot.data(), GQA_DTYPE_F32)) !=
          GQA_STATUS_OK) {
    return fail("rope");
  }
  step(1, true);  // out_rope from a fused step on a fresh copy
  gqa_block_cache c = set.Cache(0);
  gqa_kv_attend_params check =
      AttendParams(1, Hq, q_rot.data(), out_check.data());
  if ((st = gqa_block_cache_append(&c, 1, nullptr, k_rot.data(), v1.data(),
                                   GQA_DTYPE_F32)) != GQA_STATUS_OK ||
      (st = gqa_block_cache_attend(&c, &check, ws.data(), ws.size(), pool)) !=
          GQA_STATUS_OK) {
    return fail("unfused step");
  }
  memcpy(c.lengths, back.data(), back.size() * 8);
  r->checked = true;
  r->pass = memcmp(out_rope.data(), out_check.data(), nq * 4) == 0;
  if (!r->pass) r->error = "the fused step differs from gqa_rope + plain calls";
}

}  // namespace

std::vector<RopeStepRecord> BenchRopeSteps(const Options& o,
                                           pthreadpool_t pool) {
  std::vector<RopeStepRecord> records;
  for (const Shape& s : DecodeShapesOf(o)) {
    for (int32_t dtype : {GQA_DTYPE_F32, GQA_DTYPE_F16, GQA_DTYPE_Q8}) {
      RopeStepRecord r;
      r.shape = s;
      r.shape.q_len = 1;
      r.dtype = DtypeName(dtype);
      r.threads = o.threads;
      r.block_tokens = o.block_tokens;
      BenchOne(s, dtype, o, pool, &r);
      records.push_back(r);
    }
  }
  return records;
}

void PrintRopeStepTable(const std::vector<RopeStepRecord>& records) {
  printf(
      "\nDecode step with fused RoPE (block cache: append 1 token + attend, "
      "llama3 RoPE on k and q vs none, interleaved medians; goal <= 1.05x)\n");
  printf("%-5s %-26s %-5s %9s %9s %7s %-5s %s\n", "case", "shape", "cache",
         "plain_ms", "rope_ms", "ratio", "goal", "check");
  for (const RopeStepRecord& r : records) {
    const Shape& s = r.shape;
    const std::string label = DecodeShapeLabel(s, 1);
    const char* shape = label.c_str();
    if (r.plain_ms <= 0) {
      printf("%-5s %-26s %-5s FAIL: %s\n", s.name.c_str(), shape,
             r.dtype.c_str(), r.error.c_str());
      continue;
    }
    printf("%-5s %-26s %-5s %9.3f %9.3f %6.3fx %-5s %s\n", s.name.c_str(),
           shape, r.dtype.c_str(), r.plain_ms, r.rope_ms, r.ratio,
           r.ratio <= 1.05 ? "met" : "MISS",
           !r.pass ? "FAIL" : (r.checked ? "ok" : "unchecked"));
    if (!r.error.empty()) printf("      %s\n", r.error.c_str());
  }
}

void WriteRopeStepJson(FILE* f, const std::vector<RopeStepRecord>& records,
                       bool* first) {
  for (const RopeStepRecord& r : records) {
    const Shape& s = r.shape;
    fprintf(f,
            "%s  {\"name\": \"%s\", \"kind\": \"rope_step\", \"batch\": %lld, "
            "\"q_heads\": %lld, \"kv_heads\": %lld, \"head_dim\": %lld, "
            "\"q_len\": 1, \"kv_len\": %lld, \"dtype\": \"%s\", "
            "\"threads\": %d, \"block_tokens\": %lld, \"plain_ms\": %s, "
            "\"rope_ms\": %s, \"ratio\": %s, \"checked\": %s, \"pass\": %s}",
            *first ? "" : ",\n", s.name.c_str(), (long long)s.batch,
            (long long)s.q_heads, (long long)s.kv_heads, (long long)s.head_dim,
            (long long)s.kv_len, r.dtype.c_str(), r.threads,
            (long long)r.block_tokens, Num("%.6f", r.plain_ms).c_str(),
            Num("%.6f", r.rope_ms).c_str(), Num("%.4f", r.ratio).c_str(),
            r.checked ? "true" : "false", r.pass ? "true" : "false");
    *first = false;
  }
}

}  // namespace gqa
