#!/usr/bin/python3
# ARM performance on paper: compiles the real micro-kernels (bench/mca/) for
# aarch64 NEON and SVE, cuts each kernel's innermost FMA loop out of the
# assembly, runs llvm-mca on it for llvm's ARM scheduling models, and adds an
# estimate for Cortex-A76 and Cortex-X1 from their published pipe counts.
#
#   /usr/bin/python3 bench/arm_mca.py [--out DIR] [--json FILE] [--check]
#       [--no-tuning] [--cxxflags "..."]  (the library's aarch64 GCC flags,
#       toolchains/aarch64-gcc-tuning.txt, are used unless --no-tuning)
#   /usr/bin/python3 bench/arm_mca.py --list-models   (model of every -mcpu)
#
# Standard library only. Exit 2 if aarch64-linux-gnu-g++ or llvm-mca-14 is
# missing; 1 (with --check) if a kernel's loop was not found, has no fmla or
# no cycle count.
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HARNESS = os.path.join(HERE, "mca", "mca_kernels.cc")
# The FEAT_FHM (FMLAL) loops: their own file, built with +fp16fml.
FML_HARNESS = os.path.join(HERE, "mca", "mca_fml_kernels.cc")
# The FEAT_DotProd (SDOT) integer q.k: its own file, built with +dotprod.
DOT_HARNESS = os.path.join(HERE, "mca", "mca_dot_kernels.cc")
CXX = "aarch64-linux-gnu-g++"
MCA = "llvm-mca-14"
ITERATIONS = 200
# The GCC flags CMakeLists.txt adds to aarch64 builds (one a line).
TUNING = os.path.join(ROOT, "toolchains", "aarch64-gcc-tuning.txt")

# ISA: -march for the compiler, -mattr for llvm-mca, the models to run,
# and the harness and kernel list (KERNELS or FML_KERNELS) built for it.
NEON_CPUS = ["cortex-a55", "apple-m1", "cortex-a76", "cortex-x1"]
ISAS = {
    "NEON": ("armv8.2-a+fp16", "+fullfp16", NEON_CPUS, "kernels"),
    "SVE": ("armv8.2-a+fp16+sve", "+sve,+fullfp16", ["a64fx"], "kernels"),
    # NEON with FEAT_FHM: the FMLAL loops only.
    "FHM": ("armv8.2-a+fp16+fp16fml", "+fullfp16,+fp16fml", NEON_CPUS,
            "fml"),
    # NEON with FEAT_DotProd: the SDOT loops only.
    "DOT": ("armv8.2-a+dotprod", "+dotprod", NEON_CPUS, "dot"),
}

# (function in the harness, kernel, element type of K/V).
KERNELS = [
    ("gqa_mca_prefill_qk_f32", "prefill q.k 4xV", "f32"),
    ("gqa_mca_prefill_pv_f32", "prefill p.v 4xV", "f32"),
    ("gqa_mca_decode_qk_pair_f32", "decode q.k pair", "f32"),
    ("gqa_mca_decode_qk_pair_f16", "decode q.k pair", "f16"),
    ("gqa_mca_decode_qk_pair_q8", "decode q.k pair", "q8"),
    ("gqa_mca_decode_qk_same_f32", "decode q.k same row", "f32"),
    ("gqa_mca_decode_qk_same_f16", "decode q.k same row", "f16"),
    ("gqa_mca_decode_qk_same_q8", "decode q.k same row", "q8"),
    ("gqa_mca_decode_qk_keys_f32", "decode q.k 4 keys", "f32"),
    ("gqa_mca_decode_qk_keys_f16", "decode q.k 4 keys", "f16"),
    ("gqa_mca_decode_qk_keys_q8", "decode q.k 4 keys", "q8"),
    ("gqa_mca_decode_pv_f32", "decode p.v 8x2", "f32"),
    ("gqa_mca_decode_pv_f16", "decode p.v 8x2", "f16"),
    ("gqa_mca_decode_pv_q8", "decode p.v 8x2", "q8"),
]
# FMLAL / FMLAL2 (f16 x f16 -> f32, 4 MACs each like a 128-bit f32 fmla):
# platforms/arm/f16_fml_arm-inl.h through FML_HARNESS.
FML_KERNELS = [
    ("gqa_mca_decode_qk_fml_f16", "decode q.k 4 keys", "f16"),
    ("gqa_mca_decode_pv_fml8_f16", "decode p.v 8x1 fml", "f16"),
    ("gqa_mca_decode_pv_fml4_f16", "decode p.v 4x2 fml", "f16"),
]
# SDOT (int8 x int8 -> int32, 16 MACs each, on the FMLA pipes): the
# integer q.k of platforms/arm/qk_int8_arm-inl.h through DOT_HARNESS.
DOT_KERNELS = [
    ("gqa_mca_decode_qk_sdot_q8", "decode q.k sdot 4 rows", "q8"),
    ("gqa_mca_decode_qk_sdot_q4", "decode q.k sdot 4 rows", "q4"),
]
SOURCES = {"kernels": (HARNESS, KERNELS), "fml": (FML_HARNESS, FML_KERNELS),
           "dot": (DOT_HARNESS, DOT_KERNELS)}

# Published figures, Arm Cortex-A76/X1 Software Optimization Guides: 128-bit
# ASIMD/FP pipes that take FMLA, FMLA latency, load pipes.
PUBLISHED = {
    "Cortex-A76": {"fma_pipes": 2, "fma_latency": 4, "load_pipes": 2},
    "Cortex-X1": {"fma_pipes": 4, "fma_latency": 4, "load_pipes": 3},
}

# Resource-name prefixes of llvm-14's AArch64 scheduling models.
MODEL_NAMES = [
    ("CortexA55", "Cortex-A55"), ("A53", "Cortex-A53"),
    ("A57", "Cortex-A57"), ("Cy", "Cyclone (Apple A7)"),
    ("A64FX", "A64FX"), ("Ampere1", "Ampere1"), ("M3", "Exynos-M3"),
    ("M4", "Exynos-M4"), ("M5", "Exynos-M5"), ("Falkor", "Falkor"),
    ("Kryo", "Kryo"), ("THX2T99", "ThunderX2"), ("THX3T110", "ThunderX3"),
    ("THX", "ThunderX"), ("TSV110", "TSV110"),
]

LOAD_RE = re.compile(r"^(ld[a-z0-9]*|prfm)$")
FMA_RE = re.compile(r"^(fmla|fmad|fmlal|fmlal2|sdot)$")
BRANCH_RE = re.compile(r"^(b|b\.[a-z]+|b[a-z]{2}|cbn?z|tbn?z)$")


def tuning_flags():
  """The aarch64 GCC flags the library is built with (TUNING)."""
  with open(TUNING) as f:
    return [l.strip() for l in f if l.strip().startswith("-")]


def die(msg, code):
  print("arm_mca: " + msg, file=sys.stderr)
  sys.exit(code)


def run(cmd, stdin=None):
  r = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
  if r.returncode != 0:
    raise RuntimeError("%s failed:\n%s" % (" ".join(cmd), r.stderr.strip()))
  return r.stdout


def mca(body, cpu, mattr, iterations=ITERATIONS):
  """llvm-mca's report for an instruction list, and its cycles/iteration."""
  cmd = [MCA, "-mtriple=aarch64", "-mcpu=" + cpu, "-mattr=" + mattr,
         "-iterations=%d" % iterations]
  text = run(cmd, "\n".join(body) + "\n")
  m = re.search(r"Total Cycles:\s+(\d+)", text)
  return text, (int(m.group(1)) / iterations if m else 0.0)


def busiest(text):
  """(resource, cycles per iteration) of the busiest unit in an mca report."""
  res = re.search(r"^Resources:\n(.*?)\n\n", text, re.S | re.M)
  use = re.search(r"^Resource pressure per iteration:\n.*\n(.*)\n", text,
                  re.M)
  if not res or not use:
    return "?", 0.0
  names = [l.split("-", 1)[1].strip() for l in res.group(1).splitlines()]
  loads = [0.0 if x == "-" else float(x) for x in use.group(1).split()]
  i = max(range(len(loads)), key=loads.__getitem__)
  return names[i], loads[i]


def model_name(text):
  """(model, first resource name) of an mca report: each llvm scheduling
  model names its resources with its own prefix."""
  res = re.search(r"^Resources:\n(.*?)\n\n", text, re.S | re.M)
  first = res.group(1).splitlines()[0].split("-", 1)[1].strip() if res else "?"
  for prefix, model in MODEL_NAMES:
    if first.startswith(prefix):
      return model, first
  return first, first


def list_models():
  """The model behind every -mcpu llvm-mca-14 accepts for aarch64."""
  text = subprocess.run([MCA, "-mtriple=aarch64", "-mcpu=help"],
                        capture_output=True, text=True)
  help_text = text.stdout + text.stderr
  cpus = re.search(r"Available CPUs for this target:\n\n(.*?)\n\n", help_text,
                   re.S)
  for line in cpus.group(1).splitlines() if cpus else []:
    cpu = line.split()[0]
    try:
      report, _ = mca(["fmla v0.4s, v1.4s, v2.4s"], cpu, "+fullfp16", 10)
      print("%-18s %s" % (cpu, model_name(report)[0]))
    except RuntimeError as e:
      print("%-18s %s" % (cpu, "(no scheduling model: llvm-mca refuses it)"
                          if "scheduling information" in str(e) else
                          "(llvm-mca failed)"))


def model_of(cpu, mattr):
  """The scheduling model llvm-mca really uses for -mcpu=cpu, read off the
  resource names it reports, and that model's FMA throughput (vector and
  by-element FMLA: some models send them to different pipes), FMA latency
  and load throughput, measured on probes of independent instructions."""
  if cpu == "a64fx":  # SVE: predicated and indexed forms (index reg z0-z7)
    vec = ["fmla z%d.s, p0/m, z30.s, z31.s" % i for i in range(8, 30)]
    elem = ["fmla z%d.s, z30.s, z7.s[0]" % i for i in range(8, 30)]
    chain = ["fmla z0.s, p0/m, z0.s, z31.s"]
  else:
    vec = ["fmla v%d.4s, v30.4s, v31.4s" % i for i in range(28)]
    elem = ["fmla v%d.4s, v30.4s, v31.s[0]" % i for i in range(28)]
    chain = ["fmla v0.4s, v0.4s, v31.4s"]
  text, vec_cycles = mca(vec, cpu, mattr)
  _, elem_cycles = mca(elem, cpu, mattr)
  _, lat = mca(chain, cpu, mattr)
  loads = ["ldr q%d, [x0, #%d]" % (i, 16 * i) for i in range(16)]
  _, load_cycles = mca(loads, cpu, mattr)
  name, first = model_name(text)
  fma_vec = round(len(vec) / vec_cycles, 2) if vec_cycles else 0
  fma_elem = round(len(elem) / elem_cycles, 2) if elem_cycles else 0
  return {"model": name, "resource": first, "fma_vec_per_cycle": fma_vec,
          "fma_elem_per_cycle": fma_elem,
          "fma_per_cycle": max(fma_vec, fma_elem),
          "fma_latency": round(lat, 2),
          "loads_per_cycle": round(16 / load_cycles, 2) if load_cycles else 0}


def functions(asm):
  """{name: [lines]} for the gqa_mca_* functions of an assembly file."""
  out, name = {}, None
  for line in asm.splitlines():
    m = re.match(r"^(gqa_mca_\w+):", line)
    if m:
      name = m.group(1)
      out[name] = []
    elif name and re.match(r"^\s*\.size\s", line):
      name = None
    elif name:
      out[name].append(line)
  return out


def instruction(line):
  """(mnemonic, operands) of an instruction line, or None."""
  s = line.split("//")[0].strip()
  if not s or s.startswith(".") or s.endswith(":"):
    return None
  parts = s.split(None, 1)
  return parts[0].lower(), parts[1] if len(parts) > 1 else ""


def inner_loops(lines):
  """Bodies (instruction lists) of the innermost loops holding an fmla: the
  instructions from a label to a branch back to it, with no such loop
  inside."""
  labels = {}
  loops = []
  for i, line in enumerate(lines):
    m = re.match(r"^(\.?\w+):", line.strip())
    if m:
      labels[m.group(1)] = i
      continue
    ins = instruction(line)
    if ins and BRANCH_RE.match(ins[0]):
      target = ins[1].split(",")[-1].strip()
      if target in labels:
        loops.append((labels[target], i))
  bodies = []
  for a, b in loops:
    body = [instruction(l) for l in lines[a + 1:b + 1]]
    body = [x for x in body if x]
    if not any(FMA_RE.match(m) for m, _ in body):
      continue
    inner = any(a <= c and d <= b and (c, d) != (a, b) and any(
        FMA_RE.match(x[0]) for x in map(instruction, lines[c + 1:d + 1]) if x)
        for c, d in loops)
    if not inner:
      bodies.append(body)
  return bodies


def counts(body):
  """fmla, load instructions, load ops (ldp and ld1 {..} lists count one
  per register), the FMA chains: independent accumulators and the longest
  chain of fmla into one accumulator per iteration."""
  fma = loads = load_ops = macs = 0
  acc = {}
  for m, ops in body:
    if FMA_RE.match(m):
      fma += 1
      macs += 16 if m == "sdot" else 4  # per 128-bit instruction
      dst = ops.split(",")[0].strip().split(".")[0]
      acc[dst] = acc.get(dst, 0) + 1
    elif LOAD_RE.match(m):
      loads += 1
      if m.startswith("ldp") or m.startswith("ldnp"):
        load_ops += 2
      elif "{" in ops:
        load_ops += len(ops[ops.index("{"):ops.index("}")].split(","))
      else:
        load_ops += 1
  return {"fmla": fma, "macs": macs, "loads": loads, "load_ops": load_ops,
          "chains": len(acc), "longest_chain": max(acc.values()) if acc else 0}


def estimate(c, core):
  """Cycles/iteration from published pipe counts: the largest of FMA
  throughput, load throughput and the loop-carried FMA chain."""
  p = PUBLISHED[core]
  bounds = {"fma": c["fmla"] / p["fma_pipes"],
            "load": c["load_ops"] / p["load_pipes"],
            "chain": c["longest_chain"] * p["fma_latency"]}
  bound = max(bounds, key=bounds.get)
  cycles = bounds[bound]
  return {"cycles": cycles, "bound": bound,
          "pct_peak": 100.0 * c["fmla"] / (cycles * p["fma_pipes"])}


def main():
  ap = argparse.ArgumentParser(
      description="llvm-mca of the real micro-kernels for aarch64 NEON and SVE")
  ap.add_argument("--out", help="folder for the assembly and mca reports")
  ap.add_argument("--json", help="write the results as JSON")
  ap.add_argument("--check", action="store_true",
                  help="exit 1 unless every kernel's loop was found on every "
                  "model with >= 1 fmla and cycles > 0")
  ap.add_argument("--no-tuning", action="store_true",
                  help="leave out the library's aarch64 tuning flags "
                  "(toolchains/aarch64-gcc-tuning.txt), to compare")
  ap.add_argument("--cxxflags", default="",
                  help="extra compiler flags (space separated), to try some")
  ap.add_argument("--list-models", action="store_true",
                  help="print the scheduling model of every -mcpu and exit")
  args = ap.parse_args()
  for tool in (CXX, MCA):
    if shutil.which(tool) is None:
      die("%s not found (Debian: %s); toolchains/setup-deps.sh installs it" %
          (tool, "g++-aarch64-linux-gnu" if tool == CXX else "llvm-14"), 2)
  if args.list_models:
    list_models()
    return 0
  out = args.out or tempfile.mkdtemp(prefix="gqa_mca_")
  os.makedirs(out, exist_ok=True)

  flags = ([] if args.no_tuning else tuning_flags()) + args.cxxflags.split()
  print("compiler flags beyond -O3 -march: %s" % (" ".join(flags) or "none"))
  rows, problems, models = [], [], {}
  for isa, (march, mattr, cpus, source) in ISAS.items():
    harness, kernels = SOURCES[source]
    asm_path = os.path.join(out, "mca_kernels_%s.s" % isa.lower())
    run([CXX, "-std=c++17", "-O3", "-march=" + march] + flags +
        ["-DHWY_COMPILE_ONLY_STATIC=1", "-I" + ROOT,
         "-I" + os.path.join(ROOT, "include"), "-S", harness, "-o", asm_path])
    with open(asm_path) as f:
      funcs = functions(f.read())
    for cpu in cpus:
      models[cpu] = models.get(cpu) or model_of(cpu, mattr)
    for fn, kernel, etype in kernels:
      bodies = inner_loops(funcs.get(fn, []))
      if not bodies:
        problems.append("%s %s: no loop with fmla found" % (fn, isa))
        continue
      # Loop versions (GCC may version a loop on a run-time value): the one
      # with the most fmla, then one closed by a conditional branch (a
      # backward `b` can close straight-line tail code, e.g. a remainder
      # loop GCC peeled), then the longest (the general case).
      body = max(bodies, key=lambda b: (counts(b)["fmla"], b[-1][0] != "b",
                                        len(b)))
      c = counts(body)
      base = "%s_%s" % (fn[len("gqa_mca_"):], isa.lower())
      with open(os.path.join(out, base + ".loop.s"), "w") as f:
        f.write("\n".join("%s\t%s" % x for x in body) + "\n")
      row = {"function": fn, "kernel": kernel, "type": etype, "isa": isa,
             "loop_versions": len(bodies), "instructions": len(body), **c,
             "mca": {}, "estimate": {}}
      for cpu in cpus:
        try:
          text, cycles = mca(["%s %s" % x for x in body], cpu, mattr)
        except RuntimeError as e:
          problems.append("%s %s %s: %s" % (fn, isa, cpu, e))
          continue
        with open(os.path.join(out, "%s_%s.mca.txt" % (base, cpu)), "w") as f:
          f.write(text)
        peak = models[cpu]["fma_per_cycle"]
        unit, busy = busiest(text)
        row["mca"][cpu] = {
            "cycles": cycles, "busiest_unit": unit, "busiest_cycles": busy,
            "pct_peak": 100.0 * c["fmla"] / (cycles * peak) if cycles else 0,
            # multiply-adds (K/V elements x rows) per cycle: 4 per 128-bit
            # fmla or fmlal / fmlal2, 16 per sdot (SVE: the vector length,
            # not known here)
            "macs_per_cycle": float(c["macs"]) / cycles
                              if cycles and isa != "SVE" else 0}
        if c["fmla"] < 1 or cycles <= 0:
          problems.append("%s %s %s: fmla %d, cycles %g" %
                          (fn, isa, cpu, c["fmla"], cycles))
      if isa != "SVE":
        for core in PUBLISHED:
          row["estimate"][core] = estimate(c, core)
      rows.append(row)

  print("Scheduling model llvm-mca-14 uses per -mcpu (measured on probes):")
  print("%-11s %-19s %-17s %9s %9s %7s %9s" % (
      "-mcpu", "model", "first resource", "fmla/cyc", "fmla/cyc", "fma lat",
      "ldr q/cyc"))
  print("%-11s %-19s %-17s %9s %9s" % ("", "", "", "vector", "by-elem"))
  for cpu, m in models.items():
    print("%-11s %-19s %-17s %9.2f %9.2f %7.3g %9.2f" % (
        cpu, m["model"], m["resource"], m["fma_vec_per_cycle"],
        m["fma_elem_per_cycle"], m["fma_latency"], m["loads_per_cycle"]))
  print("\nllvm-mca, %d iterations, loads in L1; %%peak = fmla / (cycles x "
        "model's best fmla/cycle):" % ITERATIONS)
  print("(FHM: fmlal / fmlal2 counted as fmla, 4 MACs each; DOT: sdot "
        "counted as fmla, 16 MACs each; MAC/cyc for NEON, FHM and DOT)")
  hdr = "%-19s %-4s %-4s %-30s %4s %5s %6s %7s %6s %7s  %s"
  print(hdr % ("kernel", "type", "ISA", "-mcpu (model)", "fmla", "loads",
               "chains", "cyc/it", "%peak", "MAC/cyc", "busiest unit (cyc/it)"))
  for r in rows:
    for cpu, m in r["mca"].items():
      print("%-19s %-4s %-4s %-30s %4d %5d %6d %7.2f %5.0f%% %7.2f  %s %.1f" % (
          r["kernel"], r["type"], r["isa"],
          "%s (%s)" % (cpu, models[cpu]["model"]), r["fmla"], r["loads"],
          r["chains"], m["cycles"], m["pct_peak"], m["macs_per_cycle"],
          m["busiest_unit"], m["busiest_cycles"]))
  print("\nEstimate from the Arm Cortex-A76/X1 Software Optimization Guides "
        "(NEON loops):\ncycles = max(fmla / FMA pipes, load ops / load pipes,"
        " longest FMA chain x latency 4)")
  hdr = "%-20s %-4s %-10s %5s %8s %6s %7s %-5s %6s"
  print(hdr % ("kernel", "type", "core", "fmla", "load ops", "chains",
               "cyc/it", "bound", "%peak"))
  for r in rows:
    for core, e in r["estimate"].items():
      print("%-20s %-4s %-10s %5d %8d %6d %7.2f %-5s %5.0f%%" % (
          r["kernel"], r["type"], core, r["fmla"], r["load_ops"], r["chains"],
          e["cycles"], e["bound"], e["pct_peak"]))
  print("\nassembly, loops and mca reports: " + out)
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"iterations": ITERATIONS, "models": models,
                 "published": PUBLISHED, "kernels": rows,
                 "problems": problems}, f, indent=1)
  for p in problems:
    print("arm_mca: " + p, file=sys.stderr)
  if args.check:
    expected = sum(len(SOURCES[v[3]][1]) for v in ISAS.values())
    if problems or len(rows) != expected:
      die("check failed: %d of %d kernel loops, %d problems" %
          (len(rows), expected, len(problems)), 1)
    print("check: %d kernel loops, each with fmla and cycles > 0" % len(rows))
  return 0


if __name__ == "__main__":
  sys.exit(main())
