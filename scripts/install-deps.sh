#!/usr/bin/env bash
# install-deps.sh: installs every Debian package ferry builds, tests and
# benchmarks with. Idempotent: when everything is present it prints nothing
# and touches nothing (no apt-get update, no network).
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  liburing-dev libzstd-dev libssl-dev libgflags-dev
  libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev libcpp-httplib-dev
  libcli11-dev                      # CLI11 (header-only): the `ferry` command's flags, help, completion, man page
  clang libclang-rt-14-dev          # libFuzzer + ASan/UBSan for the fuzz targets
  clang-format                      # scripts/format.sh: the tree follows .clang-format
  zstd openssl fio iperf3 restic rsync iproute2 procps util-linux
  python3 python3-pip
  libdlpack-dev                     # dlpack/dlpack.h for the Python module (python/)
  prometheus                        # promtool checks the alert rules; a real Prometheus scrapes in a test
  libcurl4-openssl-dev curl         # the S3 client (store/s3_client.h): HTTP, TLS, SigV4
  ceph-mon ceph-osd radosgw ceph-common uuid-runtime   # scripts/ceph-dev.sh: the S3 tests' cluster
  rclone                            # `ferry-bench s3` compares against restic and rclone
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

# The Python module's build and tests: pybind11, real PyTorch (the CPU build:
# torch==2.13.0 is the one version installed from a file already on the
# machine; any other would download gigabytes, so none other is ever asked
# for), safetensors and pytest from PyPI. Only what fails to import is
# installed; an existing torch of any version is kept (the GPU machines
# bring their own).
if command -v python3 >/dev/null 2>&1; then
  pip_missing=()
  python3 -c 'import torch' 2>/dev/null || pip_missing+=("torch==2.13.0")
  python3 -c 'import safetensors.torch' 2>/dev/null || pip_missing+=("safetensors==0.8.0")
  python3 -c 'import pytest' 2>/dev/null || pip_missing+=(pytest)
  python3 -c 'import pybind11' 2>/dev/null || pip_missing+=(pybind11)
  if ((${#pip_missing[@]})); then
    echo "install-deps: pip installing ${pip_missing[*]}" >&2
    python3 -m pip install -q "${pip_missing[@]}"
  fi
fi
