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
set(GQA_CROSS_TRIPLE arm-linux-gnueabihf)
set(GQA_CROSS_DEBARCH armhf)
include("${CMAKE_CURRENT_LIST_DIR}/linux-cross-common.cmake")
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-arm)
