// gqa-bench: times the attention core on named presets or a given shape, and
// the whole Keras layer on its default cases; reports median/min time,
// GFLOP/s, GB/s, % of the FMA peak and of the read bandwidth measured in the
// same run, and the max error against the float64 reference; --json FILE
// writes one record per case. --cache runs the KV cache v2 cases and
// --accuracy its quantization errors (bench_block_cache.h).
//
//   gqa-bench                         all presets + layer cases
//   gqa-bench --preset P2 --threads 2 one preset
//   gqa-bench --cache --accuracy      the block cache: D1-D3 x f32/f16/q8/q4
//   gqa-bench --batch 1 --q-heads 8 --kv-heads 2 --head-dim 64
//             --q-len 512 --kv-len 512 --causal --dtype f16   (one line)
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthreadpool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_block_cache.h"
#include "bench/bench_core_report.h"
#include "bench/bench_drafts.h"
#include "bench/bench_options.h"
#include "bench/bench_pin.h"
#include "bench/bench_rope_step.h"
#include "bench/bench_steady.h"
#include "bench/bench_util.h"
#include "gqa/gqa.hpp"
#include "platforms/f16_fml.h"
#include "platforms/machine_peak.h"
#include "platforms/platform_kernels.h"
#include "src/attention_core.h"
#include "src/reference/attention_ref.h"
#include "src/reference/closeness.h"
#include "src/reference/f16_util.h"
#include "src/reference/reference.h"

namespace gqa {
namespace {

// Query-key pairs that the mask allows.
double Pairs(const Shape& s) {
  if (!s.causal || s.decode) {
    return static_cast<double>(s.q_len) * static_cast<double>(s.kv_len);
  }
  double n = 0;
  for (int64_t t = 0; t < s.q_len; ++t)
    n += static_cast<double>(std::min(t + 1, s.kv_len));
  return n;
}

// Core: q [B,T,Hq,D], k/v [B,S,Hkv,D] token-major, out f32 [B,T,Hq,D].
Record BenchCore(const Shape& s, const Options& o, pthreadpool_t pool) {
  Record r;
  r.shape = s;
  const size_t nq = s.batch * s.q_len * s.q_heads * s.head_dim;
  const size_t nkv = s.batch * s.kv_len * s.kv_heads * s.head_dim;
  const size_t elem = o.f16 ? 2 : 4;
  const size_t set_bytes = (nq + 2 * nkv) * elem;
  // --cold: enough copies to pass 512 MiB, so each rep reads from DRAM.
  const size_t copies = (o.cold || s.decode)
                            ? std::max<size_t>(1, (512u << 20) / set_bytes + 1)
                            : 1;
  std::vector<float> qf = RandomFloats(nq, 1, -1.5f, 1.5f);
  std::vector<float> kf = RandomFloats(nkv, 2, -1.5f, 1.5f);
  std::vector<float> vf = RandomFloats(nkv, 3, -1.0f, 1.0f);
  if (o.f16) {
    for (auto* v : {&qf, &kf, &vf}) reference::RoundAllF16(v);
  }
  std::vector<unsigned char> data(copies * set_bytes);
  for (size_t c = 0; c < copies; ++c) {
    unsigned char* base = data.data() + c * set_bytes;
    size_t off = 0;
    for (auto* v : {&qf, &kf, &vf}) {
      for (size_t i = 0; i < v->size(); ++i, off += elem) {
        reference::StoreAs((*v)[i], o.f16, base + off, 0);
      }
    }
  }
  std::vector<float> out(nq);
  AttentionParams p;
  p.batch = s.batch;
  p.q_len = s.q_len;
  p.kv_len = s.kv_len;
  p.q_heads = s.q_heads;
  p.kv_heads = s.kv_heads;
  p.head_dim = s.head_dim;
  p.q_stride_head = p.out_stride_head = s.head_dim;
  p.q_stride_token = p.out_stride_token = s.q_heads * s.head_dim;
  p.q_stride_batch = p.out_stride_batch = s.q_len * s.q_heads * s.head_dim;
  p.k_stride_head = p.v_stride_head = s.head_dim;
  p.k_stride_token = p.v_stride_token = s.kv_heads * s.head_dim;
  p.k_stride_batch = p.v_stride_batch = s.kv_len * s.kv_heads * s.head_dim;
  p.q_type = p.kv_type = o.f16 ? ElemType::kF16 : ElemType::kF32;
  p.out = out.data();
  p.scale = static_cast<float>(1.0 / sqrt(static_cast<double>(s.head_dim)));
  p.causal = s.causal;
  p.softcap = o.softcap;
  const std::vector<float> sinks(static_cast<size_t>(s.q_heads), 0.5f);
  if (o.sinks) p.sinks = sinks.data();
  if (s.decode)
    p.position_offset =
        s.kv_len - s.q_len;  // the queries are the newest tokens
  const AttentionPlan plan = PlanAttention(p);
  // With --softcap / --sinks the same case with the options off is timed
  // too, rep by rep in alternating order (the goal compares the two in one
  // run: no process-to-process layout or clock difference).
  const bool options = p.softcap > 0.0f || p.sinks != nullptr;
  AttentionParams p_off = p;
  p_off.softcap = 0.0f;
  p_off.sinks = nullptr;
  const AttentionPlan plan_off = options ? PlanAttention(p_off) : plan;
  Workspace ws(static_cast<size_t>(
      std::max(AttentionWorkspaceBytes(plan, o.threads),
               AttentionWorkspaceBytes(plan_off, o.threads))));
  std::vector<double> times, times_off, ratios;
  int rotation = 0;
  auto run_with = [&](AttentionParams* q, const AttentionPlan& pl) {
    const unsigned char* base = data.data() + (rotation++ % copies) * set_bytes;
    q->q = base;
    q->k = base + nq * elem;
    q->v = base + (nq + nkv) * elem;
    RunAttention(*q, pl, ws.data(), o.threads, pool);
  };
  auto run = [&]() { run_with(&p, plan); };
  auto timed = [&](AttentionParams* q, const AttentionPlan& pl) {
    const double t0 = NowSeconds();
    run_with(q, pl);
    return NowSeconds() - t0;
  };
  WarmUpUntilSteady(run, &r.steady);
  for (int rep = 0; rep < o.reps; ++rep) {
    double on, off = 0;
    if (options && rep % 2 == 1) off = timed(&p_off, plan_off);
    on = timed(&p, plan);
    if (options && rep % 2 == 0) off = timed(&p_off, plan_off);
    times.push_back(on);
    if (options) {
      times_off.push_back(off);
      ratios.push_back(on / off);
    }
  }
  ThrottleFigures(times, &r.steady);
  if (options) {
    run();  // the check below reads the options' output
    r.off_median_ms = Median(times_off) * 1e3;
    r.off_min_ms = *std::min_element(times_off.begin(), times_off.end()) * 1e3;
    r.paired_ratio = Median(ratios);
  }
  const double med = Median(times);
  r.median_ms = med * 1e3;
  r.min_ms = *std::min_element(times.begin(), times.end()) * 1e3;
  r.gflops = 4.0 * s.batch * s.q_heads * s.head_dim * Pairs(s) / med * 1e-9;
  // Bytes read: the keys some query may see (top-left causal with T < S
  // sees only the first T), plus q and out for non-decode shapes.
  const int64_t seen =
      (s.causal && !s.decode) ? std::min(s.q_len, s.kv_len) : s.kv_len;
  const double kv_bytes = 2.0 * static_cast<double>(nkv * elem) *
                          static_cast<double>(seen) /
                          static_cast<double>(s.kv_len);
  r.gbps = s.decode ? kv_bytes / med * 1e-9
                    : (kv_bytes + static_cast<double>(nq * elem + nq * 4)) /
                          med * 1e-9;
  // Check 64 sampled rows against the float64 oracle on the same inputs:
  // each row (b, t, u) alone, q [1,1,1,D] against its kv head's k/v
  // [1,S,1,D], at its query position (decode: the newest T tokens).
  std::mt19937_64 rng(5);
  const int64_t group = s.q_heads / s.kv_heads, D = s.head_dim;
  std::vector<float> got_rows;
  std::vector<double> want_rows;
  for (int i = 0; i < 64; ++i) {
    const int64_t b = rng() % s.batch, u = rng() % s.q_heads,
                  t = rng() % s.q_len;
    const int64_t g = u / group;
    reference::AttentionCall a;
    a.batch = a.q_len = a.q_heads = a.kv_heads = 1;
    a.kv_len = s.kv_len, a.head_dim = D;
    const size_t qrow =
        static_cast<size_t>(((b * s.q_len + t) * s.q_heads + u) * D);
    a.q.assign(qf.begin() + qrow, qf.begin() + qrow + D);
    a.k.resize(static_cast<size_t>(s.kv_len * D));
    a.v.resize(a.k.size());
    for (int64_t j = 0; j < s.kv_len; ++j) {
      const size_t kv =
          static_cast<size_t>(((b * s.kv_len + j) * s.kv_heads + g) * D);
      for (int64_t e = 0; e < D; ++e) {
        a.k[j * D + e] = kf[kv + e];
        a.v[j * D + e] = vf[kv + e];
      }
    }
    a.scale = 1.0 / sqrt(static_cast<double>(D));
    a.causal = s.causal;
    a.softcap = o.softcap;
    if (o.sinks) a.sinks = {0.5};  // the row's head, alone in the call
    a.position_offset = s.decode ? s.kv_len - s.q_len + t : t;
    const std::vector<double> want = reference::Attention(a).out;
    want_rows.insert(want_rows.end(), want.begin(), want.end());
    got_rows.insert(got_rows.end(), out.begin() + qrow, out.begin() + qrow + D);
  }
  const reference::Closeness close =
      reference::Compare(got_rows, want_rows, 0.0, 1e-4);
  r.max_abs_err = close.max_abs_err;
  r.pass = close.pass();
  return r;
}

// Whole layer: Fq = Fk = Fv = features; key omitted (self/cross attention).
Record BenchLayer(const Shape& s, const Options& o, pthreadpool_t pool) {
  Record r;
  r.shape = s;
  const int64_t F = s.features, HD = s.q_heads * s.head_dim,
                KD = s.kv_heads * s.head_dim;
  auto glorot = [](size_t n, size_t fi, size_t fo, uint64_t seed) {
    const float lim = sqrtf(6.0f / static_cast<float>(fi + fo));
    return RandomFloats(n, seed, -lim, lim);
  };
  std::vector<float> wq = glorot(F * HD, F, HD, 11),
                     wk = glorot(F * KD, F, KD, 12),
                     wv = glorot(F * KD, F, KD, 13),
                     wo = glorot(HD * F, HD, F, 14);
  std::vector<float> bq = RandomFloats(HD, 15, -.1f, .1f),
                     bk = RandomFloats(KD, 16, -.1f, .1f),
                     bv = RandomFloats(KD, 17, -.1f, .1f),
                     bo = RandomFloats(F, 18, -.1f, .1f);
  std::vector<float> query = RandomFloats(s.batch * s.q_len * F, 19, -1, 1);
  std::vector<float> value = RandomFloats(s.batch * s.kv_len * F, 20, -1, 1);
  std::vector<std::vector<float>*> all = {&wq, &bq, &wk, &bk,    &wv,
                                          &bv, &wo, &bo, &query, &value};
  std::vector<std::vector<uint16_t>> halves(all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    if (!o.f16) continue;
    halves[i] = reference::ToHalf(*all[i]);
    reference::RoundAllF16(all[i]);
  }
  auto ptr = [&](size_t i) -> const void* {
    return o.f16 ? static_cast<const void*>(halves[i].data()) : all[i]->data();
  };
  gqa_layer_config c;
  gqa_layer_config_init(&c, s.head_dim, s.q_heads, s.kv_heads, F, F);
  c.dtype = o.f16 ? GQA_DTYPE_F16 : GQA_DTYPE_F32;
  gqa_layer_weights w{ptr(0), ptr(1),  ptr(2),  ptr(3), ptr(4),
                      ptr(5), nullptr, nullptr, ptr(6), ptr(7)};
  Layer layer;
  Status st = Layer::Create(c, w, &layer);
  if (!st.ok()) {
    fprintf(stderr, "%s: %s\n", s.name.c_str(), st.message().c_str());
    r.pass = false;
    return r;
  }
  std::vector<unsigned char> out(s.batch * s.q_len * F * (o.f16 ? 2 : 4));
  gqa_forward_args a{};
  a.batch = s.batch;
  a.query_len = s.q_len;
  a.value_len = s.kv_len;
  a.query = ptr(8);
  a.value = ptr(9);
  a.use_causal_mask = s.causal;
  a.output = out.data();
  size_t bytes = 0;
  layer.WorkspaceSize(s.batch, s.q_len, s.kv_len, &bytes, o.threads);
  Workspace ws(bytes);
  std::vector<double> times;
  WarmUpUntilSteady([&]() { st = layer.Forward(a, ws, pool); }, &r.steady);
  for (int rep = 0; rep < o.reps; ++rep) {
    const double t0 = NowSeconds();
    st = layer.Forward(a, ws, pool);
    times.push_back(NowSeconds() - t0);
  }
  ThrottleFigures(times, &r.steady);
  const double med = Median(times);
  r.median_ms = med * 1e3;
  r.min_ms = *std::min_element(times.begin(), times.end()) * 1e3;
  const double proj =
      2.0 * s.batch * (s.q_len * F * HD * 2.0 + s.kv_len * F * KD * 2.0);
  r.gflops =
      (proj + 4.0 * s.batch * s.q_heads * s.head_dim * Pairs(s)) / med * 1e-9;
  const size_t elem = o.f16 ? 2 : 4;
  r.gbps =
      static_cast<double>((query.size() + value.size() + out.size() / elem +
                           wq.size() + wk.size() + wv.size() + wo.size()) *
                          elem) /
      med * 1e-9;
  reference::Config rc;
  rc.head_dim = s.head_dim;
  rc.q_heads = s.q_heads;
  rc.kv_heads = s.kv_heads;
  rc.q_features = rc.k_features = rc.v_features = F;
  reference::Weights rw;
  auto D = [](const std::vector<float>& v) { return reference::ToDouble(v); };
  rw.query_kernel = D(wq), rw.query_bias = D(bq), rw.key_kernel = D(wk),
  rw.key_bias = D(bk);
  rw.value_kernel = D(wv), rw.value_bias = D(bv), rw.output_kernel = D(wo),
  rw.output_bias = D(bo);
  reference::Call call;
  call.batch = s.batch;
  call.q_len = s.q_len;
  call.kv_len = s.kv_len;
  call.query = D(query);
  call.value = D(value);
  call.causal = s.causal;
  const reference::Result want = reference::Forward(rc, rw, call);
  // f16 output rounding: 2^-11 relative on |out| < ~2 -> 1e-3; f32: 1e-4.
  const reference::Closeness close = reference::Compare(
      reference::Widen(out.data(), want.output.size(), o.f16), want.output, 0.0,
      o.f16 ? 2e-3 : 1e-4);
  r.max_abs_err = close.max_abs_err;
  r.pass = st.ok() && close.pass();
  return r;
}

}  // namespace
}  // namespace gqa

int main(int argc, char** argv) {
  using namespace gqa;
  Options o;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      fputs(kBenchUsage, stdout);
      return 0;
    }
  }
  std::string error;
  DeviceArgs dev;  // --cpus, --target (bench/bench_pin.h)
  const bool threads_given = HasOption(argc, argv, "--threads");
  if (!ExtractDeviceArgs(&argc, argv, &dev, &error) ||
      !ParseBenchArgs(argc, argv, &o, &error)) {
    fprintf(stderr, "gqa-bench: %s\n%s", error.c_str(), kBenchUsage);
    return 2;
  }
  int set = -1;  // this process's CPU set (forked per set), -1: none
  const int set_rc = EnterCpuSet(dev, threads_given, &o.threads, &o.json, &set);
  if (set_rc >= 0) return set_rc;
  ApplyTarget(dev);
  pthreadpool_t pool = o.threads > 1 ? pthreadpool_create(o.threads) : nullptr;
  if (set >= 0 && pool && !CheckPoolAffinity(pool, dev.cpu_sets[set], &error)) {
    fprintf(stderr, "gqa-bench: %s\n", error.c_str());
    return 1;
  }
  // The roofs are probed before the cases and again after each one, and
  // the best of all probes is used: on a shared or noisy host a single probe
  // may catch a slow moment and flatter the percentages.
  size_t probe_n = 0;
  float* probe = AllocReadProbe(size_t{512} << 20, &probe_n);
  if (!probe) {
    fprintf(stderr, "cannot allocate the 512 MiB bandwidth probe\n");
    return 1;
  }
  // The read probe at every load width, with one thread and with the
  // run's threads (the roof is the best width at the run's thread count).
  Roofs roofs;
  roofs.threads = o.threads;
  roofs.peak_gflops = MeasureFmaPeakGflops(pool);
  roofs.bw = MeasureReadBandwidth(probe, probe_n, pool);
  roofs.bw_1t = pool ? MeasureReadBandwidth(probe, probe_n, nullptr) : roofs.bw;
  int probes = 1;
  auto reprobe = [&]() {
    roofs.peak_gflops = std::max(roofs.peak_gflops, MeasureFmaPeakGflops(pool));
    roofs.bw.Merge(MeasureReadBandwidth(probe, probe_n, pool));
    if (!pool) roofs.bw_1t = roofs.bw;
    ++probes;
  };
  printf("gqa-bench: target %s, %d thread(s), dtype %s%s%s%s\n",
         DispatchedTargetName(), o.threads, o.f16 ? "f16" : "f32",
         o.cold ? ", cold" : "",
         o.softcap > 0.0f ? (", softcap " + std::to_string(o.softcap)).c_str()
                          : "",
         o.sinks ? ", sinks" : "");
  const F16FmlKernels* fml = BestF16FmlKernels();
  printf("gqa-bench: platform kernels %s (f16 FMLAL: %s)\n",
         PlatformKernelsName(),
         fml == nullptr                                  ? "not on this CPU"
         : PlatformKernelsMode() == PlatformKernels::kOn ? fml->name
                                                         : "off");
  fflush(stdout);
  std::vector<Record> records;
  bool all_pass = true;
  std::vector<Shape> shapes = o.shapes;
  // --cache: the core's f16 prefill of the cache-prefill shape is the
  // baseline of the cache's chunked prefill.
  if (o.cache) shapes.push_back(CachePrefillShape());
  for (size_t i = 0; i < shapes.size(); ++i) {
    const Shape& s = shapes[i];
    const bool cache_baseline = o.cache && i + 1 == shapes.size();
    Options so = o;
    if (cache_baseline) so.f16 = true;
    Record r = s.layer ? BenchLayer(s, so, pool) : BenchCore(s, so, pool);
    r.dtype = so.f16 ? "f16" : "f32";
    r.threads = o.threads;
    all_pass = all_pass && r.pass;
    records.push_back(r);
    reprobe();
  }
  std::vector<CacheRecord> cache_records;
  if (o.cache) {
    const double core_f16_ms = records.empty() ? 0 : records.back().median_ms;
    cache_records = BenchBlockCache(o, pool, core_f16_ms, reprobe);
    for (const CacheRecord& r : cache_records) all_pass = all_pass && r.pass;
  }
  std::vector<AccuracyRecord> accuracy;
  if (o.accuracy) accuracy = BenchAccuracy(o, pool);
  std::vector<RopeStepRecord> rope_steps;
  if (o.rope) {
    rope_steps = BenchRopeSteps(o, pool);
    for (const RopeStepRecord& r : rope_steps) all_pass = all_pass && r.pass;
  }
  std::vector<DraftsRecord> drafts;
  if (o.drafts) drafts = BenchDrafts(o, pool);
  for (const DraftsRecord& r : drafts) all_pass = all_pass && r.pass;
  free(probe);
  PrintCoreTable(o, roofs, probes, pool != nullptr, &records);
  if (o.cache) PrintCacheTable(cache_records, roofs);
  if (o.accuracy) PrintAccuracyTable(accuracy);
  if (o.rope) PrintRopeStepTable(rope_steps);
  if (o.drafts) PrintDraftsTable(drafts);
  if (pool) pthreadpool_destroy(pool);
  if (!o.json.empty()) {
    FILE* f = fopen(o.json.c_str(), "w");
    if (!f) {
      fprintf(stderr, "cannot write %s\n", o.json.c_str());
      return 1;
    }
    fprintf(f, "[\n");
    bool first = true;
    WriteCoreJson(f, o, roofs, records, &first);
    fprintf(f, "%s  %s", first ? "" : ",\n",
            DeviceJson(set >= 0 ? dev.cpu_sets[set] : std::vector<int>{},
                       set >= 0 ? dev.cpu_labels[set] : "",
                       DispatchedTargetName(), o.threads)
                .c_str());
    first = false;
    WriteCacheJson(f, cache_records, roofs, &first);
    WriteAccuracyJson(f, accuracy, &first);
    WriteRopeStepJson(f, rope_steps, &first);
    WriteDraftsJson(f, drafts, &first);
    fprintf(f, "\n]\n");
    fclose(f);
  }
  return all_pass ? 0 : 1;
}
