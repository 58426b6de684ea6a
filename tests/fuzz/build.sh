#!/usr/bin/env bash
# Builds the libFuzzer target over the gqa C ABI (tests/fuzz/fuzz_c_abi.cc)
# into build/fuzz/fuzz_c_abi with clang-14 and ASan + UBSan + libFuzzer.
# Highway is compiled for its static target only (AVX2, -march=haswell) to
# keep the build short; objects are rebuilt only when their source is newer.
#   bash tests/fuzz/build.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=build/fuzz
mkdir -p "$out/obj"
cxx=${CXX_FUZZ:-clang++-14}
jobs=${FUZZ_BUILD_JOBS:-2}
flags=(-std=c++17 -O1 -g -march=haswell -DHWY_COMPILE_ONLY_STATIC=1
       -D_FILE_OFFSET_BITS=64 -fno-omit-frame-pointer
       -fsanitize=address,undefined -fno-sanitize-recover=all
       -I include -I . -Wall -Wextra)
# Every library source and the float64 reference (as gqa_internal links),
# with the platform kernels CMakeLists.txt adds for this machine.
srcs=(src/*.cc src/reference/*.cc platforms/qk_int8.cc platforms/f16_fml.cc
      platforms/platform_kernels.cc)
case "$(uname -m)" in
  x86_64) srcs+=(platforms/x86/qk_int8_x86.cc) ;;
esac
objs=()
pids=()
for s in "${srcs[@]}"; do
  o="$out/obj/$(echo "$s" | tr / _).o"
  objs+=("$o")
  # Rebuild when the source or any library header is newer than the object.
  if [ ! -f "$o" ] || [ -n "$(find src include platforms -newer "$o" -name '*.h' -o \
       -newer "$o" -name "$(basename "$s")" | head -1)" ]; then
    echo "  compile $s"
    "$cxx" "${flags[@]}" -fsanitize=fuzzer-no-link -c "$s" -o "$o" &
    pids+=($!)
    if [ "${#pids[@]}" -ge "$jobs" ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
  fi
done
for p in "${pids[@]}"; do wait "$p"; done
echo "  link $out/fuzz_c_abi"
"$cxx" "${flags[@]}" -fsanitize=fuzzer tests/fuzz/fuzz_c_abi.cc "${objs[@]}" \
  -lhwy -lXNNPACK -lpthreadpool -lpthread -o "$out/fuzz_c_abi"
