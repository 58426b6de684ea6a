// gqa-bench's accuracy table of the KV cache v2 (q8 and q4 caches, with
// and without rotation, against the float64 oracle on the f32 rows) and the
// JSON records of the cache and accuracy cases (see bench_block_cache.h).
#include <math.h>
#include <stdio.h>

#include <algorithm>
#include <string>
#include <vector>

#include "bench/bench_block_cache.h"
#include "bench/bench_block_cache_util.h"
#include "gqa/block_cache.h"
#include "gqa/gqa.hpp"
#include "src/reference/attention_ref.h"

namespace gqa {

std::vector<AccuracyRecord> BenchAccuracy(const Options& o,
                                          pthreadpool_t pool) {
  std::vector<AccuracyRecord> records;
  const int64_t D = 128, Hq = 8, Hkv = 2;
  const int64_t outlier_channels[] = {5, 37, 70, 101};
  const CacheType types[] = {
      {GQA_DTYPE_F32, false},     {GQA_DTYPE_Q8, false},
      {GQA_DTYPE_Q8, true},       {GQA_DTYPE_Q4, false},
      {GQA_DTYPE_Q4, true},       {GQA_DTYPE_Q8, false, true},
      {GQA_DTYPE_Q8, true, true}, {GQA_DTYPE_Q4, true, true}};
  for (int64_t S : {int64_t{1024}, int64_t{4096}}) {
    for (bool outliers : {false, true}) {
      Shape s;
      s.batch = 1, s.q_heads = Hq, s.kv_heads = Hkv, s.head_dim = D;
      s.q_len = 1, s.kv_len = S;
      std::vector<float> q = NormalFloats(static_cast<size_t>(Hq * D), 31);
      std::vector<float> k = NormalFloats(static_cast<size_t>(S * Hkv * D), 32);
      std::vector<float> v = NormalFloats(k.size(), 33);
      if (outliers) {
        for (size_t row = 0; row < k.size() / D; ++row) {
          for (int64_t c : outlier_channels) k[row * D + c] *= 10.0f;
        }
      }
      // The float64 oracle on the f32 rows: out and probabilities.
      reference::AttentionCall a;
      a.batch = 1, a.q_len = 1, a.kv_len = S, a.q_heads = Hq;
      a.kv_heads = Hkv, a.head_dim = D;
      a.q.assign(q.begin(), q.end());
      a.k.assign(k.begin(), k.end());
      a.v.assign(v.begin(), v.end());
      a.scale = 1.0 / sqrt(static_cast<double>(D));
      a.causal = true;
      a.position_offset = S - 1;
      a.want_scores = true;
      const reference::AttentionResult want = reference::Attention(a);
      for (const CacheType& ct : types) {
        AccuracyRecord r;
        r.data = outliers ? "outliers" : "normal";
        r.kv_len = S, r.head_dim = D, r.q_heads = Hq, r.kv_heads = Hkv;
        r.dtype = DtypeName(ct.dtype);
        r.rotate = ct.rotate;
        r.int8_qk = ct.int8_qk;
        CacheSet set;
        gqa_status st = set.Init(
            ConfigOf(s, S, o.block_tokens, ct.dtype, ct.rotate, ct.int8_qk), 1);
        gqa_block_cache cache = set.Cache(0);
        if (st == GQA_STATUS_OK)
          st = gqa_block_cache_append(&cache, S, nullptr, k.data(), v.data(),
                                      GQA_DTYPE_F32);
        if (st != GQA_STATUS_OK) {
          r.error = StatusText("append", st);
          records.push_back(r);
          continue;
        }
        // The oracle on the stored rows (un-rotated): quantization alone.
        reference::AttentionCall ad = a;
        st = ReadBack(cache, 0, S, &ad.k, &ad.v);
        if (st != GQA_STATUS_OK) {
          r.error = StatusText("read", st);
          records.push_back(r);
          continue;
        }
        const reference::AttentionResult deq = reference::Attention(ad);
        for (size_t i = 0; i < want.out.size(); ++i)
          r.deq_abs_err =
              std::max(r.deq_abs_err, fabs(deq.out[i] - want.out[i]));
        double kl = 0;
        for (int64_t row = 0; row < Hq; ++row) {
          double sum = 0;
          for (int64_t j = 0; j < S; ++j) {
            const double p = want.scores[row * S + j],
                         pq = deq.scores[row * S + j];
            if (p > 0) sum += p * log(p / pq);
          }
          kl += sum;
        }
        r.kl = kl / static_cast<double>(Hq);
        // The library's attend on this cache.
        std::vector<float> out(q.size(), NAN);
        const gqa_kv_attend_params p =
            AttendParams(1, Hq, q.data(), out.data());
        size_t ws_bytes = 0;
        st = gqa_block_cache_attend_workspace_size(&cache, &p, o.threads,
                                                   &ws_bytes);
        Workspace ws(ws_bytes);
        if (st == GQA_STATUS_OK)
          st = gqa_block_cache_attend(&cache, &p, ws.data(), ws_bytes, pool);
        if (st != GQA_STATUS_OK) {
          r.error = StatusText("attend", st);
        } else {
          r.attended = true;
          for (size_t i = 0; i < out.size(); ++i) {
            const double e = fabs(static_cast<double>(out[i]) - want.out[i]);
            if (!(e <= r.max_abs_err)) r.max_abs_err = e;  // NaN sticks
            r.mean_abs_err += e / static_cast<double>(out.size());
          }
        }
        records.push_back(r);
      }
    }
  }
  return records;
}

void PrintAccuracyTable(const std::vector<AccuracyRecord>& records) {
  printf(
      "\nKV cache v2 accuracy (one decode step, B1 Hq8 Hkv2 D128, q/k/v "
      "N(0,1); outliers: key channels 5, 37, 70, 101 x10), vs the float64 "
      "oracle on the f32 rows\n");
  printf("%-9s %5s %-10s %12s %12s %12s %12s %s\n", "data", "S", "cache",
         "attend_err", "attend_mean", "stored_err", "softmax_KL", "note");
  for (const AccuracyRecord& r : records) {
    char att[32] = "-", mean[32] = "-";
    if (r.attended) {
      snprintf(att, sizeof(att), "%.3e", r.max_abs_err);
      snprintf(mean, sizeof(mean), "%.3e", r.mean_abs_err);
    }
    printf("%-9s %5lld %-10s %12s %12s %12.3e %12.3e %s\n", r.data.c_str(),
           (long long)r.kv_len, TypeLabel(r.dtype, r.rotate, r.int8_qk).c_str(),
           att, mean, r.deq_abs_err, r.kl, r.error.c_str());
  }
  // The goals of issue 12, on the attend's error where it ran (else the
  // stored rows'): q8 <= 1e-2, q4 with rotation <= 5e-2, and on outlier
  // keys the rotation at least halves the q4 error.
  auto err = [](const AccuracyRecord& r) {
    return r.attended ? r.max_abs_err : r.deq_abs_err;
  };
  for (const char* data : {"normal", "outliers"}) {
    for (int q4 = 0; q4 < 2; ++q4) {
      for (int rot = q4; rot < 2; ++rot) {  // q8, q8+rot, q4+rot
        double worst = 0;
        for (const AccuracyRecord& r : records) {
          if (r.data == data && r.dtype == (q4 ? "q4" : "q8") &&
              r.rotate == (rot != 0) && !r.int8_qk)
            worst = std::max(worst, err(r));
        }
        const double goal = q4 ? 5e-2 : 1e-2;
        printf("goal %s max abs err <= %.0e on %s data: worst %.3e, %s\n",
               q4 ? "q4+rot" : (rot ? "q8+rot" : "q8"), goal, data, worst,
               worst <= goal ? "met" : "MISSED");
      }
    }
  }
  for (const AccuracyRecord& r : records) {
    if (r.data != "outliers" || r.dtype != "q4" || r.rotate || r.int8_qk)
      continue;
    for (const AccuracyRecord& w : records) {
      if (w.data == r.data && w.kv_len == r.kv_len && w.dtype == "q4" &&
          w.rotate && !w.int8_qk) {
        const double gain = err(w) > 0 ? err(r) / err(w) : INFINITY;
        printf(
            "goal outliers S%lld: q4 err / q4+rot err = %.3e / %.3e = %.2f "
            ">= 2: %s\n",
            (long long)r.kv_len, err(r), err(w), gain,
            gain >= 2 ? "met" : "MISSED");
      }
    }
  }
}

std::string ReadBandwidthJson(const Roofs& roofs) {
  std::string s = ", \"read_bw_bits\": [";
  char buf[64];
  for (int w = 0; w < roofs.bw.num_widths; ++w) {
    snprintf(buf, sizeof(buf), "%s%d", w ? ", " : "", roofs.bw.bits[w]);
    s += buf;
  }
  s += "], \"read_bw_gbps\": [";
  for (int w = 0; w < roofs.bw.num_widths; ++w) {
    snprintf(buf, sizeof(buf), "%s%.4f", w ? ", " : "", roofs.bw.gbps[w]);
    s += buf;
  }
  s += "], \"read_bw_1t_gbps\": [";
  for (int w = 0; w < roofs.bw_1t.num_widths; ++w) {
    snprintf(buf, sizeof(buf), "%s%.4f", w ? ", " : "", roofs.bw_1t.gbps[w]);
    s += buf;
  }
  snprintf(buf, sizeof(buf), "], \"read_bw_best_bits\": %d",
           roofs.bw.best_bits);
  return s + buf;
}

void WriteCacheJson(FILE* f, const std::vector<CacheRecord>& records,
                    const Roofs& roofs, bool* first) {
  const std::string bw = ReadBandwidthJson(roofs);
  for (const CacheRecord& r : records) {
    const Shape& s = r.shape;
    const RoofOf roof = Roof(r, roofs);
    const double sec = r.median_ms * 1e-3;
    const double gflops = sec > 0 ? r.flops / sec * 1e-9 : 0.0;
    const double gbps = sec > 0 ? r.bytes / sec * 1e-9 : 0.0;
    // As BwCap in gqa_bench.cc: the highest fraction of the bandwidth the
    // FMA peak allows on this case.
    const double bw_cap = std::min(
        1.0, (r.bytes / roofs.bw.best_gbps) / (r.flops / roofs.peak_gflops));
    fprintf(f,
            "%s  {\"name\": \"%s\", \"kind\": \"cache\", \"batch\": %lld, "
            "\"q_heads\": %lld, \"kv_heads\": %lld, \"head_dim\": %lld, "
            "\"q_len\": %lld, \"kv_len\": %lld, \"causal\": true, \"dtype\": "
            "\"%s\", \"rotate\": %s, \"int8_qk\": %s, \"block_tokens\": %lld, "
            "\"prefill\": %s, "
            "\"chunk\": %lld, \"threads\": %d, \"cold\": %s, \"decode\": %s, "
            "\"median_ms\": %.6f, \"min_ms\": %.6f, \"append_ms\": %.6f, "
            "\"gflops\": %.4f, \"gbps\": %.4f, \"peak_gflops\": %.4f, "
            "\"peak_gbps\": %.4f, \"bw_cap\": %.4f, \"bytes_per_step\": %.0f, "
            "\"read_bytes_per_token\": %.2f, \"stored_bytes_per_token\": %.2f, "
            "\"roof_ms\": %.6f, \"pct_roof\": %.2f, \"binds\": \"%s\", "
            "\"ratio\": %.4f, \"ratio_to\": \"%s\", \"max_abs_err\": %s, "
            "\"checked\": %s, \"pass\": %s%s}",
            *first ? "" : ",\n", s.name.c_str(), (long long)s.batch,
            (long long)s.q_heads, (long long)s.kv_heads, (long long)s.head_dim,
            (long long)s.q_len, (long long)s.kv_len, r.dtype.c_str(),
            r.rotate ? "true" : "false", r.int8_qk ? "true" : "false",
            (long long)r.block_tokens, r.prefill ? "true" : "false",
            (long long)r.chunk, r.threads, r.prefill ? "false" : "true",
            r.prefill ? "false" : "true", r.median_ms, r.min_ms, r.append_ms,
            gflops, gbps, roofs.peak_gflops, roofs.bw.best_gbps, bw_cap,
            r.bytes, r.read_bytes_per_token, r.stored_bytes_per_token, roof.ms,
            roof.pct, roof.memory ? "memory" : "fma", r.ratio,
            r.ratio_to.c_str(), Num("%.3e", r.max_abs_err).c_str(),
            r.checked ? "true" : "false", r.pass ? "true" : "false",
            bw.c_str());
    *first = false;
  }
}

void WriteAccuracyJson(FILE* f, const std::vector<AccuracyRecord>& records,
                       bool* first) {
  for (const AccuracyRecord& r : records) {
    fprintf(f,
            "%s  {\"name\": \"accuracy\", \"kind\": \"accuracy\", \"data\": "
            "\"%s\", \"batch\": 1, \"q_heads\": %lld, \"kv_heads\": %lld, "
            "\"head_dim\": %lld, \"q_len\": 1, \"kv_len\": %lld, \"dtype\": "
            "\"%s\", \"rotate\": %s, \"int8_qk\": %s, \"attended\": %s, "
            "\"max_abs_err\": "
            "%s, \"mean_abs_err\": %s, \"stored_abs_err\": %s, "
            "\"softmax_kl\": %s}",
            *first ? "" : ",\n", r.data.c_str(), (long long)r.q_heads,
            (long long)r.kv_heads, (long long)r.head_dim, (long long)r.kv_len,
            r.dtype.c_str(), r.rotate ? "true" : "false",
            r.int8_qk ? "true" : "false", r.attended ? "true" : "false",
            Num("%.4e", r.max_abs_err).c_str(),
            Num("%.4e", r.mean_abs_err).c_str(),
            Num("%.4e", r.deq_abs_err).c_str(), Num("%.4e", r.kl).c_str());
    *first = false;
  }
}

}  // namespace gqa
