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
# verifies it, and prints a report beside zstd -3 on the same bytes. Then
# the agent: a simulated training loop writes three safetensors checkpoints
# a second apart, `ferry-agent` replicates them to the same receiver,
# `ferry status` shows the job and its RPO, the newest is restored and
# compared byte for byte, and SIGTERM stops the agent. Exits non-zero on any
# failure or mismatch.
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

# ---------------------------------------------------------------------------
# The agent: a simulated training loop writes three checkpoints, a second
# apart, as sharded safetensors sets (shards first, the index last, the way
# save_pretrained does); ferry-agent notices each complete one and
# replicates it to the same receiver; `ferry status` shows the job and its
# RPO; the newest is restored and compared byte for byte; SIGTERM stops
# the agent cleanly.
agent_bin="$build/tools/ferry-agent"
[ -x "$agent_bin" ] || { echo "demo: $agent_bin was not built" >&2; exit 1; }
train="$work/training"
agent_job=demo-train
agent_sock="$work/agent.sock"
agent_log="$work/agent.log"
agent_restored="$work/agent-restored"
mkdir -p "$train" "$work/agent-state"

step "ferry-agent (watching $train, replicating to $target)"
"$agent_bin" --watch="$train=$agent_job" --targets="$target" "${tls[@]}" \
  --state_dir="$work/agent-state" --control_socket="$agent_sock" --metrics_listen= \
  --rpo_target_s=600 --log_format=text >"$agent_log" 2>&1 &
agent_pid=$!
stop_agent() {
  if [ -n "${agent_pid:-}" ]; then kill -TERM "$agent_pid" 2>/dev/null || true; wait "$agent_pid" 2>/dev/null || true; agent_pid=; fi
}
trap 'stop_agent; stop_receiver' EXIT
for _ in $(seq 100); do
  # 0: all is well, 6: the agent answers and shows a warning (both mean it is up).
  rc=0; "$ferry" status --socket="$agent_sock" --json >/dev/null 2>&1 || rc=$?
  { [ "$rc" = 0 ] || [ "$rc" = 6 ]; } && break
  kill -0 "$agent_pid" 2>/dev/null || { cat "$agent_log" >&2; echo "demo: ferry-agent exited" >&2; exit 1; }
  sleep 0.1
done
echo "ferry-agent running (pid $agent_pid, control socket $agent_sock)"

# safetensors_names FILE: the tensor names in a safetensors header.
safetensors_names() {
  local n
  n=$(od -An -tu8 -N8 "$1" | tr -d ' ')
  head -c $((8 + n)) "$1" | tail -c "$n" | grep -o '"[^"]*":{"dtype"' | sed 's/":{"dtype"$//; s/^"//'
}
shards=()
while IFS=$'\t' read -r file _; do
  case "$file" in *.safetensors) shards+=("$file") ;; esac
done < "$corpus/corpus.tsv"
[ "${#shards[@]}" -gt 0 ] || { echo "demo: no safetensors files in the corpus" >&2; exit 1; }

step "simulated training: 3 checkpoints, a second apart"
agent_steps=(100 200 300)
t_first=$(now)
for s in "${agent_steps[@]}"; do
  d="$train/step-$s"
  mkdir -p "$d"
  nshards=${#shards[@]}
  index="{\"metadata\": {\"step\": $s}, \"weight_map\": {"
  sep=
  for i in "${!shards[@]}"; do
    shard=$(printf 'model-%05d-of-%05d.safetensors' $((i + 1)) "$nshards")
    cp "${corpus}/${shards[$i]}" "$d/$shard"
    # This step's update: 256 KiB of the tensor data changes per shard (the
    # rest is unchanged and dedups against the previous step).
    hdr=$(od -An -tu8 -N8 "$d/$shard" | tr -d ' ')
    dd if=/dev/urandom of="$d/$shard" bs=4096 seek=$(((8 + hdr) / 4096 + s / 100 * 64)) count=64 \
      conv=notrunc status=none
    while IFS= read -r name; do
      index+="$sep\"$name\": \"$shard\""
      sep=", "
    done < <(safetensors_names "$d/$shard")
  done
  printf '{"global_step": %d, "note": "ferry demo training loop"}\n' "$s" > "$d/trainer_state.json"
  # The index last, renamed into place: only now is the set complete.
  printf '%s}}\n' "$index" > "$d/model.safetensors.index.json.tmp"
  mv "$d/model.safetensors.index.json.tmp" "$d/model.safetensors.index.json"
  echo "step $s: $(find "$d" -type f | wc -l) files, $(du -sb "$d" | cut -f1) bytes"
  sleep 1
done
newest=${agent_steps[-1]}

# json_num KEY FILE: the first numeric KEY in a JSON text.
json_num() { grep -o "\"$1\": *[0-9.e+-]*" "$2" | head -1 | sed 's/.*: *//'; }
step "waiting for the agent to commit step $newest"
committed=
for _ in $(seq 1200); do
  "$ferry" status --socket="$agent_sock" --json > "$work/status.json" 2>/dev/null || true
  c=$(json_num newest_committed_step "$work/status.json")
  q=$(json_num queued "$work/status.json")
  f=$(json_num in_flight "$work/status.json")
  if [ "${c:-0}" -ge "$newest" ] && [ "${q:-1}" = 0 ] && [ "${f:-1}" = 0 ]; then committed=$c; break; fi
  kill -0 "$agent_pid" 2>/dev/null || { cat "$agent_log" >&2; echo "demo: ferry-agent exited" >&2; exit 1; }
  sleep 0.1
done
t_committed=$(now)
[ -n "$committed" ] || { tail -20 "$agent_log" >&2; echo "demo: step $newest was not committed within 120 s" >&2; exit 1; }
agent_lag=$(awk -v a="$t_first" -v b="$t_committed" 'BEGIN { printf "%.1f", b - a }')

step "ferry status"
# Exit status 6 means it shows a warning (docs/OPERATIONS.md, "Exit codes"): shown, not fatal here.
"$ferry" status --socket="$agent_sock" || [ $? -eq 6 ]
agent_rpo=$(awk -v r="$(json_num rpo_seconds "$work/status.json")" 'BEGIN { printf "%.1f", r }')
agent_jobs_committed=$(json_num committed "$work/status.json")
agent_logical=$(json_num logical_bytes "$work/status.json")
agent_wire=$(json_num wire_bytes "$work/status.json")

step "ferry list (the agent's snapshots beside the pushed ones)"
"$ferry" list --from="$target" "${tls[@]}"

agent_snapshot="$agent_job-step-$newest"  # "<job>-<directory name>" (replication/snapshot_name.h)
step "ferry restore $agent_snapshot"
"$ferry" restore "$agent_snapshot" --from="$target" --to="$agent_restored" "${tls[@]}"

step "compare every file of step $newest"
agent_src="$train/step-$newest"
agent_files=$(find "$agent_src" -type f | wc -l)
agent_same=0
while IFS= read -r -d '' f; do
  rel=${f#"$agent_src"/}
  if cmp -s "$f" "$agent_restored/$rel"; then
    agent_same=$((agent_same + 1))
  else
    echo "MISMATCH: $rel"
    mismatches=$((mismatches + 1))
  fi
done < <(find "$agent_src" -type f -print0)
agent_restored_files=$(find "$agent_restored" -type f | wc -l)
[ "$agent_restored_files" -eq "$agent_files" ] || { echo "MISMATCH: $agent_restored_files files restored, $agent_files written"; mismatches=$((mismatches + 1)); }
echo "$agent_same of $agent_files files identical"

step "stop the agent (SIGTERM)"
kill -TERM "$agent_pid"
agent_exit=0
wait "$agent_pid" || agent_exit=$?
agent_pid=
tail -2 "$agent_log"
echo "ferry-agent exited with status $agent_exit"
[ "$agent_exit" -eq 0 ] || mismatches=$((mismatches + 1))

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
agent                 ${#agent_steps[@]} checkpoints written, newest (step $newest) committed ${agent_lag}s after the first was written
agent RPO             ${agent_rpo}s (age of the newest checkpoint committed at the DR site)
agent bytes           $agent_logical logical, $agent_wire on the wire, ${agent_jobs_committed} jobs committed
agent restore         $agent_same / $agent_files files of $agent_snapshot identical; agent exit status $agent_exit
result                $verdict
====================================================
REPORT
[ "$verdict" = PASS ]
