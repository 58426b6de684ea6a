# Shared part of the Linux cross toolchain files: finds the private sysroot
# (.xdeps/<arch>, filled by setup-deps.sh) before the multiarch system, and
# lets binaries find its XNNPACK/pthreadpool at link and run time (qemu).
# Expects GQA_CROSS_TRIPLE and GQA_CROSS_DEBARCH to be set by the caller.
get_filename_component(_gqa_root "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
set(GQA_XDEPS_SYSROOT "${_gqa_root}/.xdeps/${GQA_CROSS_DEBARCH}" CACHE PATH
    "Private sysroot with the ${GQA_CROSS_DEBARCH} XNNPACK and pthreadpool")
set(CMAKE_FIND_ROOT_PATH ${GQA_XDEPS_SYSROOT} /usr/${GQA_CROSS_TRIPLE} /)
set(_gqa_xlib "${GQA_XDEPS_SYSROOT}/usr/lib/${GQA_CROSS_TRIPLE}")
# Old-style RPATH (not RUNPATH) so it also serves libgqa's own dependencies.
set(CMAKE_EXE_LINKER_FLAGS_INIT
    "-Wl,--disable-new-dtags -Wl,-rpath-link,${_gqa_xlib} -Wl,-rpath,${_gqa_xlib}")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-Wl,-rpath-link,${_gqa_xlib}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/${GQA_CROSS_TRIPLE}/pkgconfig:/usr/share/pkgconfig")
