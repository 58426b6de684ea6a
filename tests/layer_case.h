// Test builder for layer calls: random weights and inputs in Keras layout,
// the call through the public C API (f32 or f16) and the float64 reference,
// compared elementwise. Usage:
//   LayerCase().heads(8, 2).head_dim(7).lens(5, 13).causal().Check();
#ifndef GQA_TESTS_LAYER_CASE_H_
#define GQA_TESTS_LAYER_CASE_H_

#include <math.h>
#include <pthreadpool.h>
#include <stdint.h>

#include <map>
#include <random>
#include <string>
#include <vector>

#include "doctest/doctest.h"
#include "gqa/gqa.hpp"
#include "hwy/targets.h"
#include "src/reference/f16_util.h"
#include "src/reference/reference.h"
#include "tests/check.h"

namespace gqa {
namespace test {

// Scale for test sizes: 1 natively, smaller under qemu (GQA_TEST_SCALE).
inline double TestScale() {
#ifdef GQA_TEST_SCALE
  return GQA_TEST_SCALE;
#else
  return 1.0;
#endif
}

// Highway targets compiled and supported here. Debian's armhf libhwy
// detects no NEON at run time, so where the intersection is empty the
// static (baseline) target stands in: the binary was built for it, and it
// is what dispatch falls back to.
inline std::vector<int64_t> TargetsToTest() {
  std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  if (targets.empty()) targets.push_back(HWY_STATIC_TARGET);
  return targets;
}

// Runs fn once per target of TargetsToTest(), forcing it.
template <class Fn>
void ForEachTarget(Fn fn) {
  const std::vector<int64_t> targets = TargetsToTest();
  REQUIRE(!targets.empty());
  for (int64_t target : targets) {
    hwy::SetSupportedTargetsForTest(target);
    CAPTURE(hwy::TargetName(target));
    fn(target);
  }
  hwy::SetSupportedTargetsForTest(0);
}

inline std::string TargetNames() {
  std::string s;
  for (int64_t t : TargetsToTest()) {
    if (!s.empty()) s += " ";
    s += hwy::TargetName(t);
  }
  return s;
}

// Same size and the same bits (memcmp on empty vectors would pass null).
inline bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() ||
          memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

struct LayerOutputs {
  gqa_status status = GQA_STATUS_OK;
  std::vector<float> output;
  std::vector<float> scores;
};

class LayerCase {
 public:
  explicit LayerCase(uint64_t seed = 1) : rng_(seed) {}

  LayerCase& heads(int64_t hq, int64_t hkv) {
    hq_ = hq;
    hkv_ = hkv;
    return *this;
  }
  LayerCase& head_dim(int64_t d) {
    d_ = d;
    return *this;
  }
  LayerCase& batch(int64_t b) {
    b_ = b;
    return *this;
  }
  LayerCase& lens(int64_t t, int64_t s) {
    t_ = t;
    s_ = s;
    return *this;
  }
  LayerCase& features(int64_t fq, int64_t fk, int64_t fv) {
    fq_ = fq;
    fk_ = fk;
    fv_ = fv;
    return *this;
  }
  LayerCase& key_given(bool k = true) {
    key_given_ = k;
    return *this;
  }
  LayerCase& bias(bool b) {
    bias_ = b;
    return *this;
  }
  LayerCase& gate(bool g = true) {
    gate_ = g;
    return *this;
  }
  LayerCase& window(int64_t w) {
    window_ = w;
    return *this;
  }
  LayerCase& causal(bool c = true) {
    causal_ = c;
    return *this;
  }
  LayerCase& scores(bool s = true) {
    scores_ = s;
    return *this;
  }
  LayerCase& dropout(double rate, bool training = true) {
    rate_ = rate;
    training_ = training;
    return *this;
  }
  LayerCase& dropout_seed(uint64_t s) {
    drop_seed_ = s;
    return *this;
  }
  LayerCase& policy(gqa_fully_masked_policy p) {
    policy_ = p;
    return *this;
  }
  LayerCase& f16(bool h = true) {
    f16_ = h;
    return *this;
  }
  LayerCase& threads(int n) {
    threads_ = n;
    return *this;
  }
  // Attention mask of the given dims (rank 2..4) with allowed probability p.
  LayerCase& attention_mask(std::vector<int64_t> dims, double p = 0.7) {
    am_dims_ = std::move(dims);
    am_p_ = p;
    return *this;
  }
  LayerCase& query_mask(double p = 0.8) {
    qm_p_ = p;
    return *this;
  }
  LayerCase& value_mask(double p = 0.8) {
    vm_p_ = p;
    return *this;
  }
  LayerCase& key_mask(double p = 0.8) {
    km_p_ = p;
    return *this;
  }
  LayerCase& keep_mask(bool k = true) {
    keep_given_ = k;
    return *this;
  }
  // An injected keep mask with every probability kept.
  LayerCase& keep_all() {
    keep_given_ = keep_all_ = true;
    return *this;
  }

  std::string Describe() const {
    char buf[400];
    snprintf(buf, sizeof(buf),
             "B%lld T%lld S%lld Hq%lld Hkv%lld D%lld F(%lld,%lld,%lld) key%d "
             "bias%d gate%d win%lld causal%d scores%d drop%.2f/%d pol%d f16%d "
             "am_rank%zu qm%d vm%d km%d thr%d",
             (long long)b_, (long long)t_, (long long)s_, (long long)hq_,
             (long long)hkv_, (long long)d_, (long long)fq_, (long long)fk_,
             (long long)fv_, key_given_, bias_, gate_, (long long)window_,
             causal_, scores_, rate_, training_, (int)policy_, f16_,
             am_dims_.size(), qm_p_ >= 0, vm_p_ >= 0, km_p_ >= 0, threads_);
    return buf;
  }

  // Builds the data (once), runs the library, returns its outputs.
  LayerOutputs Run() {
    Build();
    LayerOutputs res;
    gqa_layer_config c;
    gqa_layer_config_init(&c, d_, hq_, hkv_, fq_, fv_);
    c.key_features = key_given_ ? fk_ : fv_;
    c.use_bias = bias_;
    c.use_gate = gate_;
    c.sliding_window = window_;
    c.dropout = static_cast<float>(rate_);
    c.seed = drop_seed_;
    c.fully_masked_policy = policy_;
    c.dtype = f16_ ? GQA_DTYPE_F16 : GQA_DTYPE_F32;
    gqa_layer_weights w{};
    w.query_kernel = Ptr(wq_);
    w.key_kernel = Ptr(wk_);
    w.value_kernel = Ptr(wv_);
    w.output_kernel = Ptr(wo_);
    w.gate_kernel = gate_ ? Ptr(wg_) : nullptr;
    if (bias_) {
      w.query_bias = Ptr(bq_);
      w.key_bias = Ptr(bk_);
      w.value_bias = Ptr(bv_);
      w.output_bias = Ptr(bo_);
      w.gate_bias = gate_ ? Ptr(bg_) : nullptr;
    }
    Layer layer;
    Status st = Layer::Create(c, w, &layer);
    res.status = st.code();
    if (!st.ok()) return res;

    gqa_forward_args a{};
    a.batch = b_;
    a.query_len = t_;
    a.value_len = s_;
    a.query = Ptr(query_);
    a.value = Ptr(value_);
    a.key = key_given_ ? Ptr(key_) : nullptr;
    if (!am_.empty()) {
      a.attention_mask = am_.data();
      a.attention_mask_rank = static_cast<int32_t>(am_dims_.size());
      for (size_t i = 0; i < am_dims_.size(); ++i)
        a.attention_mask_dims[i] = am_dims_[i];
    }
    a.query_mask = qm_.empty() ? nullptr : qm_.data();
    a.value_mask = vm_.empty() ? nullptr : vm_.data();
    a.key_mask = km_.empty() ? nullptr : km_.data();
    a.use_causal_mask = causal_;
    a.training = training_;
    a.dropout_keep_mask = keep_.empty() ? nullptr : keep_.data();
    const size_t elem = f16_ ? 2 : 4;
    const size_t n_out = static_cast<size_t>(b_ * t_ * fq_);
    const size_t n_sc = static_cast<size_t>(b_ * hq_ * t_ * s_);
    // Poisoned outputs: every element must be written.
    std::vector<unsigned char> out(n_out * elem, 0xFF),
        sc(scores_ ? n_sc * elem : 0, 0xFF);
    a.output = out.data();
    a.scores = scores_ ? sc.data() : nullptr;
    size_t bytes = 0;
    st = layer.WorkspaceSize(b_, t_, s_, &bytes, threads_);
    REQUIRE(st.ok());
    Workspace ws(bytes);
    pthreadpool_t pool = threads_ > 1 ? pthreadpool_create(threads_) : nullptr;
    st = layer.Forward(a, ws, pool);
    if (pool) pthreadpool_destroy(pool);
    res.status = st.code();
    if (!st.ok()) return res;
    res.output = Widen(out, n_out);
    if (scores_) res.scores = Widen(sc, n_sc);
    return res;
  }

  reference::Result Reference() {
    Build();
    reference::Config rc;
    rc.head_dim = d_;
    rc.q_heads = hq_;
    rc.kv_heads = hkv_;
    rc.q_features = fq_;
    rc.k_features = key_given_ ? fk_ : fv_;
    rc.v_features = fv_;
    rc.use_bias = bias_;
    rc.use_gate = gate_;
    rc.sliding_window = window_;
    rc.dropout = static_cast<float>(rate_);  // the layer stores a float rate
    rc.seed = drop_seed_;
    rc.policy = policy_ == GQA_FULLY_MASKED_ZERO ? reference::Policy::kZero
                : policy_ == GQA_FULLY_MASKED_UNIFORM
                    ? reference::Policy::kUniform
                    : reference::Policy::kKeras;
    reference::Weights w;
    w.query_kernel = D(wq_);
    w.key_kernel = D(wk_);
    w.value_kernel = D(wv_);
    w.output_kernel = D(wo_);
    if (gate_) w.gate_kernel = D(wg_);
    if (bias_) {
      w.query_bias = D(bq_);
      w.key_bias = D(bk_);
      w.value_bias = D(bv_);
      w.output_bias = D(bo_);
      if (gate_) w.gate_bias = D(bg_);
    }
    reference::Call call;
    call.batch = b_;
    call.q_len = t_;
    call.kv_len = s_;
    call.query = D(query_);
    call.value = D(value_);
    if (key_given_) call.key = D(key_);
    call.attention_mask = am_;
    call.attention_mask_dims = am_.empty() ? std::vector<int64_t>() : am_dims_;
    call.query_mask = qm_;
    call.value_mask = vm_;
    call.key_mask = km_;
    call.causal = causal_;
    call.training = training_;
    call.keep_mask = keep_;
    call.want_scores = scores_;
    return reference::Forward(rc, w, call);
  }

  // Library vs reference. f32: atol = rtol = 1e-4 (the golden tolerance).
  // f16: the reference sees the same f16-rounded inputs and weights, so the
  // only differences are f32 arithmetic (~1e-6) and the final rounding to
  // binary16 (<= 2^-11 relative, 2^-25 absolute near zero): rtol 1.5e-3,
  // atol 1e-4.
  void Check() {
    INFO(Describe());
    const LayerOutputs got = Run();
    REQUIRE(got.status == GQA_STATUS_OK);
    const reference::Result want = Reference();
    const double rtol = f16_ ? 1.5e-3 : 1e-4, atol = 1e-4;
    CheckClose(got.output, want.output, rtol, atol, "output");
    if (scores_) CheckClose(got.scores, want.scores, rtol, atol, "scores");
  }

 private:
  std::vector<float> Uniform(size_t n, double lo, double hi) {
    std::uniform_real_distribution<double> u(lo, hi);
    std::vector<float> v(n);
    for (float& x : v) {
      x = static_cast<float>(u(rng_));
      x = reference::RoundIf(x, f16_);  // the f16 path sees these
    }
    return v;
  }
  std::vector<uint8_t> Bernoulli(size_t n, double p) {
    std::bernoulli_distribution b(p);
    std::vector<uint8_t> v(n);
    for (uint8_t& x : v) x = b(rng_) ? 1 : 0;
    return v;
  }
  void Build() {
    if (built_) return;
    built_ = true;
    const size_t hd = static_cast<size_t>(hq_ * d_),
                 kd = static_cast<size_t>(hkv_ * d_);
    const int64_t fk = key_given_ ? fk_ : fv_;
    auto glorot = [&](size_t fan_in, size_t fan_out, size_t n) {
      const double lim = sqrt(6.0 / static_cast<double>(fan_in + fan_out));
      return Uniform(n, -lim, lim);
    };
    wq_ = glorot(fq_, hd, fq_ * hd);
    wk_ = glorot(fk, kd, fk * kd);
    wv_ = glorot(fv_, kd, fv_ * kd);
    wo_ = glorot(hd, fq_, hd * fq_);
    if (gate_) wg_ = glorot(fq_, hd, fq_ * hd);
    bq_ = Uniform(hd, -0.2, 0.2);
    bk_ = Uniform(kd, -0.2, 0.2);
    bv_ = Uniform(kd, -0.2, 0.2);
    bo_ = Uniform(fq_, -0.2, 0.2);
    bg_ = Uniform(hd, -0.2, 0.2);
    query_ = Uniform(b_ * t_ * fq_, -1.5, 1.5);
    value_ = Uniform(b_ * s_ * fv_, -1.5, 1.5);
    if (key_given_) key_ = Uniform(b_ * s_ * fk, -1.5, 1.5);
    if (!am_dims_.empty()) {
      size_t n = 1;
      for (int64_t d : am_dims_) n *= static_cast<size_t>(d);
      am_ = Bernoulli(n, am_p_);
    }
    if (qm_p_ >= 0) qm_ = Bernoulli(b_ * t_, qm_p_);
    if (vm_p_ >= 0) vm_ = Bernoulli(b_ * s_, vm_p_);
    if (km_p_ >= 0) km_ = Bernoulli(b_ * s_, km_p_);
    if (keep_given_)
      keep_ = Bernoulli(b_ * hq_ * t_ * s_, keep_all_ ? 1.0 : 1.0 - rate_);
    if (f16_) {
      for (auto* v : {&wq_, &wk_, &wv_, &wo_, &wg_, &bq_, &bk_, &bv_, &bo_,
                      &bg_, &query_, &value_, &key_}) {
        halves_[v] = reference::ToHalf(*v);
      }
    }
  }
  const void* Ptr(const std::vector<float>& v) {
    if (!f16_) return v.data();
    return halves_[&v].data();
  }
  static std::vector<double> D(const std::vector<float>& v) {
    return reference::ToDouble(v);
  }
  std::vector<float> Widen(const std::vector<unsigned char>& raw,
                           size_t n) const {
    return reference::Widen(raw.data(), n, f16_);
  }

  std::mt19937_64 rng_;
  int64_t b_ = 2, t_ = 5, s_ = 7, hq_ = 4, hkv_ = 2, d_ = 8;
  int64_t fq_ = 12, fk_ = 10, fv_ = 12;
  bool key_given_ = false, bias_ = true, gate_ = false, causal_ = false;
  bool scores_ = false, training_ = false, f16_ = false, keep_given_ = false;
  bool keep_all_ = false;
  int64_t window_ = 0;
  double rate_ = 0.0;
  gqa_fully_masked_policy policy_ = GQA_FULLY_MASKED_KERAS;
  int threads_ = 1;
  uint64_t drop_seed_ = 1234;
  std::vector<int64_t> am_dims_;
  double am_p_ = 0.7, qm_p_ = -1, vm_p_ = -1, km_p_ = -1;
  bool built_ = false;
  std::vector<float> wq_, wk_, wv_, wo_, wg_, bq_, bk_, bv_, bo_, bg_;
  std::vector<float> query_, value_, key_;
  std::vector<uint8_t> am_, qm_, vm_, km_, keep_;
  std::map<const std::vector<float>*, std::vector<uint16_t>> halves_;
};

}  // namespace test
}  // namespace gqa

#endif  // GQA_TESTS_LAYER_CASE_H_
