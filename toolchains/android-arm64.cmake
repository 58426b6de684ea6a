# Android arm64-v8a: wraps the NDK's own toolchain file. Needs ANDROID_NDK
# (the NDK root, r23 or newer) in the environment or as -DANDROID_NDK=...
# Highway, XNNPACK and pthreadpool built for Android must be findable
# (CMAKE_PREFIX_PATH / CMAKE_FIND_ROOT_PATH); Debian has no Android packages.
#   ANDROID_NDK=$HOME/Android/Sdk/ndk/26.3.11579264 cmake -S . -B build/android \
#     -DCMAKE_TOOLCHAIN_FILE=toolchains/android-arm64.cmake \
#     -DCMAKE_FIND_ROOT_PATH=/path/to/android-deps -DGQA_BUILD_TESTS=OFF
if(NOT ANDROID_NDK)
  if(DEFINED ENV{ANDROID_NDK})
    set(ANDROID_NDK "$ENV{ANDROID_NDK}")
  elseif(DEFINED ENV{ANDROID_NDK_HOME})
    set(ANDROID_NDK "$ENV{ANDROID_NDK_HOME}")
  endif()
endif()
if(NOT ANDROID_NDK)
  message(FATAL_ERROR
    "android-arm64.cmake: set ANDROID_NDK to the Android NDK root (r23+), e.g.\n"
    "  ANDROID_NDK=$HOME/Android/Sdk/ndk/26.3.11579264 cmake ... "
    "-DCMAKE_TOOLCHAIN_FILE=toolchains/android-arm64.cmake")
endif()
if(NOT EXISTS "${ANDROID_NDK}/build/cmake/android.toolchain.cmake")
  message(FATAL_ERROR
    "android-arm64.cmake: ${ANDROID_NDK}/build/cmake/android.toolchain.cmake "
    "not found: ANDROID_NDK must point at an NDK root")
endif()
set(ANDROID_ABI arm64-v8a CACHE STRING "Android ABI")
set(ANDROID_PLATFORM android-24 CACHE STRING "Minimum Android API level")
set(ANDROID_STL c++_shared CACHE STRING "Android C++ runtime")
include("${ANDROID_NDK}/build/cmake/android.toolchain.cmake")
