#!/usr/bin/env bash
# fuzz.sh [SECONDS]: builds the libFuzzer targets with clang, ASan and UBSan
# (in build-fuzz/) and runs each for SECONDS (default 20) from its checked-in
# seed corpus in tests/fuzz/corpus/<target>/. Any crash, leak or sanitizer
# report fails the run and leaves the reproducer in build-fuzz/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-20}
build=${FERRY_FUZZ_BUILD_DIR:-$root/build-fuzz}
"$root/scripts/install-deps.sh"
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
if [ ! -f "$build/CMakeCache.txt" ]; then
  CC=clang CXX=clang++ cmake -S "$root" -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DFERRY_FUZZ=ON -DFERRY_CUDA=OFF -DFERRY_SANITIZE=address,undefined >/dev/null
fi
cmake --build "$build" -j"$(nproc)" --target fuzz_targets
shopt -s nullglob
# One target per CPU at a time: each fuzzer runs on one thread, so on a
# 2-core machine two at once halve the wall time and keep each one's
# SECONDS of fuzzing.
jobs=$(nproc)
pids=() names=()
failed=""
# Waits for the oldest running target; records it when it failed.
reap() {
  if ! wait "${pids[0]}"; then
    failed="$failed ${names[0]}"
  fi
  pids=("${pids[@]:1}") names=("${names[@]:1}")
}
ran=0
for bin in "$build"/tests/fuzz/fuzz_*; do
  name=$(basename "$bin")
  seeds="$root/tests/fuzz/corpus/${name#fuzz_}"
  work="$build/fuzz-work/$name"; mkdir -p "$work"
  echo "fuzz: $name for ${seconds}s"
  (cd "$build" && UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    exec "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=0 \
      "$work" "$seeds" 2>"$work.log") &
  pids+=("$!") names+=("$name")
  ran=$((ran + 1))
  if [ "${#pids[@]}" -ge "$jobs" ]; then reap; fi
done
while [ "${#pids[@]}" -gt 0 ]; do reap; done
if [ -n "$failed" ]; then
  for name in $failed; do
    tail -40 "$build/fuzz-work/$name.log"
    echo "fuzz: $name FAILED"
  done
  exit 1
fi
echo "fuzz: $ran targets passed"
