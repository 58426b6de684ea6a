# Cross toolchain: Linux on 64-bit ARM (ARMv8-A, aarch64) with Debian's
# aarch64-linux-gnu-g++. Highway dispatches NEON/SVE/SVE2 at run time.
# Tests run through qemu-aarch64 (pick the CPU with QEMU_CPU, e.g.
# cortex-a72, cortex-a76, max,sve-default-vector-length=32).
# Dependencies: toolchains/setup-deps.sh (XNNPACK + pthreadpool unpacked in
# .xdeps/arm64, Highway from the multiarch libhwy-dev:arm64).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(GQA_CROSS_TRIPLE aarch64-linux-gnu)
set(GQA_CROSS_DEBARCH arm64)
include("${CMAKE_CURRENT_LIST_DIR}/linux-cross-common.cmake")
# Never '-L /usr/aarch64-linux-gnu': two glibc copies would mix (hangs).
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64)
