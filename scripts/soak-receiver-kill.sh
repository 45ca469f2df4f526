#!/usr/bin/env bash
# soak-receiver-kill.sh [ROUNDS] [TRIALS]: runs the kill -9 receiver test
# (tests/replication/receiver_kill_slow_test.cc) ROUNDS times (default 10)
# with TRIALS kills each (default 100), a fresh seed per round. Each round
# starts the real `ferry serve`, kills it at random points of a push,
# restarts it on the same store and checks that the push resumes, that the
# store scrubs clean at every crash point and that every snapshot restores
# byte for byte. A failing round prints its FERRY_TEST_SEED to replay.
# Environment: FERRY_BUILD_DIR (default build/).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${FERRY_BUILD_DIR:-$root/build}
rounds=${1:-10}
trials=${2:-100}
test_bin=$build/tests/receiver_kill_slow_test
cmake --build "$build" --target receiver_kill_slow_test >/dev/null
failed=0
for ((r = 1; r <= rounds; r++)); do
  seed=${FERRY_TEST_SEED:-$(( (RANDOM << 30) ^ (RANDOM << 15) ^ RANDOM ^ r ))}
  log=$(mktemp "${TMPDIR:-/tmp}/ferry-soak-kill.XXXXXX")
  start=$(date +%s)
  if FERRY_TEST_SEED=$seed FERRY_KILL_TRIALS=$trials "$test_bin" >"$log" 2>&1; then
    mid=$(grep -o '[0-9]* of [0-9]* kills landed mid-push' "$log" || true)
    echo "round $r/$rounds: ok in $(( $(date +%s) - start )) s ($mid), FERRY_TEST_SEED=$seed"
    rm -f "$log"
  else
    failed=$((failed + 1))
    echo "round $r/$rounds: FAILED, FERRY_TEST_SEED=$seed; log: $log"
    grep -E 'Failure|Expected|error|trial' "$log" | tail -20
  fi
done
echo "soak: $((rounds - failed)) of $rounds rounds passed ($trials kills each)"
[ "$failed" -eq 0 ]
