// Loading and running golden cases (see golden_case.h).
#include "bench/golden_case.h"

#include <dirent.h>
#include <math.h>
#include <pthreadpool.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "gqa/gqa.hpp"
#include "src/half.h"

namespace gqa {
namespace {

using nlohmann::json;

bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool ReadArray(const std::string& path, const std::vector<int64_t>& shape,
               GoldenArray* out, std::string* error) {
  int64_t count = 1;
  for (int64_t d : shape) count *= d;
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    *error = "cannot open " + path;
    return false;
  }
  out->shape = shape;
  out->data.resize(static_cast<size_t>(count));
  f.read(reinterpret_cast<char*>(out->data.data()),
         static_cast<std::streamsize>(count * sizeof(float)));
  if (f.gcount() != static_cast<std::streamsize>(count * sizeof(float))) {
    *error = path + ": expected " + std::to_string(count) + " floats";
    return false;
  }
  return true;
}

std::vector<uint16_t> ToHalf(const std::vector<float>& v) {
  std::vector<uint16_t> h(v.size());
  for (size_t i = 0; i < v.size(); ++i) h[i] = FloatToHalf(v[i]);
  return h;
}

std::vector<uint8_t> ToMask(const GoldenArray* a) {
  std::vector<uint8_t> m;
  if (!a) return m;
  m.resize(a->data.size());
  for (size_t i = 0; i < m.size(); ++i) m[i] = a->data[i] != 0.0f;
  return m;
}

}  // namespace

bool LoadGoldenCase(const std::string& dir, GoldenCase* out,
                    std::string* error) {
  std::ifstream f(dir + "/case.json");
  if (!f) {
    *error = "cannot open " + dir + "/case.json";
    return false;
  }
  json j;
  try {
    f >> j;
    GoldenCase c;
    c.dir = dir;
    c.name = j.value("name", dir);
    const json& sh = j.at("shapes");
    c.batch = sh.at("B").get<int64_t>();
    c.q_len = sh.at("T").get<int64_t>();
    c.kv_len = sh.at("S").get<int64_t>();
    const int64_t fq = sh.at("Fq").get<int64_t>();
    const int64_t fv = sh.at("Fv").get<int64_t>();
    const int64_t fk = sh.at("Fk").is_null() ? fv : sh.at("Fk").get<int64_t>();
    gqa_layer_config_init(&c.config, j.at("head_dim").get<int64_t>(),
                          j.at("num_query_heads").get<int64_t>(),
                          j.at("num_key_value_heads").get<int64_t>(), fq, fv);
    c.config.key_features = fk;
    c.config.use_bias = j.at("use_bias").get<bool>();
    c.config.use_gate = j.value("use_gate", false);
    c.config.sliding_window = j.at("sliding_window").is_null()
                                  ? 0
                                  : j.at("sliding_window").get<int64_t>();
    c.config.dropout = j.value("dropout", 0.0f);
    c.training = j.value("training", false);
    c.causal = j.value("use_causal_mask", false);
    c.want_scores = j.value("return_attention_scores", false);
    if (j.contains("tolerance")) {
      c.rtol = j["tolerance"].value("rtol", 1e-4);
      c.atol = j["tolerance"].value("atol", 1e-4);
    }
    for (const auto& item : j.at("files").items()) {
      const std::vector<int64_t> shape =
          item.value().at("shape").get<std::vector<int64_t>>();
      GoldenArray a;
      if (!ReadArray(dir + "/" + item.value().at("file").get<std::string>(),
                     shape, &a, error)) {
        return false;
      }
      c.arrays[item.key()] = std::move(a);
    }
    if (j.contains("alternate_policy_files")) {
      for (const auto& pol : j["alternate_policy_files"].items()) {
        for (const auto& arr : pol.value().items()) {
          const std::string key = pol.key() + "/" + arr.key();
          const std::vector<int64_t> shape =
              arr.value().at("shape").get<std::vector<int64_t>>();
          GoldenArray a;
          if (!ReadArray(dir + "/" + arr.value().at("file").get<std::string>(),
                         shape, &a, error)) {
            return false;
          }
          c.arrays[key] = std::move(a);
          c.alternates[pol.key()][arr.key()] = key;
        }
      }
    }
    *out = std::move(c);
  } catch (const std::exception& e) {
    *error = dir + "/case.json: " + e.what();
    return false;
  }
  return true;
}

std::vector<std::string> ListGoldenCaseDirs(const std::string& path) {
  std::vector<std::string> dirs;
  if (FileExists(path + "/case.json")) {
    dirs.push_back(path);
    return dirs;
  }
  DIR* d = opendir(path.c_str());
  if (!d) return dirs;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    if (FileExists(path + "/" + name + "/case.json")) {
      dirs.push_back(path + "/" + name);
    }
  }
  closedir(d);
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

GoldenRun RunGoldenCase(const GoldenCase& c, gqa_dtype dtype,
                        gqa_fully_masked_policy policy, int threads) {
  GoldenRun run;
  const bool f16 = dtype == GQA_DTYPE_F16;
  gqa_layer_config config = c.config;
  config.dtype = dtype;
  config.fully_masked_policy = policy;

  // Arrays in the layer's dtype, kept alive for the call.
  std::map<std::string, std::vector<uint16_t>> halves;
  auto ptr = [&](const std::string& key) -> const void* {
    const GoldenArray* a = c.Find(key);
    if (!a) return nullptr;
    if (!f16) return a->data.data();
    auto& h = halves[key];
    if (h.empty()) h = ToHalf(a->data);
    return h.data();
  };
  gqa_layer_weights w{};
  w.query_kernel = ptr("query_kernel");
  w.query_bias = ptr("query_bias");
  w.key_kernel = ptr("key_kernel");
  w.key_bias = ptr("key_bias");
  w.value_kernel = ptr("value_kernel");
  w.value_bias = ptr("value_bias");
  w.gate_kernel = ptr("gate_kernel");
  w.gate_bias = ptr("gate_bias");
  w.output_kernel = ptr("output_kernel");
  w.output_bias = ptr("output_bias");

  Layer layer;
  Status st = Layer::Create(config, w, &layer);
  if (!st.ok()) {
    run.status = st.code();
    run.message = st.message();
    return run;
  }

  const std::vector<uint8_t> attention_mask = ToMask(c.Find("attention_mask"));
  const std::vector<uint8_t> query_mask = ToMask(c.Find("query_mask"));
  const std::vector<uint8_t> value_mask = ToMask(c.Find("value_mask"));
  const std::vector<uint8_t> key_mask = ToMask(c.Find("key_mask"));
  const std::vector<uint8_t> keep = ToMask(c.Find("dropout_keep_mask"));

  gqa_forward_args a{};
  a.batch = c.batch;
  a.query_len = c.q_len;
  a.value_len = c.kv_len;
  a.query = ptr("query");
  a.value = ptr("value");
  a.key = ptr("key");
  if (const GoldenArray* am = c.Find("attention_mask")) {
    a.attention_mask = attention_mask.data();
    a.attention_mask_rank = static_cast<int32_t>(am->shape.size());
    for (size_t i = 0; i < am->shape.size() && i < 4; ++i) {
      a.attention_mask_dims[i] = am->shape[i];
    }
  }
  a.query_mask = query_mask.empty() ? nullptr : query_mask.data();
  a.value_mask = value_mask.empty() ? nullptr : value_mask.data();
  a.key_mask = key_mask.empty() ? nullptr : key_mask.data();
  a.use_causal_mask = c.causal;
  a.training = c.training;
  a.dropout_keep_mask = keep.empty() ? nullptr : keep.data();

  const size_t out_count =
      static_cast<size_t>(c.batch * c.q_len * c.config.query_features);
  const size_t score_count = static_cast<size_t>(
      c.batch * c.config.num_query_heads * c.q_len * c.kv_len);
  const size_t elem = f16 ? 2 : 4;
  std::vector<unsigned char> out(out_count * elem);
  std::vector<unsigned char> scores(c.want_scores ? score_count * elem : 0);
  a.output = out.data();
  a.scores = c.want_scores ? scores.data() : nullptr;

  size_t bytes = 0;
  st = layer.WorkspaceSize(c.batch, c.q_len, c.kv_len, &bytes, threads);
  Workspace ws;
  if (st.ok() && !ws.Reserve(bytes)) {
    run.status = GQA_STATUS_OUT_OF_MEMORY;
    run.message = "cannot allocate the workspace";
    return run;
  }
  pthreadpool_t pool = threads > 1 ? pthreadpool_create(threads) : nullptr;
  if (st.ok()) st = layer.Forward(a, ws, pool);
  if (pool) pthreadpool_destroy(pool);
  run.status = st.code();
  run.message = st.message();
  if (!st.ok()) return run;

  auto widen = [&](const std::vector<unsigned char>& raw, size_t count) {
    std::vector<float> v(count);
    RawToFloats(raw.data(), count, f16, v.data());
    return v;
  };
  run.output = widen(out, out_count);
  if (c.want_scores) run.scores = widen(scores, score_count);
  return run;
}

Comparison CompareArrays(const std::vector<float>& got,
                         const std::vector<float>& want, double rtol,
                         double atol) {
  Comparison c;
  if (got.size() != want.size()) {
    c.pass = false;
    c.max_abs_err = INFINITY;
    return c;
  }
  for (size_t i = 0; i < got.size(); ++i) {
    const double err = fabs(static_cast<double>(got[i]) - want[i]);
    if (!(err <= atol + rtol * fabs(static_cast<double>(want[i])))) {
      c.pass = false;
    }
    if (!(err <= c.max_abs_err)) c.max_abs_err = err;  // NaN sticks
  }
  return c;
}

}  // namespace gqa
