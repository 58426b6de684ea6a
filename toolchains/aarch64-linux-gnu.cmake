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

get_filename_component(_gqa_root "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
set(GQA_XDEPS_SYSROOT "${_gqa_root}/.xdeps/arm64" CACHE PATH
    "Private sysroot with the arm64 XNNPACK and pthreadpool")
set(CMAKE_FIND_ROOT_PATH ${GQA_XDEPS_SYSROOT} /usr/aarch64-linux-gnu /)
# Binaries find the privately unpacked XNNPACK/pthreadpool at link and run
# time (under qemu), also when linked against an installed libgqa.
set(_gqa_xlib "${GQA_XDEPS_SYSROOT}/usr/lib/aarch64-linux-gnu")
# Old-style RPATH (not RUNPATH) so it also serves libgqa's own dependencies.
set(CMAKE_EXE_LINKER_FLAGS_INIT
    "-Wl,--disable-new-dtags -Wl,-rpath-link,${_gqa_xlib} -Wl,-rpath,${_gqa_xlib}")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-Wl,-rpath-link,${_gqa_xlib}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
# Never '-L /usr/aarch64-linux-gnu': two glibc copies would mix (hangs).
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64)
