# Cross toolchain: Linux on 32-bit ARMv7-A with NEON, hard-float, Debian's
# arm-linux-gnueabihf-g++. NEON is the static Highway target (Debian's armhf
# libhwy cannot detect it at run time), hence -mfpu=neon-vfpv4; the f16
# format flag makes hwy::float16_t an IEEE __fp16. Tests run through
# qemu-arm (QEMU_CPU=cortex-a15 or cortex-a7).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR armv7l)
set(CMAKE_C_COMPILER arm-linux-gnueabihf-gcc)
set(CMAKE_CXX_COMPILER arm-linux-gnueabihf-g++)
set(CMAKE_LIBRARY_ARCHITECTURE arm-linux-gnueabihf)
set(CMAKE_C_FLAGS_INIT "-march=armv7-a -mfpu=neon-vfpv4 -mfloat-abi=hard -mfp16-format=ieee -Wno-psabi")
set(CMAKE_CXX_FLAGS_INIT "-march=armv7-a -mfpu=neon-vfpv4 -mfloat-abi=hard -mfp16-format=ieee -Wno-psabi")

get_filename_component(_gqa_root "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
set(GQA_XDEPS_SYSROOT "${_gqa_root}/.xdeps/armhf" CACHE PATH
    "Private sysroot with the armhf XNNPACK and pthreadpool")
set(CMAKE_FIND_ROOT_PATH ${GQA_XDEPS_SYSROOT} /usr/arm-linux-gnueabihf /)
# Binaries find the privately unpacked XNNPACK/pthreadpool at link and run
# time (under qemu), also when linked against an installed libgqa.
set(_gqa_xlib "${GQA_XDEPS_SYSROOT}/usr/lib/arm-linux-gnueabihf")
# Old-style RPATH (not RUNPATH) so it also serves libgqa's own dependencies.
set(CMAKE_EXE_LINKER_FLAGS_INIT
    "-Wl,--disable-new-dtags -Wl,-rpath-link,${_gqa_xlib} -Wl,-rpath,${_gqa_xlib}")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-Wl,-rpath-link,${_gqa_xlib}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/arm-linux-gnueabihf/pkgconfig:/usr/share/pkgconfig")
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-arm)
