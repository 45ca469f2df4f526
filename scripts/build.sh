#!/usr/bin/env bash
# build.sh [BUILD_DIR] [cmake args...]: installs what is missing, configures
# and builds ferry (default folder: build/). The GPU engine is compiled when
# nvcc is found; a GPU is only needed to run it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}; shift || true
"$root/scripts/install-deps.sh"
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
fi
cmake --build "$build" -j"$(nproc)"
