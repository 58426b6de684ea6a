// Layer part of the C ABI fuzzer: gqa_layer_create, gqa_layer_forward and
// gqa_layer_forward_cached, checked against src/reference (float64).
#ifndef GQA_TESTS_FUZZ_FUZZ_LAYER_H_
#define GQA_TESTS_FUZZ_FUZZ_LAYER_H_

#include "gqa/gqa.h"
#include "gqa/kv_cache.h"
#include "src/reference/reference.h"
#include "tests/fuzz/fuzz_decode.h"

namespace gqa_fuzz {

inline std::vector<double> ToDoubles(const Tensor& t, bool present) {
  std::vector<double> d;
  for (int64_t i = 0; present && i < t.elems; ++i) d.push_back(t.Get(i));
  return d;
}

// Random mask bytes (3 in 4 allowed), or a small stand-in for huge sizes.
inline std::vector<uint8_t> MaskBytes(i128 n, Rng& rng) {
  std::vector<uint8_t> m(n > 0 && n <= kMaxAlloc ? (size_t)n : 8);
  for (auto& x : m) x = rng.Next() % 4 != 0;
  return m;
}

// Creates a layer from fuzzed config, then runs forward or forward_cached.
inline void FuzzLayer(Reader& r, Rng& rng, bool cached) {
  gqa_layer_config cfg = {};
  const int64_t D = r.Dim(1, 4), Hkv = r.Dim(1, 2);
  int64_t Hq = Group(Hkv, r.U8() % 2);
  if (r.hostile && r.U8() >= 240) Hq = r.Dim(1, 5);
  const int64_t Fq = r.Dim(1, 5), Fv = r.Dim(1, 5);
  gqa_layer_config_init(&cfg, D, Hq, Hkv, Fq, Fv);
  if (r.Bit()) cfg.key_features = r.Dim(1, 5);
  if (r.hostile && r.U8() >= 248) cfg.key_features = cfg.value_features;
  const int64_t Fk = cfg.key_features;
  cfg.use_bias = r.Bit(), cfg.use_gate = r.Bit();
  cfg.sliding_window = r.Bit() ? 0 : r.Dim(0, 4);
  const int dsel = r.U8() % 8;
  cfg.dropout = dsel < 5    ? 0.0f
                : dsel == 5 ? 0.5f
                : dsel == 6 ? 1.0f
                            : r.Param(0.0f, 1.0f);
  cfg.seed = r.U8();
  cfg.fully_masked_policy = r.hostile && r.U8() >= 248 ? 7 : r.U8() % 3;
  cfg.dtype = r.hostile && r.U8() >= 248 ? -1 : r.U8() % 2;
  const bool half = cfg.dtype == 1;
  bool must_fail = D < 1 || Hkv < 1 || Hq < 1 || Fq < 1 || Fv < 1 || Fk < 1 ||
                   Hq % Hkv != 0 || cfg.sliding_window < 0 ||
                   !(cfg.dropout >= 0 && cfg.dropout <= 1) ||
                   !ValidPolicy(cfg.fully_masked_policy) ||
                   !ValidDtype(cfg.dtype);
  bool skip = false, impossible = false;
  auto size = [&](i128 elems) {
    if (Prod({elems, 4}) > kImpossibleBytes)
      impossible = must_fail = true;
    else if (Prod({elems, 4}) > kMaxAlloc)
      skip = true;
    return elems;
  };
  const i128 nq = Prod({Hq, D}), nkv = Prod({Hkv, D});
  Tensor w[10] = {MakeTensor(size(Prod({Fq, nq})), half, rng, 0.5),
                  MakeTensor(size(nq), half, rng, 0.5),
                  MakeTensor(size(Prod({Fk, nkv})), half, rng, 0.5),
                  MakeTensor(size(nkv), half, rng, 0.5),
                  MakeTensor(size(Prod({Fv, nkv})), half, rng, 0.5),
                  MakeTensor(size(nkv), half, rng, 0.5),
                  MakeTensor(size(Prod({Fq, nq})), half, rng, 0.5),
                  MakeTensor(size(nq), half, rng, 0.5),
                  MakeTensor(size(Prod({nq, Fq})), half, rng, 0.5),
                  MakeTensor(size(Fq), half, rng, 0.5)};
  if (skip) return;
  const void* ptrs[10];
  for (int i = 0; i < 10; ++i) ptrs[i] = w[i].data();
  if (r.hostile && r.U8() >= 240) {  // a missing weight the config needs
    const int i = r.U8() % 10;
    const bool gate = i == 6 || i == 7;
    if ((i % 2 == 0 || cfg.use_bias) && (!gate || cfg.use_gate)) {
      ptrs[i] = nullptr;
      must_fail = true;
    }
  }
  gqa_layer_weights lw = {ptrs[0], ptrs[1], ptrs[2], ptrs[3], ptrs[4],
                          ptrs[5], ptrs[6], ptrs[7], ptrs[8], ptrs[9]};
  gqa_layer_t layer = reinterpret_cast<gqa_layer_t>(uintptr_t{0xA5A5});
  gqa_status st = gqa_layer_create(&cfg, &lw, &layer);
  ExpectErrorMessage(st);
  if (st != GQA_STATUS_OK) {
    if (layer != reinterpret_cast<gqa_layer_t>(uintptr_t{0xA5A5}))
      Finding("failed gqa_layer_create wrote *layer_out");
    return;
  }
  if (must_fail) {
    fprintf(stderr,
            "D=%lld Hq=%lld Hkv=%lld F=%lld,%lld,%lld w=%lld p=%g "
            "policy=%d dtype=%d\n",
            (long long)D, (long long)Hq, (long long)Hkv, (long long)Fq,
            (long long)Fk, (long long)Fv, (long long)cfg.sliding_window,
            cfg.dropout, cfg.fully_masked_policy, cfg.dtype);
    Finding("gqa_layer_create accepted an invalid config");
  }
  struct Destroy {
    gqa_layer_t l;
    ~Destroy() { gqa_layer_destroy(l); }
  } destroy{layer};

  gqa_forward_args args = {};
  const int64_t B = r.Dim(1, 2), T = r.Dim(1, 3);
  const int64_t S =
      cached ? (r.hostile && r.U8() >= 240 ? r.Dim(1, 4) : T) : r.Dim(1, 4);
  args.batch = B, args.query_len = T, args.value_len = S;
  must_fail = B < 1 || T < 1 || S < 1 || (cached && S != T);
  const bool use_key = r.Bit() || Fk != Fv;
  const i128 nqry = size(Prod({B, T, Fq})), nval = size(Prod({B, S, Fv}));
  const i128 nkey = size(Prod({B, S, Fk})), nout = nqry;
  const i128 nsc = size(Prod({B, Hq, T, S}));
  Tensor query = MakeTensor(nqry, half, rng, 1.0);
  Tensor value = MakeTensor(nval, half, rng, 1.0);
  Tensor key = MakeTensor(nkey, half, rng, 1.0);
  Tensor out = MakeTensor(nout, half, rng, 0);
  bool finite = MaybeNonFinite(r, query) + MaybeNonFinite(r, value) +
                    MaybeNonFinite(r, key) ==
                0;
  args.query = query.data(), args.value = value.data();
  args.key = use_key ? key.data() : nullptr, args.output = out.data();
  if (r.U8() >= 248) {  // output aliases query (same shape)
    args.output = query.data();
    must_fail = true;
  }
  gqa::reference::Call call;
  call.batch = B, call.q_len = T, call.kv_len = S;

  // forward only: masks, causal, training, dropout keep mask, scores.
  std::vector<uint8_t> am, qm, vm, km, keep;
  Tensor scores = MakeTensor(0, half, rng, 0);
  if (!cached) {
    const int rank = r.U8() % 5;
    const int64_t full[4] = {B, Hq, T, S};
    i128 n = 1;
    if (rank >= 2) {
      bool dims_bad = false;
      args.attention_mask_rank = rank;
      if (r.hostile && r.U8() >= 240) args.attention_mask_rank = r.U8() % 7;
      for (int i = 0; i < rank; ++i) {
        // rank 2: (T, S); 3: (B, T, S); 4: (B, Hq, T, S).
        const int64_t f = rank == 3 && i == 0 ? B : full[4 - rank + i];
        int64_t d = r.Bit() ? 1 : f;
        if (r.hostile && r.U8() >= 240) d = r.Dim(0, 5);
        dims_bad |= d != 1 && d != f;
        args.attention_mask_dims[i] = d;
        call.attention_mask_dims.push_back(d);
        n = Prod({n, d > 0 ? d : 1});
      }
      const int32_t hr = args.attention_mask_rank;  // maybe hostile
      if (hr != rank) {
        // The dims are read under another rank: valid or not, the harness
        // cannot tell unless the rank itself is invalid.
        must_fail |= hr < 0 || hr == 1 || hr > 4;
        finite = false;  // no comparison either
      } else {
        must_fail |= dims_bad;
      }
      // The library reads the dims under rank hr: size the mask for that
      // (a huge mask under the rank given may be a small one under hr).
      i128 read = 1;
      for (int i = 0; i < (hr >= 2 && hr <= 4 ? hr : 0); ++i) {
        const int64_t d = args.attention_mask_dims[i];
        read = Prod({read, d > 0 ? d : 1});
      }
      am = MaskBytes(size(hr == rank ? n : read), rng);
      args.attention_mask = am.data();
      call.attention_mask = am;
    }
    if (r.Bit())
      qm = MaskBytes(size(Prod({B, T})), rng), args.query_mask = qm.data();
    if (r.Bit())
      vm = MaskBytes(size(Prod({B, S})), rng), args.value_mask = vm.data();
    if (r.Bit())
      km = MaskBytes(size(Prod({B, S})), rng), args.key_mask = km.data();
    call.query_mask = qm, call.value_mask = vm, call.key_mask = km;
    args.use_causal_mask = call.causal = r.Bit();
    args.training = call.training = r.Bit();
    if (r.Bit())
      keep = MaskBytes(nsc, rng), args.dropout_keep_mask = keep.data();
    call.keep_mask = keep;
    if (r.Bit()) {
      scores = MakeTensor(nsc, half, rng, 0);
      args.scores = scores.data();
      call.want_scores = true;
    }
  }
  if (skip) return;

  // forward_cached: a cache of the layer's Hkv and D (or not), maybe a ring.
  gqa_kv_cache c = {};
  Tensor ck, cv;
  std::vector<int64_t> len;
  bool fresh = true;  // lengths all 0: the reference is a causal forward
  if (cached) {
    c.batch = B, c.capacity = r.Dim(1, 8), c.kv_heads = Hkv, c.head_dim = D;
    if (r.hostile && r.U8() >= 240) c.kv_heads = r.Dim(1, 3);
    c.dtype = r.U8() % 2, c.ring = r.Bit();
    const i128 n = size(Prod({B, c.capacity, c.kv_heads, D}));
    if (skip) return;
    ck = MakeTensor(n, c.dtype, rng, 1.0),
    cv = MakeTensor(n, c.dtype, rng, 1.0);
    if (B > 4096) return;  // lengths [B] are read before the shapes fail
    len.assign(B >= 1 ? B : 2, 0);
    for (auto& x : len) fresh &= (x = r.Bit() ? 0 : r.Dim(0, 4)) == 0;
    c.k = ck.data(), c.v = cv.data(), c.lengths = len.data();
  }

  const int64_t max_threads = r.Bit() ? 1 : r.Dim(1, 4);
  const bool use_pool = r.Bit();
  const uint8_t ws_mode = r.U8();
  size_t ws_size = 0;
  st = cached ? gqa_layer_cached_workspace_size(layer, &c, T, max_threads,
                                                &ws_size)
              : gqa_layer_workspace_size(layer, B, T, S, max_threads, &ws_size);
  Workspace ws;
  if (!ws.FromQuery(st, ws_size, ws_mode, max_threads == 1, &must_fail)) return;
  Poison(out.bytes), Poison(scores.bytes);
  const std::vector<uint8_t> out0 = out.bytes, sc0 = scores.bytes;
  const std::vector<uint8_t> ck0 = ck.bytes, cv0 = cv.bytes;
  const std::vector<uint8_t> query0 = query.bytes;
  const std::vector<int64_t> len0 = len;
  pthreadpool_t pool = use_pool ? Pool() : nullptr;
  st = cached
           ? gqa_layer_forward_cached(layer, &args, &c, ws.ptr, ws.size, pool)
           : gqa_layer_forward(layer, &args, ws.ptr, ws.size, pool);
  ExpectErrorMessage(st);
  if (st != GQA_STATUS_OK) {
    ExpectUnchanged(out.bytes, out0, "output");
    ExpectUnchanged(scores.bytes, sc0, "scores");
    ExpectUnchanged(ck.bytes, ck0, "cache k");
    ExpectUnchanged(cv.bytes, cv0, "cache v");
    ExpectUnchanged(query.bytes, query0, "query");
    if (len != len0) Finding("failed forward_cached changed lengths");
    return;
  }
  if (must_fail) {
    fprintf(stderr,
            "B=%lld T=%lld S=%lld cached=%d rank=%d dims=%lld,%lld,%lld,%lld "
            "ws_bad=%d out_is_query=%d\n",
            (long long)B, (long long)T, (long long)S, cached,
            args.attention_mask_rank, (long long)args.attention_mask_dims[0],
            (long long)args.attention_mask_dims[1],
            (long long)args.attention_mask_dims[2],
            (long long)args.attention_mask_dims[3], ws.bad,
            args.output == args.query);
    Finding("layer forward accepted an invalid call");
  }
  if ((!finite && !Strict()) || !fresh) return;

  gqa::reference::Config rc;
  rc.head_dim = D, rc.q_heads = Hq, rc.kv_heads = Hkv;
  rc.q_features = Fq, rc.k_features = Fk, rc.v_features = Fv;
  rc.use_bias = cfg.use_bias, rc.use_gate = cfg.use_gate;
  rc.sliding_window = cfg.sliding_window, rc.dropout = cfg.dropout;
  rc.seed = cfg.seed;
  rc.policy = static_cast<gqa::reference::Policy>(cfg.fully_masked_policy);
  gqa::reference::Weights rw;
  std::vector<double>* dst[10] = {
      &rw.query_kernel,  &rw.query_bias, &rw.key_kernel,  &rw.key_bias,
      &rw.value_kernel,  &rw.value_bias, &rw.gate_kernel, &rw.gate_bias,
      &rw.output_kernel, &rw.output_bias};
  for (int i = 0; i < 10; ++i)
    *dst[i] = ToDoubles(w[i], i % 2 == 0 || cfg.use_bias);
  call.query = ToDoubles(query, true), call.value = ToDoubles(value, true);
  call.key = ToDoubles(key, use_key);
  if (cached) call.causal = true;
  const gqa::reference::Result want = gqa::reference::Forward(rc, rw, call);
  const double tol = half || (cached && c.dtype) ? 2e-2 : 2e-4;
  for (int64_t i = 0; i < out.elems; ++i)
    ExpectClose(out.Get(i), want.output[i], tol, "layer output", i);
  for (int64_t i = 0; call.want_scores && i < scores.elems; ++i)
    ExpectClose(scores.Get(i), want.scores[i], tol, "layer scores", i);
  for (size_t b = 0; cached && b < len.size(); ++b)
    if (len[b] != T) Finding("forward_cached: wrong lengths");
}

}  // namespace gqa_fuzz

#endif  // GQA_TESTS_FUZZ_FUZZ_LAYER_H_
