#!/usr/bin/env bash
# ceph-dev.sh: a throwaway single-host Ceph cluster for ferry's S3 tests,
# benchmarks and demo: one monitor, one OSD, two radosgw gateways (S3 on
# 127.0.0.1) and one S3 user, all run as the calling user with everything
# under DIR (config, keys, data, logs, pid files, sockets). Needs Debian's
# ceph-mon, ceph-osd, radosgw and ceph-common (scripts/install-deps.sh);
# no ceph-mgr (S3 does not need one), no root, no systemd.
#
#   scripts/ceph-dev.sh start DIR [--objectstore=memstore|bluestore]
#   scripts/ceph-dev.sh stop DIR        # kills the daemons, removes DIR
#   scripts/ceph-dev.sh restart-rgw DIR N  # (re)starts gateway N (1 or 2)
#   scripts/ceph-dev.sh add-rgw DIR N [--tls=CERT,KEY]
#                                   # starts one more gateway N (3-99) on a free
#                                   # port (S3 over TLS with that PEM certificate
#                                   # and key); prints its endpoint URL
#   scripts/ceph-dev.sh add-user DIR UID  # one more S3 user; prints
#                                         # "ACCESS_KEY SECRET_KEY"
#
# start prints the DIR/env file it wrote and exits once both gateways
# answer an authenticated S3 request. DIR/env holds shell assignments:
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL
#   (gateway 1), FERRY_S3_ENDPOINT_2 (gateway 2), FERRY_CEPH_RGW1_PORT,
#   FERRY_CEPH_RGW2_PORT, FERRY_CEPH_DIR; pid files are DIR/run/*.pid.
#
# The object store behind the OSD:
#   memstore  (the default) holds the data in the OSD's memory: the cluster
#             is up in about 2-3 s, but a kill -9 of the OSD loses every
#             object. Right for tests, which hold little data, never kill
#             the OSD (they kill gateways) and throw the cluster away.
#   bluestore keeps the data in DIR/osd.block, a sparse file: about 6 s to
#             start, survives a kill -9 of any daemon, and holds more than
#             memory. Right for benchmarks of real corpus sizes and for a
#             demo that is stopped and started again.
set -euo pipefail

die() {
  echo "ceph-dev: $*" >&2
  exit 1
}

# Seconds to wait for each daemon, and for the first S3 request.
readonly START_TIMEOUT_S=60
readonly EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

need_tools() {
  local t missing=()
  for t in ceph-mon ceph-osd radosgw radosgw-admin ceph ceph-authtool monmaptool uuidgen curl; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  ((${#missing[@]} == 0)) || die "missing ${missing[*]} (install ceph-mon ceph-osd radosgw ceph-common: scripts/install-deps.sh)"
}

# A TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits until `cmd...` succeeds, for at most START_TIMEOUT_S seconds.
wait_for() {
  local what=$1
  shift
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what did not come up within ${START_TIMEOUT_S} s (logs in $DIR/log)"
    sleep 0.1
  done
}

# An authenticated S3 request (list buckets) against gateway port $1 (over
# TLS, certificate not checked, when $2 is https).
s3_ready() {
  # curl 7.88 signs only what x-amz-content-sha256 says; radosgw needs it.
  curl -sf --insecure --max-time 2 --aws-sigv4 "aws:amz:${REGION}:s3" --user "${ACCESS_KEY}:${SECRET_KEY}" \
    -H "x-amz-content-sha256: $EMPTY_SHA256" "${2:-http}://127.0.0.1:$1/" -o /dev/null
}

# tcp_nodelay=1: beast writes a reply's headers and its body apart, and
# without it Nagle holds a small body until the client's delayed ACK of the
# headers comes, 40 ms later: every small request (a lock, a listing, an
# index or a manifest) then took 40 ms instead of 2 (docs/OPERATIONS.md).
start_rgw() {
  local n=$1 port=$2 frontend=${3:-"beast endpoint=127.0.0.1:$2"}
  mkdir -p "$DIR/rgw/$n"
  radosgw -c "$CONF" -n "client.rgw.$n" --rgw-frontends="$frontend tcp_nodelay=1" \
    --rgw-data="$DIR/rgw/$n" --pid-file="$DIR/run/rgw.$n.pid" --log-file="$DIR/log/rgw.$n.log"
}

write_conf() {
  local objectstore=$1
  cat >"$CONF" <<EOF
[global]
fsid = $FSID
mon host = v2:127.0.0.1:$MON_PORT
public addr = 127.0.0.1
ms bind msgr1 = false
keyring = $DIR/keyring
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
log file = $DIR/log/\$name.log
pid file = $DIR/run/\$name.pid
log to stderr = false
err to stderr = true
# One OSD: every pool has one copy, placed on that OSD.
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon data avail warn = 5
# A throwaway cluster on the host's disk: by default the monitor refuses to
# start, saying why only in the foreground, when that disk has under 5% free.
mon data avail crit = 0
auth allow insecure global id reclaim = false
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
# The default of 1 s makes radosgw wait about 9 s for its pools.
paxos propose interval = 0.1
mon data = $DIR/mon
osd data = $DIR/osd
osd objectstore = $objectstore
osd memory target = 536870912
bluestore block path = $DIR/osd.block
bluestore block create = true
bluestore block size = 21474836480
bluestore cache autotune = false
bluestore cache size = 67108864
memstore device bytes = 4294967296
# A gateway killed -9 leaves its watches on the cluster's objects; until
# they expire, every bucket creation waits for its answer (30 s by default).
osd client watch timeout = 5
rgw dns name = localhost
rgw enable usage log = true
rgw thread pool size = 64
EOF
}

init_cluster() {
  local objectstore=$1
  mkdir -p "$DIR"/{run,log,mon,osd}
  FSID=$(uuidgen)
  MON_PORT=$(free_port)
  write_conf "$objectstore"
  ceph-authtool --create-keyring "$DIR/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool "$DIR/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
    --cap mgr 'allow *' >/dev/null
  ceph-authtool "$DIR/keyring" --gen-key -n osd.0 --cap mon 'allow profile osd' --cap osd 'allow *' >/dev/null
  local g
  for g in 1 2; do
    ceph-authtool "$DIR/keyring" --gen-key -n "client.rgw.$g" --cap mon 'allow rw' --cap osd 'allow rwx' >/dev/null
  done
  monmaptool --create --addv a "[v2:127.0.0.1:$MON_PORT]" --fsid "$FSID" "$DIR/monmap" >/dev/null
  ceph-mon -c "$CONF" -i a --mkfs --monmap "$DIR/monmap" --keyring "$DIR/keyring" 2>"$DIR/log/mkfs.log"
  local rc=0
  ceph-mon -c "$CONF" -i a || rc=$?
  ((rc == 0)) || die "ceph-mon exited with status $rc before it served ('ceph-mon -c $CONF -i a -d' shows why)"
  wait_for "ceph-mon" ceph -c "$CONF" --connect-timeout 2 mon stat
  # Import the daemons' keys so that they can authenticate.
  ceph -c "$CONF" auth import -i "$DIR/keyring" 2>/dev/null
  local osd_uuid
  osd_uuid=$(uuidgen)
  ceph -c "$CONF" osd new "$osd_uuid" 0 >/dev/null 2>&1
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" 2>>"$DIR/log/mkfs.log" >/dev/null \
    || die "ceph-osd --mkfs failed (see $DIR/log/mkfs.log)"
  ceph-osd -c "$CONF" -i 0 2>>"$DIR/log/osd.0.stderr"
  RGW1_PORT=$(free_port)
  RGW2_PORT=$(free_port)
  REGION=us-east-1
  ACCESS_KEY=$(head -c 15 /dev/urandom | base32 | tr -d =)
  SECRET_KEY=$(head -c 30 /dev/urandom | base64 | tr -d '=+/')
  cat >"$DIR/env" <<EOF
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_REGION=$REGION
export AWS_ENDPOINT_URL=http://127.0.0.1:$RGW1_PORT
export FERRY_S3_ENDPOINT_2=http://127.0.0.1:$RGW2_PORT
export FERRY_CEPH_RGW1_PORT=$RGW1_PORT
export FERRY_CEPH_RGW2_PORT=$RGW2_PORT
export FERRY_CEPH_DIR=$DIR
export FERRY_CEPH_CONF=$CONF
EOF
  start_rgw 1 "$RGW1_PORT"
  # The user is created through RADOS directly (no gateway needed), once
  # radosgw made its pools.
  wait_for "radosgw pools" radosgw-admin -c "$CONF" user list
  radosgw-admin -c "$CONF" user create --uid=ferry --display-name=ferry --access-key="$ACCESS_KEY" \
    --secret-key="$SECRET_KEY" >/dev/null 2>&1
  start_rgw 2 "$RGW2_PORT"
  wait_for "radosgw 1 (S3 on port $RGW1_PORT)" s3_ready "$RGW1_PORT"
  wait_for "radosgw 2 (S3 on port $RGW2_PORT)" s3_ready "$RGW2_PORT"
}

load_env() {
  [ -f "$DIR/env" ] || die "$DIR holds no cluster (no $DIR/env); run start first"
  # shellcheck disable=SC1091
  . "$DIR/env"
  ACCESS_KEY=$AWS_ACCESS_KEY_ID
  SECRET_KEY=$AWS_SECRET_ACCESS_KEY
  REGION=$AWS_REGION
}

stop_daemons() {
  local f pid
  for f in "$DIR"/run/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    # Only a process that is one of ours, started on this DIR's config.
    if [ -n "$pid" ] && grep -qF "$DIR" "/proc/$pid/cmdline" 2>/dev/null; then
      # The cluster is thrown away: no clean shutdown to wait for.
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  local deadline=$((SECONDS + 10))
  for f in "$DIR"/run/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    while [ -n "$pid" ] && grep -qF "$DIR" "/proc/$pid/cmdline" 2>/dev/null; do
      if ((SECONDS >= deadline)); then
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.1
    done
  done
}

main() {
  (($# >= 2)) || die "usage: $0 start|stop|restart-rgw|add-rgw|add-user DIR [--objectstore=memstore|bluestore] | N [--tls=CERT,KEY] | UID"
  local cmd=$1
  DIR=$(realpath -m "$2")
  CONF=$DIR/ceph.conf
  shift 2
  case $cmd in
    start)
      local objectstore=memstore
      for a in "$@"; do
        case $a in
          --objectstore=memstore | --objectstore=bluestore) objectstore=${a#--objectstore=} ;;
          *) die "unknown option $a" ;;
        esac
      done
      need_tools
      [ ! -e "$DIR/env" ] || die "$DIR already holds a cluster; stop it first"
      local t0=$SECONDS
      init_cluster "$objectstore"
      echo "ceph-dev: cluster up in $((SECONDS - t0)) s ($objectstore); S3 on 127.0.0.1:$RGW1_PORT and 127.0.0.1:$RGW2_PORT; source $DIR/env" >&2
      echo "$DIR/env"
      ;;
    stop)
      [ -d "$DIR" ] || exit 0
      [ -f "$DIR/ceph.conf" ] || die "$DIR does not look like a ceph-dev cluster; not touching it"
      stop_daemons
      rm -rf "$DIR"
      ;;
    restart-rgw)
      local n=${1:-}
      [[ $n == 1 || $n == 2 ]] || die "restart-rgw needs a gateway number, 1 or 2"
      load_env
      local port_var=FERRY_CEPH_RGW${n}_PORT
      start_rgw "$n" "${!port_var}"
      wait_for "radosgw $n" s3_ready "${!port_var}"
      ;;
    add-rgw)
      # A gateway of its own for a fault test to kill, leaving 1 and 2 to
      # the tests that share the cluster.
      local n=${1:-} tls=${2:-}
      [[ $n =~ ^[0-9]+$ ]] && ((n >= 3 && n <= 99)) || die "add-rgw needs a gateway number, 3-99"
      load_env
      ceph -c "$CONF" auth get-or-create "client.rgw.$n" mon 'allow rw' osd 'allow rwx' >>"$DIR/keyring" 2>/dev/null
      local port
      port=$(free_port)
      if [ -n "$tls" ]; then
        [[ $tls == --tls=*,* ]] || die "add-rgw: expected --tls=CERT,KEY, got $tls"
        local files=${tls#--tls=}
        local cert key
        cert=$(realpath "${files%%,*}") key=$(realpath "${files#*,}")
        [ -f "$cert" ] && [ -f "$key" ] || die "add-rgw: no certificate $cert or key $key"
        start_rgw "$n" "$port" "beast ssl_endpoint=127.0.0.1:$port ssl_certificate=$cert ssl_private_key=$key"
        wait_for "radosgw $n (TLS)" s3_ready "$port" https
        echo "https://127.0.0.1:$port"
      else
        start_rgw "$n" "$port"
        wait_for "radosgw $n" s3_ready "$port"
        echo "http://127.0.0.1:$port"
      fi
      ;;
    add-user)
      # A user of its own for a test of per-host credentials.
      local uid=${1:-}
      [[ $uid =~ ^[a-z0-9-]+$ ]] || die "add-user needs a user id of [a-z0-9-]"
      load_env
      local access secret
      access=$(head -c 15 /dev/urandom | base32 | tr -d =)
      secret=$(head -c 30 /dev/urandom | base64 | tr -d '=+/')
      radosgw-admin -c "$CONF" user create --uid="$uid" --display-name="$uid" --access-key="$access" \
        --secret-key="$secret" >/dev/null 2>&1 || die "radosgw-admin user create $uid failed"
      echo "$access $secret"
      ;;
    *) die "unknown command $cmd (start, stop, restart-rgw, add-rgw, add-user)" ;;
  esac
}

main "$@"
