// gqa-bench's --cpus and --target, and the device description: pinning
// through sched_setaffinity (Linux threads inherit the creator's mask, so
// the pthreadpool made after the pin runs on the set: checked per worker),
// Highway targets forced with hwy::SetSupportedTargetsForTest, cores
// described by libcpuinfo (when linked) and cpufreq in sysfs.
#include "bench/bench_pin.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>

#include "hwy/targets.h"
#include "platforms/f16_fml.h"
#include "platforms/platform_kernels.h"
#if GQA_HAVE_CPUINFO
#include <cpuinfo.h>
#endif

namespace gqa {
namespace {

// "4-7", "0,2", "0-1,4": sorted unique CPUs below CPU_SETSIZE.
bool ParseCpuList(const std::string& s, std::vector<int>* cpus) {
  cpus->clear();
  size_t i = 0;
  auto num = [&](int* v) {
    if (i >= s.size() || s[i] < '0' || s[i] > '9') return false;
    long n = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      n = n * 10 + (s[i++] - '0');
      if (n >= CPU_SETSIZE) return false;
    }
    *v = static_cast<int>(n);
    return true;
  };
  while (true) {
    int lo = 0, hi = 0;
    if (!num(&lo)) return false;
    hi = lo;
    if (i < s.size() && s[i] == '-') {
      ++i;
      if (!num(&hi) || hi < lo) return false;
    }
    for (int c = lo; c <= hi; ++c) cpus->push_back(c);
    if (i == s.size()) break;
    if (s[i++] != ',') return false;
  }
  std::sort(cpus->begin(), cpus->end());
  cpus->erase(std::unique(cpus->begin(), cpus->end()), cpus->end());
  return !cpus->empty();
}

// Highway targets compiled and supported here. Debian's armhf libhwy
// detects no NEON at run time: where the intersection is empty the static
// target stands in (what dispatch falls back to; tests/layer_case.h too).
std::vector<int64_t> ForceableTargets() {
  std::vector<int64_t> targets = hwy::SupportedAndGeneratedTargets();
  if (targets.empty()) targets.push_back(HWY_STATIC_TARGET);
  return targets;
}

std::string SupportedTargetList() {
  std::string list;
  for (int64_t t : ForceableTargets()) {
    if (!list.empty()) list += ", ";
    list += hwy::TargetName(t);
  }
  return list;
}

std::string ReadSysfs(int cpu, const char* file) {
  char path[128];
  snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d/cpufreq/%s", cpu,
           file);
  FILE* f = fopen(path, "r");
  if (!f) return "unknown";
  long khz = 0;
  const bool ok = fscanf(f, "%ld", &khz) == 1;
  fclose(f);
  return ok ? std::to_string(khz / 1000) + " MHz" : "unknown";
}

std::string UarchName(int cpu) {
#if GQA_HAVE_CPUINFO
  static const bool ok = cpuinfo_initialize();
  if (!ok || static_cast<uint32_t>(cpu) >= cpuinfo_get_processors_count())
    return "unknown";
  const cpuinfo_processor* p = cpuinfo_get_processor(cpu);
  if (!p || !p->core) return "unknown";
  switch (p->core->uarch) {
    case cpuinfo_uarch_cortex_a53:
      return "Cortex-A53";
    case cpuinfo_uarch_cortex_a55:
      return "Cortex-A55";
    case cpuinfo_uarch_cortex_a57:
      return "Cortex-A57";
    case cpuinfo_uarch_cortex_a72:
      return "Cortex-A72";
    case cpuinfo_uarch_cortex_a73:
      return "Cortex-A73";
    case cpuinfo_uarch_cortex_a75:
      return "Cortex-A75";
    case cpuinfo_uarch_cortex_a76:
      return "Cortex-A76";
    case cpuinfo_uarch_cortex_a77:
      return "Cortex-A77";
    case cpuinfo_uarch_cortex_a78:
      return "Cortex-A78";
    case cpuinfo_uarch_cortex_x1:
      return "Cortex-X1";
    case cpuinfo_uarch_neoverse_n1:
      return "Neoverse-N1";
    case cpuinfo_uarch_zen:
      return "Zen";
    case cpuinfo_uarch_zen2:
      return "Zen2";
    case cpuinfo_uarch_zen3:
      return "Zen3";
    case cpuinfo_uarch_unknown:
      return "unknown";
    default: {
      char hex[32];
      snprintf(hex, sizeof(hex), "uarch 0x%x",
               static_cast<unsigned>(p->core->uarch));
      return hex;
    }
  }
#else
  (void)cpu;
  return "unknown";
#endif
}

std::string PackageName() {
#if GQA_HAVE_CPUINFO
  if (cpuinfo_initialize() && cpuinfo_get_packages_count() > 0 &&
      cpuinfo_get_package(0)->name[0] != '\0')
    return cpuinfo_get_package(0)->name;
#endif
  return "unknown";
}

std::string JsonEscape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) o += c;
  }
  return o;
}

}  // namespace

bool ExtractDeviceArgs(int* argc, char** argv, DeviceArgs* d,
                       std::string* error) {
  int out = 1;
  for (int i = 1; i < *argc; ++i) {
    const std::string a = argv[i];
    if (a != "--cpus" && a != "--target" && a != "--platform-kernels") {
      argv[out++] = argv[i];
      continue;
    }
    if (i + 1 >= *argc) {
      *error = a + " needs a value";
      return false;
    }
    const std::string v = argv[++i];
    if (a == "--cpus") {
      std::vector<int> cpus;
      if (!ParseCpuList(v, &cpus)) {
        *error = "--cpus: '" + v + "' is not a CPU list like 4-7 or 0,2";
        return false;
      }
      d->cpu_sets.push_back(cpus);
      d->cpu_labels.push_back(v);
      continue;
    }
    if (a == "--platform-kernels") {
      if (v != "off" && v != "exact" && v != "on" && v != "f16fml") {
        *error = "--platform-kernels: '" + v + "' is not off, exact or on";
        return false;
      }
      d->platform_kernels = v;
      continue;
    }
    int64_t bits = 0;
    for (int64_t t : ForceableTargets()) {
      if (strcasecmp(hwy::TargetName(t), v.c_str()) == 0) bits = t;
    }
    if (bits == 0) {
      *error = "--target: '" + v +
               "' is not a target this CPU supports (supported: " +
               SupportedTargetList() + ")";
      return false;
    }
    d->target = hwy::TargetName(bits);
    d->target_bits = bits;
  }
  *argc = out;
  argv[out] = nullptr;
  return true;
}

bool PinToCpus(const std::vector<int>& cpus, std::string* error) {
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : cpus) CPU_SET(c, &set);
  if (sched_setaffinity(0, sizeof(set), &set) != 0) {
    *error =
        std::string("--cpus: sched_setaffinity failed: ") + strerror(errno);
    return false;
  }
  return true;
}

bool CheckPoolAffinity(pthreadpool_t pool, const std::vector<int>& cpus,
                       std::string* error) {
  struct Ctx {
    const std::vector<int>* cpus;
    std::atomic<int> bad{0};
  } ctx;
  ctx.cpus = &cpus;
  auto task = [](void* p, size_t) {
    Ctx* c = static_cast<Ctx*>(p);
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) {
      c->bad.fetch_add(1);
      return;
    }
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (CPU_ISSET(cpu, &set) &&
          !std::binary_search(c->cpus->begin(), c->cpus->end(), cpu))
        c->bad.fetch_add(1);
    }
  };
  // Many small tasks so that every worker takes some.
  pthreadpool_parallelize_1d(pool, task, &ctx, 256, 0);
  if (ctx.bad.load() != 0) {
    *error = "--cpus: a thread runs outside the CPU set";
    return false;
  }
  return true;
}

void ApplyTarget(const DeviceArgs& d) {
  if (d.target_bits != 0) hwy::SetSupportedTargetsForTest(d.target_bits);
  if (d.platform_kernels == "off") SetPlatformKernels(PlatformKernels::kOff);
  if (d.platform_kernels == "exact")
    SetPlatformKernels(PlatformKernels::kExact);
  if (d.platform_kernels == "on" || d.platform_kernels == "f16fml")
    SetPlatformKernels(PlatformKernels::kOn);
}

int ForkPerCpuSet(const DeviceArgs& d, const std::string& json, int* set) {
  *set = d.cpu_sets.empty() ? -1 : 0;
  if (d.cpu_sets.size() <= 1) return -1;
  int rc = 0;
  for (size_t i = 0; i < d.cpu_sets.size(); ++i) {
    fflush(stdout);
    const pid_t pid = fork();
    if (pid == 0) {
      *set = static_cast<int>(i);
      return -1;
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) {
      rc = 1;
    } else if (WEXITSTATUS(status) != 0) {
      rc = WEXITSTATUS(status);
    }
  }
  if (json.empty()) return rc;
  // Each child wrote "[\n records \n]\n": join them into one array.
  std::string all = "[\n";
  for (size_t i = 0; i < d.cpu_sets.size(); ++i) {
    const std::string part = json + "." + std::to_string(i);
    FILE* f = fopen(part.c_str(), "r");
    if (!f) return rc ? rc : 1;
    std::string body;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) body.append(buf, n);
    fclose(f);
    remove(part.c_str());
    const size_t b = body.find('['), e = body.rfind(']');
    if (b == std::string::npos || e == std::string::npos || e < b) continue;
    std::string inner = body.substr(b + 1, e - b - 1);
    while (!inner.empty() && (inner.back() == '\n' || inner.back() == ' '))
      inner.pop_back();
    if (inner.empty()) continue;
    if (all.size() > 2) all += ",";
    all += inner;
  }
  all += "\n]\n";
  FILE* f = fopen(json.c_str(), "w");
  if (!f) return 1;
  fputs(all.c_str(), f);
  fclose(f);
  return rc;
}

int EnterCpuSet(const DeviceArgs& d, bool threads_given, int* threads,
                std::string* json, int* set) {
  const int parent_rc = ForkPerCpuSet(d, *json, set);
  if (parent_rc >= 0 || *set < 0) return parent_rc;
  const std::vector<int>& cpus = d.cpu_sets[*set];
  if (!threads_given) *threads = static_cast<int>(cpus.size());
  if (d.cpu_sets.size() > 1 && !json->empty())
    *json += "." + std::to_string(*set);
  std::string error;
  if (!PinToCpus(cpus, &error)) {
    fprintf(stderr, "gqa-bench: %s\n", error.c_str());
    return 2;
  }
  printf("== cpus %s: %s\n", d.cpu_labels[*set].c_str(),
         DeviceLine(cpus).c_str());
  return -1;
}

std::string DeviceLine(const std::vector<int>& cpus) {
  std::string line;
  for (int c : cpus) {
    if (!line.empty()) line += "; ";
    line += "cpu" + std::to_string(c) + " " + UarchName(c) + " max " +
            ReadSysfs(c, "cpuinfo_max_freq") + " cur " +
            ReadSysfs(c, "scaling_cur_freq");
  }
  return line;
}

std::string DeviceJson(const std::vector<int>& cpus, const std::string& label,
                       const std::string& target, int threads) {
  utsname u;
  std::string kernel = "unknown";
  if (uname(&u) == 0)
    kernel = std::string(u.sysname) + " " + u.release + " " + u.machine;
  std::string cores;
  for (int c : cpus) {
    if (!cores.empty()) cores += ", ";
    cores += "{\"cpu\": " + std::to_string(c) + ", \"uarch\": \"" +
             JsonEscape(UarchName(c)) + "\", \"max_freq\": \"" +
             ReadSysfs(c, "cpuinfo_max_freq") + "\", \"cur_freq\": \"" +
             ReadSysfs(c, "scaling_cur_freq") + "\"}";
  }
  const F16FmlKernels* fml = BestF16FmlKernels();
  return "{\"kind\": \"device\", \"package\": \"" + JsonEscape(PackageName()) +
         "\", \"kernel\": \"" + JsonEscape(kernel) + "\", \"cpus\": \"" +
         JsonEscape(label) + "\", \"target\": \"" + JsonEscape(target) +
         "\", \"platform_kernels\": \"" + PlatformKernelsName() +
         "\", \"f16_fml\": \"" + (fml ? fml->name : "none") +
         "\", \"threads\": " + std::to_string(threads) + ", \"cores\": [" +
         cores + "]}";
}

}  // namespace gqa
