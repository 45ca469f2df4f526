#!/usr/bin/env bash
# install-deps.sh: installs every Debian package ferry builds, tests and
# benchmarks with. Idempotent: when everything is present it prints nothing
# and touches nothing (no apt-get update, no network).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  liburing-dev libzstd-dev libssl-dev libgflags-dev
  libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev libcpp-httplib-dev
  clang libclang-rt-14-dev          # libFuzzer + ASan/UBSan for the fuzz targets
  zstd openssl fio iperf3 restic rsync iproute2 procps util-linux
  python3 python3-pip
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
# CMake from PyPI or elsewhere on PATH is fine; only ask apt for it when absent.
if command -v cmake >/dev/null 2>&1; then
  missing=("${missing[@]/cmake}")
fi
missing=($(printf '%s\n' "${missing[@]}" | sed '/^$/d'))

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
