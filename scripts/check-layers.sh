#!/usr/bin/env bash
# check-layers.sh: fails naming each include that reaches up a layer (a folder
# includes only the folders before it: base <- codec <- cuda, io <- store <-
# replication <- agent <- tools, bench, python) and each CUDA header included
# outside cuda/.
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A allowed=(
  [base]="base"
  [codec]="base codec"
  [cuda]="base codec cuda"
  [io]="base io"
  [store]="base codec store"
  [replication]="base codec cuda io store replication"
  [agent]="base codec cuda io store replication agent"
)
bad=0
for layer in "${!allowed[@]}"; do
  while IFS= read -r line; do
    file=${line%%:*}
    inc=$(sed -E 's/.*#include "([^/"]+)\/.*/\1/' <<<"$line")
    if [[ " ${allowed[$layer]} " != *" $inc "* ]]; then
      echo "layer violation: $line"; bad=1
    fi
  done < <(git grep -n -E '^#include "[^"]+/' -- "$layer/" || true)
done
while IFS= read -r line; do
  echo "CUDA header outside cuda/: $line"; bad=1
done < <(git grep -n -E '^#include <(cuda|cuda_runtime|cuda_runtime_api|cub/|thrust/)' -- ':!cuda/' || true)
exit $bad
