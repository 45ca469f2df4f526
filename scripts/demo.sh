#!/usr/bin/env bash
# demo.sh: the main job on real weights, start to finish. Installs what is
# missing and builds (scripts/build.sh), lays the real-weights corpus
# (../shared/corpus; the full set, or the small one if that fails), makes a
# sample checkpoint directory from it, then replicates it the way a training
# host would: `ferry certs` makes a CA, a receiver and a host certificate;
# `ferry serve` runs a DR receiver on 127.0.0.1 (port chosen by the kernel);
# `ferry push` sends the checkpoint over mutual TLS; a second push shows
# that nothing the receiver holds is sent again; `ferry list` shows the
# snapshots; `ferry restore` fetches one into a new directory, verified;
# every file is compared byte for byte. Also packs a `.ferry` archive and
# verifies it, and prints a report beside zstd -3 on the same bytes. Exits
# non-zero on any failure or mismatch.
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
certs="$work/certs"
store="$work/dr-store"
host=demo-host

step "ferry certs"
"$ferry" certs --dir="$certs" --hosts="$host"
tls=(--ca="$certs/ca.pem" --cert="$certs/host-$host.pem" --key="$certs/host-$host.key")

step "ferry serve (DR receiver on 127.0.0.1)"
serve_out="$work/serve.out"
"$ferry" serve --store="$store" --ca="$certs/ca.pem" --cert="$certs/receiver.pem" \
  --key="$certs/receiver.key" --listen=127.0.0.1:0 >"$serve_out" 2>"$work/serve.log" &
serve_pid=$!
stop_receiver() { if [ -n "${serve_pid:-}" ]; then kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; serve_pid=; fi; }
trap stop_receiver EXIT
port=
for _ in $(seq 100); do
  port=$(sed -n 's/^ferry serve: listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$serve_out")
  [ -n "$port" ] && break
  kill -0 "$serve_pid" 2>/dev/null || { cat "$work/serve.log" >&2; echo "demo: ferry serve exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$port" ] || { echo "demo: ferry serve did not report its port" >&2; exit 1; }
cat "$serve_out"
target=127.0.0.1:$port

# kv KEY FILE: a value from the push-report line.
kv() { grep '^push-report ' "$2" | tail -1 | tr ' ' '\n' | sed -n "s/^$1=//p"; }

step "ferry push (first: every chunk)"
t0=$(now)
"$ferry" push "$ckpt" --to="$target" "${tls[@]}" --job=demo --step=1200 | tee "$work/push1.out"
t1=$(now)
push_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
wire_bytes=$(kv wire_bytes "$work/push1.out")
frame_bytes=$(kv frame_bytes_sent "$work/push1.out")
snapshot=$(kv snapshot "$work/push1.out")

step "ferry push again (the receiver has every chunk)"
"$ferry" push "$ckpt" --to="$target" "${tls[@]}" --job=demo --step=1201 | tee "$work/push2.out"
wire2=$(kv wire_bytes "$work/push2.out")
sent2=$(kv frame_bytes_sent "$work/push2.out")
skipped2=$(kv chunks_skipped "$work/push2.out")
chunks2=$(kv chunks "$work/push2.out")

step "ferry list"
"$ferry" list --from="$target" "${tls[@]}"

step "ferry restore $snapshot"
t0=$(now)
"$ferry" restore "$snapshot" --from="$target" --to="$restored" "${tls[@]}"
t1=$(now)
restore_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')

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
[ "$restored_files" -eq "$files" ] || { echo "MISMATCH: $restored_files files restored, $files pushed"; mismatches=$((mismatches + 1)); }
echo "$compared of $files files identical"

step "stop the receiver"
stop_receiver
tail -1 "$work/serve.log" || true

step "ferry pack + verify (the same checkpoint as a .ferry archive)"
"$ferry" pack "$ckpt" -o "$archive" --job=demo --step=1200
"$ferry" verify "$archive"
archive_bytes=$(stat -c %s "$archive")

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
[ "$sent2" = 0 ] || { echo "second push sent $sent2 frame bytes, expected none"; verdict=FAIL; }
cat <<REPORT

================ ferry demo report ================
files                 $files
logical bytes         $logical
bytes on the wire     $wire_bytes (TLS records; frames $frame_bytes)
ratio (logical/wire)  $(ratio "$logical" "$wire_bytes")
push                  ${push_s}s, $(rate "$logical" "$push_s") (start to commit, 4 mTLS streams, receiver on the same CPUs)
push again            $sent2 frame bytes sent, $skipped2 of $chunks2 chunks already at the receiver, $wire2 bytes on the wire
restore (verified)    ${restore_s}s, $(rate "$logical" "$restore_s")
archive (.ferry)      $archive_bytes bytes, ratio $(ratio "$logical" "$archive_bytes")
zstd -3, same data    $zstd_line
threads               $(nproc) CPUs, no GPU engine used
byte-identical        $compared / $files
result                $verdict
====================================================
REPORT
[ "$verdict" = PASS ]
