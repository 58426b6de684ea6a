// gqa-bench's device options: --cpus LIST (pin the run, and the thread
// pool it creates, to a CPU set; several sets run one after another) and
// --target NAME (force a Highway target), plus the device description
// (package, uarch, frequencies, uname) written into the JSON record.
#ifndef GQA_BENCH_BENCH_PIN_H_
#define GQA_BENCH_BENCH_PIN_H_

#include <pthreadpool.h>
#include <stdint.h>

#include <string>
#include <vector>

namespace gqa {

struct DeviceArgs {
  std::vector<std::vector<int>> cpu_sets;  // one per --cpus
  std::vector<std::string> cpu_labels;     // the lists as given
  std::string target;                      // --target, empty: default
  int64_t target_bits = 0;
  // --platform-kernels off|exact|on (f16fml: on) (platforms/
  // platform_kernels.h), empty: the default (GQA_PLATFORM_KERNELS or on).
  std::string platform_kernels;
};

// Whether argv names option (before any parsing).
inline bool HasOption(int argc, char** argv, const char* option) {
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == option) return true;
  }
  return false;
}

// Removes --cpus/--target/--platform-kernels (and their values) from argv,
// adjusting *argc; false with *error naming the option on a bad list or target.
bool ExtractDeviceArgs(int* argc, char** argv, DeviceArgs* d,
                       std::string* error);

// Pins the calling thread to cpus (threads created later inherit it).
bool PinToCpus(const std::vector<int>& cpus, std::string* error);

// Checks that every worker of pool (and the caller) runs inside cpus.
bool CheckPoolAffinity(pthreadpool_t pool, const std::vector<int>& cpus,
                       std::string* error);

// Forces the Highway target and the platform-kernel mode chosen by
// ExtractDeviceArgs (no-op for those not given).
void ApplyTarget(const DeviceArgs& d);

// One JSON object describing the device and the CPU set (no braces around
// the outside missing: a full object).
std::string DeviceJson(const std::vector<int>& cpus, const std::string& label,
                       const std::string& target, int threads);

// Several --cpus: forks one child per set, each pinned (sets run one after
// another), and merges their JSON files (json.N) into json. Returns -1 in
// a child (which goes on to run the bench, *set its set) or the exit code
// in the parent. One set or none: -1 at once, *set 0 (or -1 if none).
int ForkPerCpuSet(const DeviceArgs& d, const std::string& json, int* set);

// ForkPerCpuSet, then in the child (or the one set) pins it, sets *threads
// to the set size unless given, suffixes *json with .N for several sets and
// prints the set's heading. Returns the exit code to leave with, or -1 to
// go on and run the bench (*set: the set, -1 if no --cpus).
int EnterCpuSet(const DeviceArgs& d, bool threads_given, int* threads,
                std::string* json, int* set);

// A one-line human description of the CPU set's cores.
std::string DeviceLine(const std::vector<int>& cpus);

}  // namespace gqa

#endif  // GQA_BENCH_BENCH_PIN_H_
