#!/usr/bin/env bash
# gpu-run.sh BUILD: runs on the GPU machine over what scripts/gpu-build.sh
# made on the development machine (BUILD is that folder, or BUILD.tar.xz,
# unpacked first; docs/GPU.md). One call, sized for a 10-minute device
# budget (FERRY_GPU_RUN_BUDGET_S, default 540 s: a step that would start
# after it is skipped and reported so):
#   host      the cuda and restore logic tests (ctest -L cuda -LE gpu)
#   ctest-gpu ctest -L gpu: the GPU engine and restore-to-GPU tests
#   sanitizers compute-sanitizer memcheck over the GPU tests (no corpus), and
#             initcheck, synccheck and racecheck over one small test
#   python    the Python module built here against the carried archives, then
#             the python_gpu ctest entry's pytest run (-m gpu)
#   benches   ferry-bench restore (a checkpoint generated with torch here) and
#             ferry-bench gpu, both at sizes that fit the budget
# Writes $OUT/report.md (or ./gpu-report.md) and every log under logs/.
# Exit status: non-zero when any step failed.
set -uo pipefail
arg=${1:?usage: gpu-run.sh BUILD_DIR|BUILD_DIR.tar.xz}
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$PWD}
budget=${FERRY_GPU_RUN_BUDGET_S:-540}
report="$out/report.md"
[ -n "${OUT:-}" ] || report="$PWD/gpu-report.md"
mkdir -p "$out/logs"
if [[ $arg == *.tar.xz ]]; then
  tar -C "$(dirname "$arg")" -xJf "$arg" || { echo "gpu-run: cannot unpack $arg" >&2; exit 2; }
  arg=${arg%.tar.xz}
fi
build=$(cd "$arg" && pwd)
fail=0
failed=()  # steps whose log tail goes into the report
cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)

# ctest's files name the folders the build was configured in: make those
# paths lead to this copy when it lies elsewhere.
link_to() { [ -z "$1" ] || [ "$1" = "$2" ] || [ -e "$1" ] || { mkdir -p "$(dirname "$1")" && ln -s "$2" "$1"; }; }
link_to "$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build/CMakeCache.txt")" "$root"
link_to "$(sed -n 's/^CMAKE_CACHEFILE_DIR:INTERNAL=//p' "$build/CMakeCache.txt")" "$build"

step() {  # step NAME TIMEOUT_S COMMAND...: runs within the budget, logs, records the result
  local name=$1 limit=$2; shift 2
  local log="$out/logs/$name.log" left=$((budget - SECONDS))
  if [ "$left" -lt 20 ]; then
    printf '| %s | SKIPPED (device budget spent) | | `%s` |\n' "$name" "$*" >>"$report"
    fail=1
    return
  fi
  [ "$limit" -le "$left" ] || limit=$left
  local t0=$SECONDS
  timeout -k 10 "$limit" "$@" >"$log" 2>&1
  local rc=$?
  local result=pass
  [ $rc -eq 0 ] || { fail=1; result="FAIL ($rc)"; failed+=("$name"); }
  [ $rc -eq 124 ] && result="TIMEOUT (${limit}s)"
  [ $rc -eq 77 ] && result="ALL SKIPPED (77): a GPU run must run them"
  printf '| %s | %s | %ss | `%s` |\n' "$name" "$result" "$((SECONDS - t0))" "$*" >>"$report"
}

{
  echo "# ferry GPU run"
  echo
  echo "- date: $(date -u +%FT%TZ)"
  echo "- commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo none)"
  echo "- budget: ${budget}s"
  echo
  echo "| step | result | time | command |"
  echo "|---|---|---|---|"
} >"$report"

export FERRY_SOURCE_DIR=$root FERRY_BUILD_DIR=$build
tests=$build/tests
step host 60 ctest --test-dir "$build" -L cuda -LE gpu --output-on-failure
step restore-host 60 ctest --test-dir "$build" -R 'RestorePlan|DeviceRestoreTest|DeviceParse|SourceLocations' --output-on-failure
[ -d "$build/corpus" ] && export FERRY_CORPUS_DIR="$build/corpus"
step ctest-gpu 180 ctest --test-dir "$build" -L gpu -E '^python' --output-on-failure --timeout 170

# Sanitizers: no corpus, no test that fills the GPU on purpose, and the
# slow ones (racecheck tracks every shared-memory access) on one small test.
unset FERRY_CORPUS_DIR
small=GpuEngineTest.SmallBatchForSanitizers:GpuEngineTest.SmallDeltaBatchForSanitizers
if [ -n "$cs" ]; then
  step memcheck-engine 120 "$cs" --tool memcheck --error-exitcode 1 --leak-check full \
    "$tests/gpu_engine_gpu_test" --gtest_filter='-*MoreChunks*:*FirstLaunches*'
  step memcheck-restore 90 "$cs" --tool memcheck --error-exitcode 1 \
    "$tests/device_restore_gpu_test" --gtest_filter='-*TooLittleGpuMemory*'
  step initcheck 60 "$cs" --tool initcheck --error-exitcode 1 "$tests/gpu_engine_gpu_test" --gtest_filter="$small"
  step synccheck 60 "$cs" --tool synccheck --error-exitcode 1 "$tests/gpu_engine_gpu_test" --gtest_filter="$small"
  step racecheck 90 "$cs" --tool racecheck --error-exitcode 1 "$tests/gpu_engine_gpu_test" --gtest_filter="$small"
else
  echo "| compute-sanitizer | FAIL (not found) | | |" >>"$report"
  fail=1
fi

# The Python module, built here for this machine's Python against the same
# code as the binaries; then the python_gpu ctest entry's run (its
# environment as tests/CMakeLists.txt sets it).
step python-module 120 "$root/scripts/gpu-python-module.sh" "$build"
step python-gpu 150 env PYTHONPATH="$build/python:$build/gpu-deps/python" FERRY_BIN="$build/tools/ferry" \
  FERRY_AGENT_BIN="$build/tools/ferry-agent" FERRY_PYTEST_ALL_SKIPPED_EXIT=77 \
  python3 -m pytest -q -rs -p no:cacheprovider -m gpu "$root/tests/python"

bench_dir=$(mktemp -d)
step bench-restore 150 "$build/bench/ferry-bench" restore --restore_gb=2 --restore_cold=false \
  --restore_work="$bench_dir"
rm -rf "$bench_dir"
step bench-gpu 120 "$build/bench/ferry-bench" gpu --gpu_bench_bytes=$((512 << 20)) \
  --gpu_bench_cpu_bytes=$((64 << 20))

{
  for b in bench-restore bench-gpu; do
    [ -f "$out/logs/$b.log" ] || continue
    echo
    echo "## ferry-bench ${b#bench-}"
    echo
    echo '```'
    cat "$out/logs/$b.log"
    echo '```'
  done
  for name in "${failed[@]}"; do
    echo
    echo "## $name.log (tail)"
    echo '```'
    tail -40 "$out/logs/$name.log"
    echo '```'
  done
} >>"$report"
echo "gpu-run: report at $report"
exit $fail
