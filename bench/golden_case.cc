// Loading and running golden cases (see golden_case.h).
#include "bench/golden_case.h"

#include <dirent.h>
#include <math.h>
#include <pthreadpool.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "gqa/gqa.hpp"
#include "src/reference/f16_util.h"

namespace gqa {
namespace {

using nlohmann::json;

bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// Bounds on what case.json may declare: each dimension, and each array's
// element count (1 GiB of f32), so that no product below can overflow.
constexpr int64_t kMaxDim = int64_t{1} << 24;
constexpr int64_t kMaxElements = int64_t{1} << 28;

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    s += (i ? ", " : "") + std::to_string(shape[i]);
  }
  return s + "]";
}

// An integer in [lo, kMaxDim]; throws std::runtime_error naming `what`.
int64_t CheckedInt(const json& v, const std::string& what, int64_t lo) {
  if (!v.is_number_integer()) {
    throw std::runtime_error(what + ": not an integer");
  }
  if (v.is_number_unsigned() ? v.get<uint64_t>() > uint64_t{kMaxDim}
                             : v.get<int64_t>() > kMaxDim) {
    throw std::runtime_error(what + ": " + v.dump() + " exceeds " +
                             std::to_string(kMaxDim));
  }
  const int64_t x = v.get<int64_t>();
  if (x < lo) {
    throw std::runtime_error(what + ": " + v.dump() + " is below " +
                             std::to_string(lo));
  }
  return x;
}

// Product of dims, each in [1, kMaxDim]; throws if above kMaxElements.
int64_t CheckedCount(const std::vector<int64_t>& shape,
                     const std::string& what) {
  int64_t count = 1;
  for (int64_t d : shape) {
    if (d < 1 || d > kMaxDim || count > kMaxElements / d) {
      throw std::runtime_error(what + ": shape " + ShapeString(shape) +
                               " is out of range");
    }
    count *= d;
  }
  return count;
}

std::vector<int64_t> ReadShape(const json& entry, const std::string& what) {
  const json& sh = entry.at("shape");
  if (!sh.is_array() || sh.empty() || sh.size() > 8) {
    throw std::runtime_error(what + ": shape must be a list of 1 to 8 dims");
  }
  std::vector<int64_t> shape;
  for (size_t i = 0; i < sh.size(); ++i) {
    shape.push_back(CheckedInt(sh[i], what + ": shape", 1));
  }
  CheckedCount(shape, what);
  if (entry.contains("dtype") && entry["dtype"] != "float32") {
    throw std::runtime_error(what + ": dtype " + entry["dtype"].dump() +
                             " is not \"float32\"");
  }
  return shape;
}

// Reads exactly prod(shape) floats: a file shorter or longer than that is an
// error naming the file and both byte counts.
bool ReadArray(const std::string& path, const std::vector<int64_t>& shape,
               GoldenArray* out, std::string* error) {
  const int64_t count = CheckedCount(shape, path);
  const int64_t want_bytes = count * static_cast<int64_t>(sizeof(float));
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    *error = "cannot open " + path;
    return false;
  }
  if (static_cast<int64_t>(st.st_size) != want_bytes) {
    *error = path + ": shape " + ShapeString(shape) + " needs " +
             std::to_string(want_bytes) + " bytes, the file has " +
             std::to_string(static_cast<int64_t>(st.st_size));
    return false;
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    *error = "cannot open " + path;
    return false;
  }
  out->shape = shape;
  out->data.resize(static_cast<size_t>(count));
  f.read(reinterpret_cast<char*>(out->data.data()),
         static_cast<std::streamsize>(want_bytes));
  if (f.gcount() != static_cast<std::streamsize>(want_bytes) ||
      f.peek() != std::char_traits<char>::eof()) {
    *error = path + ": shape " + ShapeString(shape) + " needs " +
             std::to_string(want_bytes) + " bytes, read " +
             std::to_string(static_cast<int64_t>(f.gcount()));
    return false;
  }
  return true;
}

// Checks the arrays that RunGoldenCase hands to the library against the
// shapes the case's B, T, S and config imply, so that the library never
// reads past one. Throws std::runtime_error.
void CheckShapes(const GoldenCase& c) {
  const gqa_layer_config& k = c.config;
  const int64_t B = c.batch, T = c.q_len, S = c.kv_len;
  const int64_t Hq = k.num_query_heads, Hkv = k.num_key_value_heads;
  const int64_t D = k.head_dim, Fq = k.query_features;
  const int64_t Fv = k.value_features, Fk = k.key_features;
  const std::vector<int64_t> bhts = {B, Hq, T, S};
  CheckedCount(bhts, "B*num_query_heads*T*S");
  const std::map<std::string, std::vector<int64_t>> expected = {
      {"query", {B, T, Fq}},
      {"value", {B, S, Fv}},
      {"key", {B, S, Fk}},
      {"query_kernel", {Fq, Hq, D}},
      {"query_bias", {Hq, D}},
      {"key_kernel", {Fk, Hkv, D}},
      {"key_bias", {Hkv, D}},
      {"value_kernel", {Fv, Hkv, D}},
      {"value_bias", {Hkv, D}},
      {"gate_kernel", {Fq, Hq, D}},
      {"gate_bias", {Hq, D}},
      {"output_kernel", {Hq, D, Fq}},
      {"output_bias", {Fq}},
      {"output", {B, T, Fq}},
      {"scores", bhts},
      {"query_mask", {B, T}},
      {"value_mask", {B, S}},
      {"key_mask", {B, S}},
      {"dropout_keep_mask", bhts},
  };
  std::vector<std::string> required = {
      "query",        "value",         "query_kernel", "key_kernel",
      "value_kernel", "output_kernel", "output"};
  if (k.use_bias) {
    for (const char* b :
         {"query_bias", "key_bias", "value_bias", "output_bias"}) {
      required.push_back(b);
    }
  }
  if (k.use_gate) required.push_back("gate_kernel");
  if (k.use_gate && k.use_bias) required.push_back("gate_bias");
  for (const std::string& key : required) {
    if (!c.Find(key)) {
      throw std::runtime_error("files: \"" + key + "\" is missing");
    }
  }
  if (!c.Find("key") && Fk != Fv) {
    throw std::runtime_error("key omitted but Fk " + std::to_string(Fk) +
                             " != Fv " + std::to_string(Fv));
  }
  for (const auto& item : c.arrays) {
    const size_t slash = item.first.find('/');  // alternate "policy/output"
    const std::string base =
        slash == std::string::npos ? item.first : item.first.substr(slash + 1);
    auto it = expected.find(base);
    if (it != expected.end() && item.second.shape != it->second) {
      throw std::runtime_error(
          item.first + ": shape " + ShapeString(item.second.shape) +
          ", but the case's dimensions imply " + ShapeString(it->second));
    }
  }
  // attention_mask: [T, S], [B, T, S] or [B, Hq, T, S], each dim equal to
  // that one or 1 (broadcast).
  if (const GoldenArray* am = c.Find("attention_mask")) {
    const std::vector<int64_t>& d = am->shape;
    const std::vector<int64_t> full = d.size() == 2 ? std::vector<int64_t>{T, S}
                                      : d.size() == 3
                                          ? std::vector<int64_t>{B, T, S}
                                          : bhts;
    bool ok = d.size() >= 2 && d.size() <= 4;
    for (size_t i = 0; ok && i < d.size(); ++i) {
      ok = d[i] == full[i] || d[i] == 1;
    }
    if (!ok) {
      throw std::runtime_error("attention_mask: shape " + ShapeString(d) +
                               " does not broadcast to " + ShapeString(full));
    }
  }
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
    c.batch = CheckedInt(sh.at("B"), "shapes.B", 1);
    c.q_len = CheckedInt(sh.at("T"), "shapes.T", 1);
    c.kv_len = CheckedInt(sh.at("S"), "shapes.S", 1);
    const int64_t fq = CheckedInt(sh.at("Fq"), "shapes.Fq", 1);
    const int64_t fv = CheckedInt(sh.at("Fv"), "shapes.Fv", 1);
    const int64_t fk =
        sh.at("Fk").is_null() ? fv : CheckedInt(sh.at("Fk"), "shapes.Fk", 1);
    gqa_layer_config_init(
        &c.config, CheckedInt(j.at("head_dim"), "head_dim", 1),
        CheckedInt(j.at("num_query_heads"), "num_query_heads", 1),
        CheckedInt(j.at("num_key_value_heads"), "num_key_value_heads", 1), fq,
        fv);
    c.config.key_features = fk;
    c.config.use_bias = j.at("use_bias").get<bool>();
    c.config.use_gate = j.value("use_gate", false);
    c.config.sliding_window =
        j.at("sliding_window").is_null()
            ? 0
            : CheckedInt(j.at("sliding_window"), "sliding_window", 0);
    c.config.dropout = j.value("dropout", 0.0f);
    c.training = j.value("training", false);
    c.causal = j.value("use_causal_mask", false);
    c.want_scores = j.value("return_attention_scores", false);
    if (j.contains("tolerance")) {
      c.rtol = j["tolerance"].value("rtol", 1e-4);
      c.atol = j["tolerance"].value("atol", 1e-4);
      if (!(c.rtol >= 0 && c.rtol < 1e3 && c.atol >= 0 && c.atol < 1e3)) {
        throw std::runtime_error(
            "tolerance: rtol and atol must be in [0, 1e3)");
      }
    }
    for (const auto& item : j.at("files").items()) {
      const std::string what = "files." + item.key();
      const std::vector<int64_t> shape = ReadShape(item.value(), what);
      GoldenArray a;
      if (!ReadArray(dir + "/" + item.value().at("file").get<std::string>(),
                     shape, &a, error)) {
        return false;
      }
      c.arrays[item.key()] = std::move(a);
    }
    if (j.contains("alternate_policy_files")) {
      for (const auto& pol : j["alternate_policy_files"].items()) {
        if (pol.key() != "zero" && pol.key() != "uniform") {
          throw std::runtime_error("alternate_policy_files: unknown policy \"" +
                                   pol.key() + "\"");
        }
        for (const auto& arr : pol.value().items()) {
          if (arr.key() != "output" && arr.key() != "scores") {
            throw std::runtime_error("alternate_policy_files." + pol.key() +
                                     ": unknown array \"" + arr.key() + "\"");
          }
          const std::string key = pol.key() + "/" + arr.key();
          const std::vector<int64_t> shape =
              ReadShape(arr.value(), "alternate_policy_files." + key);
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
    CheckShapes(c);
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
    if (h.empty()) h = reference::ToHalf(a->data);
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
    return reference::Widen(raw.data(), count, f16);
  };
  run.output = widen(out, out_count);
  if (c.want_scores) run.scores = widen(scores, score_count);
  return run;
}

}  // namespace gqa
