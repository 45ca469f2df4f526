#!/usr/bin/env bash
# gpu-run.sh BUILD_DIR: run on the GPU machine over a build folder made here
# with -DFERRY_STATIC_DEPS=ON -DCMAKE_CUDA_ARCHITECTURES="80;90" (see
# docs/GPU.md). Runs the GPU tests (ctest -L gpu and every tests/cuda
# binary), compute-sanitizer memcheck and racecheck over the GPU test
# binaries, and `ferry-bench gpu`; writes one report to $OUT/report.md
# (or ./gpu-report.md). Exit status: non-zero when any step failed.
set -uo pipefail
build=$(cd "${1:?usage: gpu-run.sh BUILD_DIR}" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$PWD}
report="$out/report.md"
mkdir -p "$out/logs"
fail=0
cs=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null || true)

step() {  # step NAME COMMAND...: runs, logs, records pass/fail in the report
  local name=$1; shift
  local log="$out/logs/$name.log"
  local t0=$SECONDS
  "$@" >"$log" 2>&1
  local rc=$?
  [ $rc -eq 0 ] || fail=1
  printf '| %s | %s | %ss | `%s` |\n' "$name" "$([ $rc -eq 0 ] && echo pass || echo "FAIL ($rc)")" \
    "$((SECONDS - t0))" "$*" >>"$report"
}

{
  echo "# ferry GPU run"
  echo
  echo "- date: $(date -u +%FT%TZ)"
  echo "- commit: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- gpu: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo none)"
  echo
  echo "| step | result | time | command |"
  echo "|---|---|---|---|"
} >"$report"

export FERRY_SOURCE_DIR=$root FERRY_BUILD_DIR=$build
[ -d "$build/corpus" ] && export FERRY_CORPUS_DIR="$build/corpus"
gpu_tests=$(ls "$build"/tests/*_gpu_test 2>/dev/null)
step ctest-gpu ctest --test-dir "$build" -L gpu --output-on-failure --timeout 600
step device-logic "$build/tests/device_logic_test"
for t in $gpu_tests; do
  n=$(basename "$t")
  if [ -n "$cs" ]; then
    step "memcheck-$n" "$cs" --tool memcheck --error-exitcode 1 --leak-check full "$t"
    step "racecheck-$n" "$cs" --tool racecheck --error-exitcode 1 "$t"
  fi
done
[ -n "$cs" ] || { echo "| compute-sanitizer | FAIL (not found) | | |" >>"$report"; fail=1; }
step bench-gpu "$build/bench/ferry-bench" gpu

{
  echo
  echo "## ferry-bench gpu"
  echo
  echo '```'
  cat "$out/logs/bench-gpu.log"
  echo '```'
  for f in "$out"/logs/*.log; do
    if grep -qE "FAILED|ERROR SUMMARY: [1-9]|RACECHECK SUMMARY: [1-9]" "$f"; then
      echo
      echo "## $(basename "$f") (tail)"
      echo '```'
      tail -40 "$f"
      echo '```'
    fi
  done
} >>"$report"
echo "gpu-run: report at $report"
exit $fail
