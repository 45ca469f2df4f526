#!/usr/bin/env bash
# demo.sh: the main job on real weights, start to finish. Installs what is
# missing and builds (scripts/build.sh), lays the real-weights corpus
# (../shared/corpus; the full set, or the small one if that fails), makes a
# sample checkpoint directory from it, then packs it with `ferry pack`,
# verifies the archive, unpacks it, compares every file byte for byte,
# shows `ferry inspect` and prints a report beside zstd -3 on the same
# bytes. Exits non-zero on any failure or mismatch.
#
#   scripts/demo.sh              build in build/
#   FERRY_BUILD_DIR=DIR scripts/demo.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${FERRY_BUILD_DIR:-$root/build}

step() { printf '\n== %s\n' "$*"; }
now() { date +%s.%N; }
# gbps BYTES SECONDS
rate() { awk -v b="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.3f GB/s", b / s / 1e9; else print "n/a" }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "n/a" }'; }

step "build ($build)"
"$root/scripts/build.sh" "$build"
ferry="$build/tools/ferry"
[ -x "$ferry" ] || { echo "demo: $ferry was not built" >&2; exit 1; }

step "corpus"
corpus="$build/corpus"
fetch="$root/../shared/corpus/fetch-corpus.sh"
if ! bash "$fetch" "$corpus"; then
  echo "demo: the full corpus could not be laid; using the small set" >&2
  bash "$fetch" "$corpus" --small
fi

step "sample checkpoint"
work="$build/demo"
rm -rf "$work"
ckpt="$work/checkpoint"
mkdir -p "$ckpt/model" "$ckpt/extra"
# Every safetensors file is a model shard; a few other weight files stand in
# for the rest of a training checkpoint (exported models, optimizer blobs).
n_other=0
while IFS=$'\t' read -r file _; do
  [ "$file" = file ] && continue
  case "$file" in
    *.safetensors) cp "$corpus/$file" "$ckpt/model/" ;;
    *) if [ "$n_other" -lt 4 ]; then cp "$corpus/$file" "$ckpt/extra/"; n_other=$((n_other + 1)); fi ;;
  esac
done < "$corpus/corpus.tsv"
cat > "$ckpt/trainer_state.json" <<JSON
{"global_step": 1200, "epoch": 0.42, "learning_rate": 0.0003, "note": "ferry demo checkpoint"}
JSON
files=$(find "$ckpt" -type f | wc -l)
logical=$(find "$ckpt" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')
echo "$files files, $logical bytes in $ckpt"

archive="$work/checkpoint.ferry"
restored="$work/restored"

step "ferry pack"
t0=$(now)
"$ferry" pack "$ckpt" -o "$archive" --job=demo --step=1200
t1=$(now)
pack_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
archive_bytes=$(stat -c %s "$archive")

step "ferry verify"
"$ferry" verify "$archive"

step "ferry unpack"
t0=$(now)
"$ferry" unpack "$archive" -o "$restored"
t1=$(now)
unpack_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')

step "compare every file"
mismatches=0
compared=0
while IFS= read -r -d '' f; do
  rel=${f#"$ckpt"/}
  if cmp -s "$f" "$restored/$rel"; then
    compared=$((compared + 1))
  else
    echo "MISMATCH: $rel"
    mismatches=$((mismatches + 1))
  fi
done < <(find "$ckpt" -type f -print0)
restored_files=$(find "$restored" -type f | wc -l)
[ "$restored_files" -eq "$files" ] || { echo "MISMATCH: $restored_files files restored, $files packed"; mismatches=$((mismatches + 1)); }
echo "$compared of $files files identical"

step "ferry inspect (files; tensors of one shard)"
"$ferry" inspect "$archive" --notensors
"$ferry" inspect "$archive" | grep -A8 -m1 '(st)' || true

zstd_line="zstd not installed"
if command -v zstd >/dev/null; then
  step "zstd -3 on the same bytes"
  t0=$(now)
  zbytes=$(find "$ckpt" -type f -print0 | sort -z | xargs -0 cat | zstd -3 -T0 -q -c | wc -c)
  t1=$(now)
  z_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
  zstd_line="ratio $(ratio "$logical" "$zbytes") ($zbytes bytes), $(rate "$logical" "$z_s") (zstd -3 -T0, all cores)"
fi

verdict=PASS
[ "$mismatches" -eq 0 ] || verdict=FAIL
cat <<REPORT

================ ferry demo report ================
files                 $files
logical bytes         $logical
archive bytes         $archive_bytes
ferry ratio           $(ratio "$logical" "$archive_bytes")
pack                  ${pack_s}s, $(rate "$logical" "$pack_s")
unpack (verified)     ${unpack_s}s, $(rate "$logical" "$unpack_s")
zstd -3, same data    $zstd_line
threads               $(nproc) CPUs, no GPU engine used by pack/unpack
byte-identical        $compared / $files
result                $verdict
====================================================
REPORT
[ "$verdict" = PASS ]
