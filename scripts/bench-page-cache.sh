#!/usr/bin/env bash
# bench-page-cache.sh: what `ferry pack`, `ferry push` and `ferry restore`
# leave in the page cache and what they cost in CPU, on a real disk. Each
# pack run drops the page cache (cold) or reads the checkpoint into it first
# (hot), packs the checkpoint into an archive in /dev/shm (so that no disk
# write blurs the figures) and reports the page cache it brought in (its own
# memory cgroup, the archive's tmpfs pages left out), the checkpoint's pages
# left resident and the CPU seconds. Each push run lays a fresh receiver
# store, drops the page cache (cold) or reads the
# checkpoint into it first (hot), pushes the checkpoint over loopback mutual
# TLS, and reports: the page cache the push brought in (charged to its own
# memory cgroup, so other processes on a shared machine do not blur it), the
# checkpoint's own pages left resident (fincore), the receiver's page cache
# (its cgroup) and pack pages resident, the push's wall and CPU seconds (GNU
# time) and the receiver's CPU seconds (/proc/PID/stat). After the last push
# it restores the snapshot into a directory and reports the page cache the
# restore brought in, the restored files' resident pages and how long reading
# them back takes warm and after dropping the cache (what a restarting
# training job sees).
#
#   scripts/bench-page-cache.sh FERRY CHECKPOINT_DIR WORK_DIR [RUNS] [cold|hot]
#
# Needs root (drop_caches), util-linux fincore and GNU time. WORK_DIR must be
# on the disk being measured (not tmpfs); it is emptied first.
set -euo pipefail
ferry=$(realpath "$1")
ckpt=$(realpath "$2")
work=$3
runs=${4:-3}
mode=${5:-cold}

rm -rf "$work"
mkdir -p "$work"
work=$(realpath "$work")
certs=$work/certs
"$ferry" certs --dir="$certs" --hosts=bench-host >/dev/null
tls=(--ca="$certs/ca.pem" --cert="$certs/host-bench-host.pem" --key="$certs/host-bench-host.key")
ckpt_bytes=$(find "$ckpt" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')

# Memory cgroups (v1) below this shell's own: a process's page cache is
# charged to the cgroup it ran in.
cg_parent=/sys/fs/cgroup/memory$(sed -n 's/^[0-9]*:memory://p' /proc/self/cgroup)
cg_new() { local d=$cg_parent/ferry-bench-$1-$$; rmdir "$d" 2>/dev/null || true; mkdir -p "$d" 2>/dev/null && echo "$d"; }
# cg_exec DIR CMD...: runs CMD inside cgroup DIR (none: as is)
cg_exec() { local d=$1; shift; if [ -n "$d" ]; then sh -c 'echo $$ >"$0/cgroup.procs"; exec "$@"' "$d" "$@"; else "$@"; fi; }
# page cache charged to cgroup DIR, tmpfs (shmem) pages left out, in MB
cg_cache_mb() {
  if [ -n "$1" ]; then
    awk '$1 == "cache" { c = $2 } $1 == "shmem" { m = $2 } END { printf "%.1f", (c - m) / 1e6 }' "$1/memory.stat"
  else echo n/a; fi
}
cg_done() { if [ -n "$1" ]; then rmdir "$1" 2>/dev/null || true; fi; }
# resident BYTES of every regular file under DIR
resident() { find "$1" -type f -print0 | xargs -0 -r fincore -b -n -o RES | awk '{ s += $1 } END { print s + 0 }'; }
proc_cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }
field() { sed -n "s/^[[:space:]]*$1: //p" "$2"; }

start_receiver() {
  store=$work/store
  rm -rf "$store"
  cg_serve=$(cg_new serve)
  : >"$work/serve.out"
  # The subshell joins the cgroup and becomes the receiver, so $! is its pid.
  (
    if [ -n "$cg_serve" ]; then echo "$BASHPID" >"$cg_serve/cgroup.procs"; fi
    exec "$ferry" serve --store="$store" --ca="$certs/ca.pem" --cert="$certs/receiver.pem" \
      --key="$certs/receiver.key" --listen=127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.log"
  ) &
  serve_pid=$!
  port=
  for _ in $(seq 100); do
    port=$(sed -n 's/^ferry serve: listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/serve.out")
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { cat "$work/serve.log" >&2; exit 1; }
}
stop_receiver() {
  if [ -n "${serve_pid:-}" ]; then kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; serve_pid=; fi
  cg_done "${cg_serve:-}"
}
trap stop_receiver EXIT

# settle_cache: drops the page cache, runs ferry once on a one-byte file
# (so that its own executable and libraries are cached, outside the cgroups
# measured), then (hot) reads the checkpoint into the cache
mkdir -p "$work/warm" && echo x >"$work/warm/x"
settle_cache() {
  sync
  echo 3 >/proc/sys/vm/drop_caches
  "$ferry" pack "$work/warm" -o "$work/warm.ferry" >/dev/null 2>&1
  if [ "$mode" = hot ]; then find "$ckpt" -type f -exec cat {} + >/dev/null; fi
}
# seconds WALL: m:ss.ss or h:mm:ss from GNU time, in seconds
seconds() { awk -v wall="$1" 'BEGIN { n = split(wall, p, ":"); w = 0; for (i = 1; i <= n; i++) w = w * 60 + p[i]; print w }'; }
cpu_of() { awk -v u="$(field 'User time (seconds)' "$1")" -v s="$(field 'System time (seconds)' "$1")" 'BEGIN { print u + s }'; }
wall_of() { seconds "$(field 'Elapsed (wall clock) time (h:mm:ss or m:ss)' "$1")"; }

echo "ferry: $ferry"
echo "checkpoint: $ckpt ($(find "$ckpt" -type f | wc -l) files, $ckpt_bytes bytes), $mode cache, $runs runs"
printf '| pack run | page cache MB | checkpoint resident MB | wall s | CPU s | CPU s/GB |\n'
printf '|---:|---:|---:|---:|---:|---:|\n'
archive=/dev/shm/ferry-bench-page-cache-$$.ferry
for run in $(seq "$runs"); do
  settle_cache
  cg_pack=$(cg_new pack)
  cg_exec "$cg_pack" /usr/bin/time -v -o "$work/time.txt" "$ferry" pack "$ckpt" -o "$archive" >/dev/null 2>&1
  pack_cache=$(cg_cache_mb "$cg_pack")
  rm -f "$archive"
  cg_done "$cg_pack"
  src=$(resident "$ckpt")
  cpu=$(cpu_of "$work/time.txt")
  awk -v run="$run" -v pc="$pack_cache" -v src="$src" -v w="$(wall_of "$work/time.txt")" -v c="$cpu" \
    -v gb="$ckpt_bytes" 'BEGIN { printf "| %d | %s | %.1f | %.2f | %.2f | %.2f |\n", run, pc, src / 1e6, w, c, c / (gb / 1e9) }'
done
printf '| push run | page cache MB | checkpoint resident MB | receiver page cache MB | store resident MB | push wall s | push CPU s | push CPU s/GB | receiver CPU s |\n'
printf '|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for run in $(seq "$runs"); do
  start_receiver
  settle_cache
  r0=$(proc_cpu_s "$serve_pid")
  cg_push=$(cg_new push)
  cg_exec "$cg_push" /usr/bin/time -v -o "$work/time.txt" "$ferry" push "$ckpt" --to="127.0.0.1:$port" "${tls[@]}" \
    --job=bench --step="$run" >"$work/push.out" 2>"$work/push.err"
  push_cache=$(cg_cache_mb "$cg_push")
  serve_cache=$(cg_cache_mb "$cg_serve")
  cg_done "$cg_push"
  r1=$(proc_cpu_s "$serve_pid")
  src=$(resident "$ckpt")
  packs=$(resident "$store")
  cpu=$(cpu_of "$work/time.txt")
  awk -v run="$run" -v pc="$push_cache" -v rc="$serve_cache" -v src="$src" -v packs="$packs" -v c="$cpu" \
    -v w="$(wall_of "$work/time.txt")" -v r0="$r0" -v r1="$r1" -v gb="$ckpt_bytes" 'BEGIN {
      printf "| %d | %s | %.1f | %s | %.1f | %.2f | %.2f | %.2f | %.2f |\n", run, pc, src / 1e6, rc,
        packs / 1e6, w, c, c / (gb / 1e9), r1 - r0 }'
  if [ "$run" -lt "$runs" ]; then stop_receiver; fi
done

snapshot=$(grep '^push-report ' "$work/push.out" | tail -1 | tr ' ' '\n' | sed -n 's/^snapshot=//p')
restored=$work/restored
mode=cold settle_cache
cg_restore=$(cg_new restore)
cg_exec "$cg_restore" /usr/bin/time -v -o "$work/time.txt" "$ferry" restore "$snapshot" --from="127.0.0.1:$port" \
  --to="$restored" "${tls[@]}" >/dev/null 2>"$work/restore.err"
restore_cache=$(cg_cache_mb "$cg_restore")
cg_done "$cg_restore"
stop_receiver
res=$(resident "$restored")
t0=$(date +%s.%N)
find "$restored" -type f -exec cat {} + >/dev/null
t1=$(date +%s.%N)
sync
echo 3 >/proc/sys/vm/drop_caches
t2=$(date +%s.%N)
find "$restored" -type f -exec cat {} + >/dev/null
t3=$(date +%s.%N)
awk -v rc="$restore_cache" -v w="$(wall_of "$work/time.txt")" -v c="$(cpu_of "$work/time.txt")" -v res="$res" \
  -v t0="$t0" -v t1="$t1" -v t2="$t2" -v t3="$t3" 'BEGIN {
    printf "restore: page cache %s MB, restored files resident %.1f MB, wall %.2f s, CPU %.2f s; ", rc, res / 1e6, w, c
    printf "reading the restored files back: %.3f s warm, %.3f s cold\n", t1 - t0, t3 - t2 }'
