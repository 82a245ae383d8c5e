#!/usr/bin/env bash
# Issue 9's honesty check: keel-bench against etcd's own benchmark tool, same workload, same etcd.
#   perf/etcd-bench-compare.sh [workdir]        (default: a fresh mktemp -d; prints markdown)
# Starts one etcd (free loopback ports, data in the workdir), then for each case runs etcd's tool
# and keel-bench alternately (A B B A A B: ROUNDS rounds each), and prints a table of requests/s:
# the median of each tool's rounds, the ratio keel-bench / etcd tool (the goal is >= 0.90), the
# ratio of each adjacent A/B pair (less exposed to drifting machine load) and each tool's client
# CPU time per request (user + sys, from bash's `time`).
# Cases: put 1 conn/1 client and 10 conns/100 clients (8-byte keys, 256-byte values), range
# linearizable and serializable at 10/100 (one 8-byte key holding 256 bytes). Each case's --total
# is calibrated from a short run of etcd's tool so that one run lasts about SECS seconds.
# Env: ETCD_BENCH (etcd's tool; default ~/.cache/etcd-benchmark/bin/benchmark), KEEL_BENCH
# (default target/release/keel-bench, built here if missing), ETCD (default etcd), ROUNDS (3),
# SECS (6), CASES (default: all four: put-1x1 put-10x100 range-l-10x100 range-s-10x100).
# Needs curl and python3 (free ports).
# etcd is stopped by its PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-$(mktemp -d /tmp/keel-bench-compare.XXXXXX)}
mkdir -p "$W"
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-6}
CASES=${CASES:-put-1x1 put-10x100 range-l-10x100 range-s-10x100}
ETCD=${ETCD:-etcd}
ETCD_BENCH=${ETCD_BENCH:-$HOME/.cache/etcd-benchmark/bin/benchmark}
KEEL_BENCH=${KEEL_BENCH:-target/release/keel-bench}
if [[ ! -x $KEEL_BENCH ]]; then
  cargo build --release -p keel-bench --bin keel-bench >&2
fi
[[ -x $ETCD_BENCH ]] || { echo "etcd's benchmark tool not found at $ETCD_BENCH" >&2; exit 1; }

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CP=$(port); PP=$(port)
EP="127.0.0.1:$CP"
"$ETCD" --name cmp --data-dir "$W/etcd-data" --listen-client-urls "http://$EP" \
  --advertise-client-urls "http://$EP" --listen-peer-urls "http://127.0.0.1:$PP" \
  --initial-advertise-peer-urls "http://127.0.0.1:$PP" --initial-cluster "cmp=http://127.0.0.1:$PP" \
  >"$W/etcd.log" 2>&1 &
ETCD_PID=$!
stop_etcd() {
  if kill -0 "$ETCD_PID" 2>/dev/null; then
    kill "$ETCD_PID"
    while kill -0 "$ETCD_PID" 2>/dev/null; do sleep 0.05; done
  fi
}
trap stop_etcd EXIT
# Wait until etcd serves a write (bounded: 30 s); etcd's JSON gateway (/v3/kv/put, base64 fields)
# keeps etcdctl out of the script's needs.
kv_put() { curl -sf "http://$EP/v3/kv/put" -d "{\"key\":\"$(printf %s "$1" | base64 -w0)\",\"value\":\"$2\"}" >/dev/null; }
for _ in $(seq 600); do
  kv_put probe eA== && break
  sleep 0.05
done
kv_put probe eA==
# The range key: 8 bytes ("rangekey"), 256-byte value.
kv_put rangekey "$(head -c 256 /dev/urandom | base64 -w0)"

rps() { awk '/Requests\/sec/ {print $2}' "$1"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "# keel-bench vs etcd's benchmark tool ($(date -u +%F))"
echo
echo "etcd $("$ETCD" --version | awk '/etcd Version/ {print $3}'), one member on 127.0.0.1, data in $W."
echo "Machine: $(nproc) CPUs, load average at start: $(cut -d' ' -f1-3 /proc/loadavg)."
echo "Each case: etcd's tool (A) and keel-bench (B) alternately (A B, B A, A B, ...), $ROUNDS rounds, ~${SECS} s per run."
echo

TIMEFORMAT='%U %S'
declare -a ROWS
one() { # tool, output file, conns, clients, total, subcommand and flags
  local tool=$1 out=$2 conns=$3 clients=$4 total=$5; shift 5
  { time "$tool" --endpoints="$EP" --conns="$conns" --clients="$clients" "$@" --total="$total" \
      >"$out" 2>&1; } 2>"$out.cpu"
}
run_case() { # name, conns, clients, subcommand and flags (shared by both tools)
  local name=$1 conns=$2 clients=$3; shift 3
  local -a args=("$@")
  # Calibrate --total from a short run of etcd's tool.
  "$ETCD_BENCH" --endpoints="$EP" --conns="$conns" --clients="$clients" "${args[@]}" \
    --total=$((clients * 20 + 500)) >"$W/calib.txt" 2>&1
  local total
  total=$(awk -v r="$(rps "$W/calib.txt")" -v s="$SECS" 'BEGIN {t=int(r*s); print (t<1000?1000:t)}')
  local -a a=() b=() ratios=() ca=() cb=()
  for r in $(seq "$ROUNDS"); do
    local fa="$W/$name-etcd-$r.txt" fb="$W/$name-keel-$r.txt"
    # Client CPU (user + sys seconds) of each tool, from bash's time builtin. Odd rounds run etcd's
    # tool first, even rounds keel-bench first (A B B A ...), so neither always meets the larger
    # database or the warmer server.
    if ((r % 2)); then
      one "$ETCD_BENCH" "$fa" "$conns" "$clients" "$total" "${args[@]}"
      one "$KEEL_BENCH" "$fb" "$conns" "$clients" "$total" "${args[@]}"
    else
      one "$KEEL_BENCH" "$fb" "$conns" "$clients" "$total" "${args[@]}"
      one "$ETCD_BENCH" "$fa" "$conns" "$clients" "$total" "${args[@]}"
    fi
    a+=("$(rps "$fa")"); b+=("$(rps "$fb")")
    ratios+=("$(awk -v x="$(rps "$fb")" -v y="$(rps "$fa")" 'BEGIN {printf "%.3f", x/y}')")
    ca+=("$(awk -v t="$total" '{printf "%.1f", ($1+$2)*1e6/t}' "$fa.cpu")")
    cb+=("$(awk -v t="$total" '{printf "%.1f", ($1+$2)*1e6/t}' "$fb.cpu")")
    echo "  $name round $r: etcd tool $(rps "$fa") req/s, keel-bench $(rps "$fb") req/s" >&2
  done
  local ma mb
  ma=$(median "${a[@]}"); mb=$(median "${b[@]}")
  ROWS+=("| $name | $conns/$clients | $total | ${a[*]} | ${b[*]} | $ma | $mb | $(awk -v x="$mb" -v y="$ma" 'BEGIN {printf "%.2f", x/y}') | ${ratios[*]} | $(median "${ratios[@]}") | $(median "${ca[@]}") | $(median "${cb[@]}") |")
}

want() { [[ " $CASES " == *" $1 "* ]]; }
if want put-1x1; then run_case put-1x1 1 1 put --key-size=8 --val-size=256; fi
if want put-10x100; then run_case put-10x100 10 100 put --key-size=8 --val-size=256; fi
if want range-l-10x100; then run_case range-l-10x100 10 100 range rangekey --consistency=l; fi
if want range-s-10x100; then run_case range-s-10x100 10 100 range rangekey --consistency=s; fi

echo "| case | conns/clients | total | etcd tool req/s (rounds) | keel-bench req/s (rounds) | etcd tool median | keel-bench median | ratio of medians | paired ratios (B/A per round) | median paired ratio | etcd tool client CPU µs/req | keel-bench client CPU µs/req |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "Load average at end: $(cut -d' ' -f1-3 /proc/loadavg). Raw outputs: $W."
