#!/usr/bin/env bash
# gpu-build.sh [BUILD_DIR]: builds here, on the development machine, what
# scripts/gpu-run.sh runs on a GPU machine that has no package manager (see
# docs/GPU.md): ferry, ferry-agent, ferry-bench and the cuda and restore test
# binaries with FERRY_STATIC_DEPS, plus what the Python module needs to be
# built there against the same code (ferry's archives, liburing, the static
# CUDA runtime, dlpack.h, pytest's pure-Python wheels). Debug info is
# stripped and object files dropped, then the folder is packed into
# BUILD_DIR.tar.xz, which travels to the device (the carry limit is 64 MiB).
# Default BUILD_DIR: build-gpu.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath -m "${1:-$root/build-gpu}")
jobs=${FERRY_BUILD_JOBS:-2}
launchers=()
if command -v ccache >/dev/null; then
  launchers=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache
             -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFERRY_STATIC_DEPS=ON \
  -DCMAKE_CUDA_ARCHITECTURES="80;90" -DFERRY_PYTHON=OFF "${launchers[@]}" >/dev/null
tests=(device_logic_test encode_kernels_test decode_kernels_test delta_kernels_test batch_plan_test device_guard_test
       engine_choice_test codec_engine_test gpu_engine_gpu_test device_restore_gpu_test device_restore_test
       restore_plan_test)
cmake --build "$build" -j"$jobs" --target ferry ferry-agent ferry-bench ferry_replication "${tests[@]}"

# What the Python module is built from on the GPU machine (gpu-run.sh).
deps=$build/gpu-deps
rm -rf "$deps" && mkdir -p "$deps/lib" "$deps/include" "$deps/python"
for lib in base codec cuda io store replication; do
  cp "$build/$lib/libferry_$lib.a" "$deps/lib/"
done
cp "$(sed -n 's/^URING_LIB:FILEPATH=//p' "$build/CMakeCache.txt")" "$deps/lib/"
cp "$(sed -n 's/^CUDA_cudart_static_LIBRARY:FILEPATH=//p' "$build/CMakeCache.txt")" "$deps/lib/"
cp -r /usr/include/dlpack "$deps/include/"
python3 -m pip download -q --only-binary=:all: --no-deps -d "$deps/wheels" pytest pluggy iniconfig packaging
for w in "$deps"/wheels/*.whl; do python3 -m zipfile -e "$w" "$deps/python"; done
rm -rf "$deps/wheels"
strip --strip-debug "$deps"/lib/libferry_*.a

# Only what runs travels: binaries (stripped), ctest files, the CMake cache.
find "$build" \( -name '*.o' -o -name '*.a' -o -name '*.ninja' -o -name '.ninja_*' \) \
  -not -path "$deps/*" -delete
find "$build" -name CMakeFiles -type d -prune -exec rm -rf {} +
find "$build" -type f -perm -u+x -size +1M -not -path "$deps/*" -exec strip --strip-debug {} +
tar -C "$(dirname "$build")" -cJf "$build.tar.xz" "$(basename "$build")"
echo "gpu-build: $(du -sh "$build" | cut -f1) in $build, $(du -h "$build.tar.xz" | cut -f1) packed in $build.tar.xz"
