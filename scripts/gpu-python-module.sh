#!/usr/bin/env bash
# gpu-python-module.sh BUILD_DIR: builds the Python module (ferry._ext and
# the pure-Python package) for this machine's python3 into BUILD_DIR/python,
# against the archives and static dependencies scripts/gpu-build.sh put in
# BUILD_DIR/gpu-deps: on a GPU machine whose Python differs from the
# development machine's and that cannot configure ferry (no package
# manager). The same code as the binaries of that build folder.
set -euo pipefail
build=$(cd "${1:?usage: gpu-python-module.sh BUILD_DIR}" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
deps=$build/gpu-deps
pkg=$build/python/ferry
mkdir -p "$pkg"
cp "$root"/python/ferry/*.py "$pkg/"
suffix=$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
# shellcheck disable=SC2046  # the include flags are several words
g++ -O2 -std=c++20 -fPIC -shared -DFERRY_HAVE_CUDA=1 -I"$root" -I"$deps/include" \
  $(python3 -m pybind11 --includes) "$root/python/ferry_ext.cc" "$root/python/dlpack_tensor.cc" \
  -o "$pkg/_ext$suffix" \
  -Wl,--start-group "$deps"/lib/libferry_*.a -Wl,--end-group "$deps/lib/liburing.a" \
  "$deps/lib/libcudart_static.a" -lzstd -lssl -lcrypto -ldl -lrt -lpthread -static-libstdc++ -static-libgcc
python3 -c "import sys; sys.path.insert(0, '$build/python'); import ferry; print('gpu-python-module: ferry', ferry.__file__)"
