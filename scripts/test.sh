#!/usr/bin/env bash
# test.sh: installs what is missing, builds, lays the real-weights corpus and
# runs the whole test suite (ctest), then every fuzz target for a bounded
# time from its checked-in seed corpus. First checks the format of the
# sources. Exits non-zero on any failure.
# GPU tests report themselves skipped when no GPU is present.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${FERRY_BUILD_DIR:-$root/build}
"$root/scripts/build.sh" "$build"
# The sources follow .clang-format and the layer order (a file that does
# not names itself here).
"$root/scripts/format.sh" --check
"$root/scripts/check-layers.sh"
# The alert rules of docs/OPERATIONS.md: promtool check rules and their unit
# tests (install-deps.sh installs promtool with the prometheus package).
"$root/scripts/check-alert-rules.sh" --require

corpus="$build/corpus"
shared="$root/../shared/corpus/fetch-corpus.sh"
if [ -x "$shared" ] || [ -f "$shared" ]; then
  bash "$shared" "$corpus" --small >/dev/null
  export FERRY_CORPUS_DIR="$corpus"
else
  echo "test.sh: $shared not found: corpus tests will be skipped" >&2
fi

cd "$build"
ctest --output-on-failure -j"$(nproc)" --timeout 600 "$@"

if [ "${FERRY_SKIP_FUZZ:-0}" != 1 ]; then
  "$root/scripts/fuzz.sh" "${FERRY_FUZZ_SECONDS:-20}"
fi
