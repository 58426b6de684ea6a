#!/usr/bin/env bash
# Installs what gqa builds and tests with, idempotently, from Debian's
# packages. Never removes host packages.
#   toolchains/setup-deps.sh            native + cross (arm64, armhf) + qemu
#                                       + llvm-14 (llvm-mca for bench/arm_mca.py)
#   toolchains/setup-deps.sh --native   native only
# Cross: XNNPACK and pthreadpool are Multi-Arch: no, so their arm64/armhf
# packages are downloaded and unpacked into .xdeps/<arch>/ (a private
# sysroot the toolchain files add to CMAKE_FIND_ROOT_PATH) instead of being
# installed, which would remove the amd64 ones.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
native_only=0
[ "${1:-}" = "--native" ] && native_only=1

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
APT="$SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300"

native_pkgs="cmake ninja-build g++ libhwy-dev libxnnpack-dev libpthreadpool-dev
  libcpuinfo-dev doctest-dev nlohmann-json3-dev python3 python3-numpy"
cross_pkgs="g++-aarch64-linux-gnu g++-arm-linux-gnueabihf qemu-user llvm-14
  libhwy-dev:arm64 libhwy-dev:armhf libcpuinfo0:arm64 libcpuinfo0:armhf"

missing() {  # prints the packages of "$@" that are not installed
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

updated=0
apt_update() {
  [ "$updated" = 1 ] && return 0
  # A failing index (seen: armhf security size mismatch) must not stop us.
  $APT update -q >/dev/null 2>&1 || echo "setup-deps: apt-get update reported errors; continuing"
  updated=1
}

# shellcheck disable=SC2086
todo=$(missing $native_pkgs)
if [ -n "$todo" ]; then
  apt_update
  # shellcheck disable=SC2086
  $APT install -y -q $todo
fi
[ "$native_only" = 1 ] && exit 0

for arch in arm64 armhf; do
  dpkg --print-foreign-architectures | grep -qx "$arch" || { $SUDO dpkg --add-architecture "$arch"; updated=0; }
done
# shellcheck disable=SC2086
todo=$(missing $cross_pkgs)
if [ -n "$todo" ]; then
  apt_update
  # shellcheck disable=SC2086
  $APT install -y -q --no-install-recommends $todo
fi

# XNNPACK + pthreadpool (+ cpuinfo headers they reference) per arch, unpacked.
for arch in arm64 armhf; do
  root="$here/.xdeps/$arch"
  stamp="$root/.complete"
  [ -f "$stamp" ] && continue
  apt_update
  rm -rf "$root" && mkdir -p "$root/debs"
  (cd "$root/debs" && apt-get download -q \
      "libxnnpack0:$arch" "libxnnpack-dev:$arch" \
      "libpthreadpool0:$arch" "libpthreadpool-dev:$arch" >/dev/null 2>&1)
  for deb in "$root"/debs/*.deb; do dpkg -x "$deb" "$root"; done
  touch "$stamp"
done
echo "setup-deps: native and cross dependencies are in place"
