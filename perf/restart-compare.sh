#!/usr/bin/env bash
# Issue 5's restart comparison: the time from starting the process to serving a read, for etcd 3.4
# and for keel's MVCC store, on the same data volume (1M keys, ~16 revisions each, 64-byte values).
#   perf/restart-compare.sh [workdir]      (default /tmp/keel-restart; needs ~10 GB free)
# etcd is loaded with its own tools/benchmark (txn-put, 64 puts per txn; ../shared/tools/
# etcd-benchmark builds it), keel with engine/examples/mvcc_restart.rs. Page caches are dropped
# before each cold restart (root only). Takes 15-40 minutes on a 2-core machine.
# Status: the 2026-11-25 numbers (perf/results-restart-2026-11-25.md) came from these steps run by
# hand; this script assembles them and has not yet been run end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/tmp/keel-restart}
KEYS=${KEEL_RESTART_KEYS:-1000000}
ROUNDS=${KEEL_RESTART_ROUNDS:-16}
mkdir -p "$W"
BENCH=$(../shared/tools/etcd-benchmark)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CP=$(port); PP=$(port)
start_etcd() {
  etcd --name rc --data-dir "$W/etcd-data" --listen-client-urls "http://127.0.0.1:$CP" \
    --advertise-client-urls "http://127.0.0.1:$CP" --listen-peer-urls "http://127.0.0.1:$PP" \
    --initial-advertise-peer-urls "http://127.0.0.1:$PP" --initial-cluster "rc=http://127.0.0.1:$PP" \
    --quota-backend-bytes=17179869184 >>"$W/etcd.log" 2>&1 &
  echo $! >"$W/etcd.pid"
}
wait_read() {
  until ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:$CP" --command-timeout=1s get probe >/dev/null 2>&1; do sleep 0.02; done
}
stop_etcd() { local p; p=$(cat "$W/etcd.pid"); kill "$p"; while kill -0 "$p" 2>/dev/null; do sleep 0.05; done; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }

rm -rf "$W/etcd-data" "$W/keel"
start_etcd; wait_read
TXNS=$((KEYS * ROUNDS / 64))
"$BENCH" --endpoints="127.0.0.1:$CP" --conns=20 --clients=100 txn-put --key-size=8 --val-size=64 \
  --total="$TXNS" --key-space-size="$KEYS" --txn-ops=64 >"$W/etcd-load.log" 2>&1
ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:$CP" endpoint status -w table
stop_etcd; drop_caches
t0=$(date +%s.%N); start_etcd; wait_read; t1=$(date +%s.%N)
echo "etcd cold restart to first read: $(echo "$t1 - $t0" | bc) s"
stop_etcd
t0=$(date +%s.%N); start_etcd; wait_read; t1=$(date +%s.%N)
echo "etcd warm restart to first read: $(echo "$t1 - $t0" | bc) s"
stop_etcd

cargo build --release -p keel-engine --example mvcc_restart
./target/release/examples/mvcc_restart load "$W/keel" "$KEYS" "$ROUNDS" 64
drop_caches
echo -n "keel cold restart: "; ./target/release/examples/mvcc_restart open "$W/keel"
echo -n "keel warm restart: "; ./target/release/examples/mvcc_restart open "$W/keel"
