// Loading golden cases of the LLM format: case.json and its arrays,
// checked against the shapes the case implies (see golden_llm.h; running
// kv cases is in golden_llm_run.cc).
#include "bench/golden_llm.h"

#include <math.h>
#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

namespace gqa {

// "[d0, d1, ...]"; golden_llm_run.cc declares it too.
std::string LlmShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    s += (i ? ", " : "") + std::to_string(shape[i]);
  }
  return s + "]";
}

namespace {

using nlohmann::json;

// Bounds on what case.json may declare, so that no product below overflows:
// each dimension, and each array's element count (1 GiB of f32).
constexpr int64_t kMaxDim = int64_t{1} << 24;
constexpr int64_t kMaxElements = int64_t{1} << 28;

[[noreturn]] void Fail(const std::string& what) {
  throw std::runtime_error(what);
}

// An integer in [lo, hi]; throws naming `what`.
int64_t Int(const json& v, const std::string& what, int64_t lo,
            int64_t hi = kMaxDim) {
  if (!v.is_number_integer()) Fail(what + ": not an integer");
  if (v.is_number_unsigned() ? v.get<uint64_t>() > static_cast<uint64_t>(hi)
                             : v.get<int64_t>() > hi) {
    Fail(what + ": " + v.dump() + " exceeds " + std::to_string(hi));
  }
  const int64_t x = v.get<int64_t>();
  if (x < lo) Fail(what + ": " + v.dump() + " is below " + std::to_string(lo));
  return x;
}

int64_t IntAt(const json& j, const char* key, const std::string& what,
              int64_t lo, int64_t hi = kMaxDim) {
  if (!j.contains(key)) Fail(what + "." + key + ": missing");
  return Int(j[key], what + "." + key, lo, hi);
}

double Number(const json& v, const std::string& what) {
  if (!v.is_number()) Fail(what + ": not a number");
  const double x = v.get<double>();
  if (!isfinite(x)) Fail(what + ": not finite");
  return x;
}

bool Bool(const json& j, const char* key, const std::string& what) {
  if (!j.contains(key)) return false;
  if (!j[key].is_boolean()) Fail(what + "." + key + ": not a boolean");
  return j[key].get<bool>();
}

std::string String(const json& j, const char* key, const std::string& what,
                   const std::set<std::string>& allowed,
                   const std::string& fallback) {
  if (!j.contains(key)) return fallback;
  if (!j[key].is_string()) Fail(what + "." + key + ": not a string");
  std::string s = j[key].get<std::string>();
  if (!allowed.empty() && !allowed.count(s)) {
    Fail(what + "." + key + ": unknown value \"" + s + "\"");
  }
  return s;
}

LlmTolerance Tolerance(const json& j, const std::string& what,
                       const LlmTolerance& fallback) {
  if (!j.contains("tolerance")) return fallback;
  const json& t = j["tolerance"];
  LlmTolerance tol;
  tol.atol = Number(t.at("atol"), what + ".tolerance.atol");
  tol.rtol = Number(t.at("rtol"), what + ".tolerance.rtol");
  if (!(tol.atol >= 0 && tol.atol < 1e3 && tol.rtol >= 0 && tol.rtol < 1e3)) {
    Fail(what + ".tolerance: atol and rtol must be in [0, 1e3)");
  }
  return tol;
}

int64_t ElementBytes(const std::string& dtype) {
  return dtype == "float32" ? 4 : dtype == "int64" ? 8 : 1;
}

// Reads one {file, shape, dtype} entry: exactly prod(shape) elements, the
// file's byte size checked before reading.
LlmArray ReadArray(const std::string& dir, const json& entry,
                   const std::string& what) {
  if (!entry.is_object()) Fail(what + ": not an object");
  LlmArray a;
  a.dtype = String(entry, "dtype", what, {"float32", "int64", "uint8"}, "");
  if (a.dtype.empty()) Fail(what + ".dtype: missing");
  if (!entry.contains("file") || !entry["file"].is_string()) {
    Fail(what + ".file: missing");
  }
  const std::string file = entry["file"].get<std::string>();
  if (file.empty() || file.find('/') != std::string::npos || file == "..") {
    Fail(what + ".file: \"" + file + "\" is not a file name in the case");
  }
  const json& sh = entry.at("shape");
  if (!sh.is_array() || sh.size() > 8) {
    Fail(what + ".shape: must be a list of at most 8 dims");
  }
  int64_t count = 1;
  for (size_t i = 0; i < sh.size(); ++i) {
    const int64_t d = Int(sh[i], what + ".shape", 0);
    a.shape.push_back(d);
    if (d != 0 && count > kMaxElements / d) {
      Fail(what + ": shape " + LlmShapeString(a.shape) + "... is too large");
    }
    count *= d;
  }
  const std::string path = dir + "/" + file;
  const int64_t want_bytes = count * ElementBytes(a.dtype);
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    Fail("cannot open " + path);
  }
  if (static_cast<int64_t>(st.st_size) != want_bytes) {
    Fail(path + ": " + a.dtype + " shape " + LlmShapeString(a.shape) +
         " needs " + std::to_string(want_bytes) + " bytes, the file has " +
         std::to_string(static_cast<int64_t>(st.st_size)));
  }
  char* dst = nullptr;
  if (a.dtype == "float32") {
    a.f32.resize(static_cast<size_t>(count));
    dst = reinterpret_cast<char*>(a.f32.data());
  } else if (a.dtype == "int64") {
    a.i64.resize(static_cast<size_t>(count));
    dst = reinterpret_cast<char*>(a.i64.data());
  } else {
    a.u8.resize(static_cast<size_t>(count));
    dst = reinterpret_cast<char*>(a.u8.data());
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) Fail("cannot open " + path);
  if (want_bytes > 0) f.read(dst, static_cast<std::streamsize>(want_bytes));
  if ((want_bytes > 0 && f.gcount() != want_bytes) ||
      f.peek() != std::char_traits<char>::eof()) {
    Fail(path + ": " + LlmShapeString(a.shape) + " needs " +
         std::to_string(want_bytes) + " bytes, read " +
         std::to_string(static_cast<int64_t>(f.gcount())));
  }
  return a;
}

std::map<std::string, LlmArray> ReadFiles(const std::string& dir, const json& j,
                                          const std::string& what) {
  std::map<std::string, LlmArray> files;
  if (!j.contains("files")) return files;
  if (!j["files"].is_object()) Fail(what + ".files: not an object");
  for (const auto& item : j["files"].items()) {
    files[item.key()] =
        ReadArray(dir, item.value(), what + ".files." + item.key());
  }
  return files;
}

// Checks that files[role] (when present, or always when `required`) has
// this dtype and shape.
void Expect(const std::map<std::string, LlmArray>& files,
            const std::string& role, const std::string& dtype,
            const std::vector<int64_t>& shape, bool required,
            const std::string& what) {
  auto it = files.find(role);
  if (it == files.end()) {
    if (required) Fail(what + ".files." + role + ": missing");
    return;
  }
  if (it->second.dtype != dtype) {
    Fail(what + ".files." + role + ": dtype " + it->second.dtype + ", want " +
         dtype);
  }
  if (it->second.shape != shape) {
    Fail(what + ".files." + role + ": shape " +
         LlmShapeString(it->second.shape) + ", the case implies " +
         LlmShapeString(shape));
  }
}

void LoadKv(const json& j, LlmCase* c) {
  const json& cj = j.at("cache");
  LlmKvCacheSpec& k = c->cache;
  k.B = IntAt(cj, "B", "cache", 1);
  k.Hkv = IntAt(cj, "Hkv", "cache", 1);
  k.D = IntAt(cj, "D", "cache", 1);
  k.Dv = cj.contains("Dv") ? IntAt(cj, "Dv", "cache", 1) : k.D;
  k.capacity = IntAt(cj, "capacity", "cache", 1);
  k.dtype = String(cj, "dtype", "cache", {"f32", "f16", "q8", "q4"}, "f32");
  k.ring = Bool(cj, "ring", "cache");
  k.rotate = Bool(cj, "rotate", "cache");
  k.expect_error = Bool(cj, "expect_error", "cache");
  k.error = String(cj, "error", "cache", {}, "");
  const json& steps = j.at("steps");
  if (!steps.is_array()) Fail("steps: not a list");
  for (size_t i = 0; i < steps.size(); ++i) {
    const json& sj = steps[i];
    const std::string what = "steps[" + std::to_string(i) + "]";
    LlmKvStep s;
    s.op = String(sj, "op", what,
                  {"append", "attend", "truncate", "keep", "read"}, "");
    if (s.op.empty()) Fail(what + ".op: missing");
    s.expect_error = Bool(sj, "expect_error", what);
    s.error = String(sj, "error", what, {}, "");
    s.tolerance = Tolerance(sj, what, c->tolerance);
    const json& la = sj.at("lengths_after");
    if (!la.is_array() || static_cast<int64_t>(la.size()) != k.B) {
      Fail(what + ".lengths_after: must be a list of B = " +
           std::to_string(k.B) + " integers");
    }
    for (size_t b = 0; b < la.size(); ++b) {
      s.lengths_after.push_back(Int(la[b], what + ".lengths_after", 0));
    }
    s.files = ReadFiles(c->dir, sj, what);
    const bool out_required = !s.expect_error;
    if (s.op == "append") {
      const auto kit = s.files.find("k");
      if (kit == s.files.end() || kit->second.shape.size() != 4) {
        Fail(what + ".files.k: missing or not [B, n, Hkv, D]");
      }
      s.n = sj.contains("n") ? IntAt(sj, "n", what, 0) : kit->second.shape[1];
      s.src_dtype = String(sj, "src_dtype", what, {"f32", "f16"}, "f32");
      Expect(s.files, "k", "float32", {k.B, s.n, k.Hkv, k.D}, true, what);
      Expect(s.files, "v", "float32", {k.B, s.n, k.Hkv, k.Dv}, true, what);
      Expect(s.files, "counts", "int64", {k.B}, false, what);
    } else if (s.op == "attend") {
      s.T = IntAt(sj, "T", what, 1);
      s.Hq = IntAt(sj, "Hq", what, 1);
      const json& o = sj.contains("options") ? sj["options"] : json::object();
      if (!o.is_object()) Fail(what + ".options: not an object");
      for (const auto& item : o.items()) {
        const std::string& key = item.key();
        const std::string ow = what + ".options." + key;
        if (key == "scale") {
          s.scale = Number(item.value(), ow);
        } else if (key == "softcap") {
          s.softcap = Number(item.value(), ow);
        } else if (key == "window") {
          s.window = Int(item.value(), ow, 0);
        } else if (key == "policy") {
          s.policy = String(o, "policy", what + ".options", {"zero", "uniform"},
                            "zero");
        } else if (key == "q_dtype") {
          s.q_dtype =
              String(o, "q_dtype", what + ".options", {"f32", "f16"}, "f32");
        } else {
          s.other_options.push_back(key);
        }
      }
      Expect(s.files, "q", "float32", {k.B, s.T, s.Hq, k.D}, true, what);
      Expect(s.files, "out", "float32", {k.B, s.T, s.Hq, k.Dv}, out_required,
             what);
      Expect(s.files, "sinks", "float32", {s.Hq}, false, what);
      Expect(s.files, "alibi", "float32", {s.Hq}, false, what);
      Expect(s.files, "tree", "uint8", {k.B, s.T, s.T}, false, what);
    } else if (s.op == "truncate") {
      Expect(s.files, "lengths", "int64", {k.B}, true, what);
    } else if (s.op == "keep") {
      s.batch = IntAt(sj, "batch", what, -kMaxDim);
      s.T = IntAt(sj, "T", what, -kMaxDim);
      const auto it = s.files.find("indices");
      if (it == s.files.end() || it->second.dtype != "int64" ||
          it->second.shape.size() != 1) {
        Fail(what + ".files.indices: missing or not int64 [m]");
      }
    } else {  // read
      s.batch = IntAt(sj, "batch", what, -kMaxDim);
      s.position = IntAt(sj, "position", what, -kMaxDim);
      s.head = IntAt(sj, "head", what, -kMaxDim);
      Expect(s.files, "k_row", "float32", {k.D}, out_required, what);
      Expect(s.files, "v_row", "float32", {k.Dv}, out_required, what);
    }
    c->steps.push_back(std::move(s));
  }
  if (k.expect_error && !c->steps.empty()) {
    Fail("cache.expect_error: a case whose cache fails has no steps");
  }
}

void LoadOther(const json& j, LlmCase* c) {
  if (j.contains("shapes")) {
    if (!j["shapes"].is_object()) Fail("shapes: not an object");
    for (const auto& item : j["shapes"].items()) {
      c->shapes[item.key()] = Int(item.value(), "shapes." + item.key(), 1);
    }
  }
  if (j.contains("options")) {
    if (!j["options"].is_object()) Fail("options: not an object");
    for (const auto& item : j["options"].items()) {
      const json& v = item.value();
      if (v.is_boolean()) {
        c->numeric_options[item.key()] = v.get<bool>() ? 1.0 : 0.0;
      } else if (v.is_number()) {
        c->numeric_options[item.key()] = Number(v, "options." + item.key());
      } else if (v.is_string()) {
        c->string_options[item.key()] = v.get<std::string>();
      } else if (!v.is_null()) {
        Fail("options." + item.key() + ": not a number, boolean or string");
      }
    }
  }
  c->files = ReadFiles(c->dir, j, "case");
  auto dim = [&](const char* name) {
    auto it = c->shapes.find(name);
    if (it == c->shapes.end())
      Fail(std::string("shapes.") + name + ": missing");
    return it->second;
  };
  if (c->kind == "attention") {
    const int64_t B = dim("B"), T = dim("T"), S = dim("S"), Hq = dim("Hq");
    const int64_t Hkv = dim("Hkv"), D = dim("D");
    const int64_t Dv = c->shapes.count("Dv") ? dim("Dv") : D;
    Expect(c->files, "q", "float32", {B, T, Hq, D}, true, "case");
    Expect(c->files, "k", "float32", {B, S, Hkv, D}, true, "case");
    Expect(c->files, "v", "float32", {B, S, Hkv, Dv}, true, "case");
    Expect(c->files, "out", "float32", {B, T, Hq, Dv}, true, "case");
    Expect(c->files, "scores", "float32", {B, Hq, T, S}, false, "case");
    Expect(c->files, "offsets", "int64", {B}, false, "case");
    Expect(c->files, "alibi", "float32", {Hq}, false, "case");
    Expect(c->files, "sinks", "float32", {Hq}, false, "case");
    Expect(c->files, "key_lengths", "int64", {B}, false, "case");
    Expect(c->files, "key_mask", "uint8", {B, S}, false, "case");
  } else {  // rope
    const int64_t B = dim("B"), T = dim("T"), H = dim("H"), D = dim("D");
    Expect(c->files, "x", "float32", {B, T, H, D}, true, "case");
    Expect(c->files, "positions", "int64", {B, T}, true, "case");
    Expect(c->files, "y", "float32", {B, T, H, D}, true, "case");
    Expect(c->files, "norm_weight", "float32", {D}, false, "case");
  }
}

bool ReadJson(const std::string& dir, json* j, std::string* error) {
  std::ifstream f(dir + "/case.json");
  if (!f) {
    *error = "cannot open " + dir + "/case.json";
    return false;
  }
  try {
    f >> *j;
  } catch (const std::exception& e) {
    *error = dir + "/case.json: " + e.what();
    return false;
  }
  return true;
}

}  // namespace

std::string LlmCaseKind(const std::string& dir) {
  json j;
  std::string error;
  if (!ReadJson(dir, &j, &error)) return "";
  if (!j.is_object() || !j.contains("kind") || !j["kind"].is_string()) {
    return "";
  }
  return j["kind"].get<std::string>();
}

bool LoadLlmCase(const std::string& dir, LlmCase* out, std::string* error) {
  json j;
  if (!ReadJson(dir, &j, error)) return false;
  try {
    if (!j.is_object()) Fail("not a JSON object");
    LlmCase c;
    c.dir = dir;
    c.kind = String(j, "kind", "case", {"attention", "kv", "rope"}, "");
    if (c.kind.empty()) Fail("kind: missing");
    c.name = String(j, "name", "case", {}, dir);
    c.description = String(j, "description", "case", {}, "");
    if (!j.contains("tolerance")) Fail("tolerance: missing");
    c.tolerance = Tolerance(j, "case", LlmTolerance{});
    if (c.kind == "kv") {
      LoadKv(j, &c);
    } else {
      LoadOther(j, &c);
    }
    *out = std::move(c);
  } catch (const std::exception& e) {
    *error = dir + "/case.json: " + e.what();
    return false;
  }
  return true;
}

}  // namespace gqa
