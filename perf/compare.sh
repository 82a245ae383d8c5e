#!/usr/bin/env bash
# Issue 9's one-command comparison: keel against etcd 3.4, same load generator (keel-bench,
# --target etcd over gRPC, --target keel over keel's protocol), same machine, same flags.
#
#   perf/compare.sh [workdir]     (default workdir: a fresh mktemp -d under /tmp)
#
# For each cluster size (single member, 3 members on loopback), workload (put, range
# linearizable, range serializable, txn-put, watch latency) and load (conns x clients), it
# calibrates --total so that one run lasts about SECS seconds (a short run on a fresh cluster,
# per server), then runs etcd and keel alternately, A B A B, ROUNDS rounds, each run on freshly
# started servers with fresh data dirs on free loopback ports. Around each run it reads the
# servers' CPU seconds (utime + stime, summed over the members) and, after it, their peak RSS
# (VmHWM, the largest member) from /proc. perf/floor.rs measures the machine's floor for a
# single-client put (loopback TCP round trip, durable 4 KiB write) before and after the matrix.
# perf/report.py then writes perf/results/<NAME>.md (goals and verdicts, medians, raw rows),
# <NAME>-runs.csv and the plots <NAME>-throughput.svg and <NAME>-p99.svg. An existing
# <NAME>.md is never overwritten: the name gets a suffix (-2, -3, ...).
#
# Env knobs (defaults in brackets):
#   ROUNDS [3]        runs per server per case (A B A B ...)
#   SECS [5]          target length of one run, seconds
#   SIZES [single three]
#   CASES [put range-l range-s txn-put watch-latency]
#   LOADS [1x1 10x100 100x1000]  conns x clients (100x1000: the issue's "where the machine
#                     allows"; it runs on the 2-CPU development VM); HEAVY=0 drops 100x1000
#   WATCH_RATE [100]  puts per second in watch-latency (its --total is WATCH_RATE * SECS)
#   NAME [date -u +%F]  report name under perf/results/ (e.g. NAME=smoke-$(date -u +%F))
#   RESULTS [perf/results]  where the report goes
#   READY_TIMEOUT [30] seconds to wait for a cluster to serve
#   ETCD_ARGS, KEEL_ARGS [none]  extra flags for every etcd / keel member (e.g. KEEL_ARGS=--cores=…)
#   KEEL_SPREAD [1]   1: keel member i gets --cores log=c,apply=c,client=c with c = i mod CPUs
#                     (several members on one machine, as tuning.md tells an operator to place
#                     them; `auto` would pin every member to the first CPU with 1-2 CPUs, while
#                     etcd's members use every CPU); 0: every member on `auto`
#   ETCD, ETCDCTL [etcd, etcdctl]; KEEL, KEEL_BENCH, KEELCTL [$CARGO_TARGET_DIR or target/release/…,
#                     built with cargo when missing]
# Smoke run: SIZES="single three" CASES="put range-l" ROUNDS=1 SECS=2 NAME=smoke-$(date -u +%F)
# Needs python3 (free ports, report). Every server is stopped by its PID on exit, failure or
# interrupt; the workdir keeps each run's JSON, server logs and the raw rows (runs.tsv).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

W=${1:-$(mktemp -d /tmp/keel-compare.XXXXXX)}
mkdir -p "$W"
W=$(cd "$W" && pwd)
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-5}
SIZES=${SIZES:-single three}
CASES=${CASES:-put range-l range-s txn-put watch-latency}
LOADS=${LOADS:-1x1 10x100 100x1000}
if [[ ${HEAVY:-1} == 0 ]]; then LOADS=$(echo " $LOADS " | sed 's/ 100x1000 / /g' | xargs); fi
WATCH_RATE=${WATCH_RATE:-100}
NAME=${NAME:-$(date -u +%F)}
RESULTS=${RESULTS:-perf/results}
READY_TIMEOUT=${READY_TIMEOUT:-30}
read -ra ETCD_EXTRA <<<"${ETCD_ARGS:-}"
read -ra KEEL_EXTRA <<<"${KEEL_ARGS:-}"
ETCD=${ETCD:-etcd}
ETCDCTL=${ETCDCTL:-etcdctl}
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
KEEL=${KEEL:-$BIN/keel}
KEEL_BENCH=${KEEL_BENCH:-$BIN/keel-bench}
KEELCTL=${KEELCTL:-$BIN/keelctl}
KEY_SIZE=8
VAL_SIZE=256

for s in $SIZES; do [[ $s == single || $s == three ]] || { echo "SIZES: single and/or three, not $s" >&2; exit 2; }; done
for c in $CASES; do
  case $c in put | range-l | range-s | txn-put | watch-latency) ;; *) echo "unknown case $c" >&2; exit 2 ;; esac
done
for l in $LOADS; do [[ $l =~ ^[0-9]+x[0-9]+$ ]] || { echo "LOADS: CONNSxCLIENTS, not $l" >&2; exit 2; }; done

if [[ ! -x $KEEL || ! -x $KEEL_BENCH || ! -x $KEELCTL ]]; then
  cargo build --release -p keel-server --bin keel -p keel-bench --bin keel-bench \
    -p keel-client --bin keelctl >&2
fi
command -v "$ETCD" >/dev/null || { echo "etcd not found ($ETCD)" >&2; exit 1; }
command -v "$ETCDCTL" >/dev/null || { echo "etcdctl not found ($ETCDCTL)" >&2; exit 1; }
rustc -O --edition 2021 perf/floor.rs -o "$W/floor"

log() { echo "[$(date -u +%T)] $*" >&2; }

# ---- servers ---------------------------------------------------------------------------------
PIDS=() # the running cluster's members (one cluster at a time; stopped on exit)
EPS=()  # their client endpoints, host:port

# N distinct free loopback ports (all sockets held until every port is chosen).
ports() {
  python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))' "$1"
}

alive() { # pid: running (a zombie counts as gone)
  local s
  # (read, not $(<file): under set -e a failed $(<file) ends bash 5.2, and the process may be
  # reaped between any check and the read)
  { read -r s <"/proc/$1/stat"; } 2>/dev/null || return 1
  s=${s##*) }
  [[ ${s:0:1} != Z ]]
}

stop_pid() { # SIGTERM, up to 15 s for a clean exit, then SIGKILL
  local pid=$1 i
  alive "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    alive "$pid" || break
    sleep 0.05
  done
  if alive "$pid"; then
    log "pid $pid ignored SIGTERM for 15 s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

stop_cluster() {
  local p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  PIDS=()
  EPS=()
}

cleanup() { stop_cluster; }
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ctl() { # target endpoint args...: one client command with short timeouts
  local t=$1 ep=$2
  shift 2
  if [[ $t == etcd ]]; then
    ETCDCTL_API=3 timeout 10 "$ETCDCTL" --endpoints="$ep" --dial-timeout=1s --command-timeout=3s "$@"
  else
    timeout 10 "$KEELCTL" --endpoints="$ep" --dial-timeout=1s --command-timeout=3s "$@"
  fi
}

# start_cluster target members dir: fresh data dirs under dir, free ports; returns once a put
# through every member has succeeded (bounded by READY_TIMEOUT), else fails.
start_cluster() {
  local t=$1 n=$2 dir=$3 i
  rm -rf "$dir"
  mkdir -p "$dir"
  local -a pp
  read -ra pp <<<"$(ports $((2 * n)))"
  local cluster="" bin
  local -a extra
  for ((i = 0; i < n; i++)); do
    cluster+="${cluster:+,}m$i=http://127.0.0.1:${pp[2 * i + 1]}"
  done
  if [[ $t == etcd ]]; then
    bin=$ETCD
    extra=("${ETCD_EXTRA[@]}")
  else
    bin=$KEEL
    extra=("${KEEL_EXTRA[@]}")
  fi
  for ((i = 0; i < n; i++)); do
    local cp=${pp[2 * i]} peer=http://127.0.0.1:${pp[2 * i + 1]}
    local -a own=()
    if [[ $t == keel && ${KEEL_SPREAD:-1} == 1 ]]; then
      local c=$((i % $(nproc)))
      own=(--cores "log=$c,apply=$c,client=$c")
    fi
    "$bin" --name "m$i" --data-dir "$dir/m$i" "${own[@]}" \
      --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
      --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
      --initial-cluster "$cluster" --initial-cluster-state new \
      --initial-cluster-token keel-compare "${extra[@]}" >"$dir/m$i.log" 2>&1 &
    PIDS+=($!)
    EPS+=("127.0.0.1:$cp")
  done
  local deadline=$((SECONDS + READY_TIMEOUT)) ep p
  for ep in "${EPS[@]}"; do
    until ctl "$t" "$ep" put __ready x >/dev/null 2>&1; do
      for p in "${PIDS[@]}"; do
        if ! alive "$p"; then
          log "$t member (pid $p) exited during start-up; logs in $dir"
          tail -n 20 "$dir"/m*.log >&2
          return 1
        fi
      done
      if ((SECONDS >= deadline)); then
        log "$t ($n members) did not serve a put through $ep within ${READY_TIMEOUT}s; logs in $dir"
        return 1
      fi
      sleep 0.1
    done
  done
}

cpu_ticks() { # summed utime + stime of the running members, in clock ticks
  local p s sum=0
  local -a f
  for p in "${PIDS[@]}"; do
    read -r s <"/proc/$p/stat"
    s=${s##*) }
    read -ra f <<<"$s"
    sum=$((sum + f[11] + f[12]))
  done
  echo "$sum"
}

peak_rss_kb() { # the largest VmHWM among the running members
  local p v max=0
  for p in "${PIDS[@]}"; do
    v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status")
    ((v > max)) && max=$v
  done
  echo "$max"
}

TICK=$(getconf CLK_TCK)

# ---- workloads -------------------------------------------------------------------------------
bench_args() { # case total -> keel-bench subcommand and flags
  case $1 in
    put) echo "put --key-size=$KEY_SIZE --val-size=$VAL_SIZE --total=$2" ;;
    range-l) echo "range rangekey --consistency=l --total=$2" ;;
    range-s) echo "range rangekey --consistency=s --total=$2" ;;
    txn-put) echo "txn-put --key-size=$KEY_SIZE --val-size=$VAL_SIZE --total=$2" ;;
    watch-latency) echo "watch-latency --key-size=$KEY_SIZE --val-size=$VAL_SIZE --put-rate=$WATCH_RATE --total=$2" ;;
  esac
}

# The value under "rangekey": 256 printable bytes (192 random bytes in base64).
RANGE_VALUE=$(head -c 192 /dev/urandom | base64 -w0)

# one_run target size case conns clients total out-stem: a run on a fresh cluster; writes
# out-stem.json (keel-bench --json) and out-stem.meta (server CPU s, peak RSS kB, client CPU s,
# wall s).
one_run() {
  local t=$1 size=$2 c=$3 conns=$4 clients=$5 total=$6 stem=$7 n=1
  [[ $size == three ]] && n=3
  start_cluster "$t" "$n" "$W/data" || return 1
  if [[ $c == range-* ]]; then
    ctl "$t" "${EPS[0]}" put rangekey "$RANGE_VALUE" >/dev/null
  fi
  local -a args
  read -ra args <<<"$(bench_args "$c" "$total")"
  local eps
  eps=$(IFS=,; echo "${EPS[*]}")
  local c0 c1 t0 t1 rc=0 p
  c0=$(cpu_ticks)
  t0=$(date +%s.%N)
  local TIMEFORMAT='%U %S'
  { time timeout $((SECS * 30 + 300)) "$KEEL_BENCH" --target="$t" --endpoints="$eps" \
      --conns="$conns" --clients="$clients" --json "${args[@]}" >"$stem.json" 2>"$stem.err"; } \
    2>"$stem.time" || rc=$?
  t1=$(date +%s.%N)
  for p in "${PIDS[@]}"; do
    if ! alive "$p"; then
      log "a $t member (pid $p) exited during the run ($size $c $conns/$clients); logs in $W/data"
      return 1
    fi
  done
  c1=$(cpu_ticks)
  local rss
  rss=$(peak_rss_kb)
  stop_cluster
  if ((rc != 0)); then
    log "keel-bench failed (rc $rc) on $t $size $c $conns/$clients: $(tail -c 400 "$stem.err")"
    return 1
  fi
  local client_cpu
  client_cpu=$(awk '{printf "%.2f", $1 + $2}' "$stem.time")
  echo "$(awk -v a="$c0" -v b="$c1" -v k="$TICK" 'BEGIN {printf "%.2f", (b - a) / k}') $rss $client_cpu $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f", b - a}')" >"$stem.meta"
}

rps_of() { python3 "$ROOT/perf/report.py" rps "$1"; }

# ---- the matrix ------------------------------------------------------------------------------
START=$(date -u +%FT%TZ)
START_S=$SECONDS
{
  echo "start=$START"
  echo "nproc=$(nproc)"
  echo "kernel=$(uname -sr)"
  echo "cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "fs=$(df -T "$W" | awk 'NR == 2 {print $2 " on " $1}')"
  echo "loadavg_before=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "commit=$(git rev-parse --short=12 HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo ' (working tree modified)')"
  echo "branch=$(git rev-parse --abbrev-ref HEAD)"
  echo "etcd=$("$ETCD" --version | awk '/etcd Version/ {print $3}')"
  echo "workdir=$W"
  echo "rounds=$ROUNDS"
  echo "secs=$SECS"
  echo "sizes=$SIZES"
  echo "cases=$CASES"
  echo "loads=$LOADS"
  echo "watch_rate=$WATCH_RATE"
  echo "etcd_args=${ETCD_ARGS:-}"
  echo "keel_args=${KEEL_ARGS:-}"
  echo "keel_spread=${KEEL_SPREAD:-1}"
} >"$W/machine.env"
log "workdir $W; measuring the floor (loopback round trip, durable 4 KiB write)"
"$W/floor" "$W" >"$W/floor-before.json"

RUNS=$W/runs.tsv
printf 'target\tsize\tcase\tconns\tclients\tround\ttotal\tjson\tserver_cpu_s\tpeak_rss_kb\tclient_cpu_s\twall_s\n' >"$RUNS"
mkdir -p "$W/runs"

for size in $SIZES; do
  for c in $CASES; do
    for l in $LOADS; do
      conns=${l%x*}
      clients=${l#*x}
      declare -A TOTAL=()
      for t in etcd keel; do
        if [[ $c == watch-latency ]]; then
          TOTAL[$t]=$((WATCH_RATE * SECS))
          continue
        fi
        # Calibration: a short run on a fresh cluster; then ~SECS seconds at that rate.
        stem=$W/runs/calib-$t-$size-$c-$l
        one_run "$t" "$size" "$c" "$conns" "$clients" $((clients * 50 + 1000)) "$stem"
        TOTAL[$t]=$(awk -v r="$(rps_of "$stem.json")" -v s="$SECS" -v k="$clients" \
          'BEGIN {t = int(r * s); m = (k * 10 > 1000 ? k * 10 : 1000); print (t < m ? m : t)}')
        log "calibrated $t $size $c $l: --total=${TOTAL[$t]}"
      done
      for ((r = 1; r <= ROUNDS; r++)); do
        for t in etcd keel; do
          stem=$W/runs/$t-$size-$c-$l-r$r
          one_run "$t" "$size" "$c" "$conns" "$clients" "${TOTAL[$t]}" "$stem"
          read -r cpu rss ccpu wall <"$stem.meta"
          printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$size" "$c" "$conns" \
            "$clients" "$r" "${TOTAL[$t]}" "runs/$(basename "$stem").json" "$cpu" "$rss" "$ccpu" \
            "$wall" >>"$RUNS"
          log "$t $size $c $l round $r: $(rps_of "$stem.json") req/s, server CPU ${cpu}s, peak RSS ${rss} kB"
        done
      done
      unset TOTAL
    done
  done
done

"$W/floor" "$W" >"$W/floor-after.json"
{
  echo "loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "end=$(date -u +%FT%TZ)"
  echo "duration_s=$((SECONDS - START_S))"
} >>"$W/machine.env"
rm -rf "$W/data"

python3 perf/report.py report "$W" "$RESULTS" "$NAME"
