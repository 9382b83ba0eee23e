#!/usr/bin/env bash
# ringmaster beside HAProxy, the same work, alternately in one run (A B A B ...), one core each.
#
#   benches/compare/run.sh [--quick] [--reps N] [--secs S] [--modes a,b] [--tests a,b]
#                          [--idle-conns N] [--baseline BIN] [--perf] [--record] [--dry-run]
#
# --baseline BIN adds another ringmaster binary (e.g. an earlier commit's, built in a git
# worktree) as a third proxy alternating with the others, so a change is measured against what
# it replaces in the same run. --perf counts, with `perf stat` on the proxy during keep-alive
# runs, what each request costs it: syscalls (io_uring_enter, epoll_wait, recv/send), io_uring
# operations submitted and the ones that had to arm a poll, task-work runs, context switches,
# (summary: "Per keep-alive request", with the proxy's user and system CPU time per request).
# --record samples the proxy during keep-alive runs (`perf record`, no call graphs) into
# bench-out/<date>/perf-<mode>-<proxy>-<rep>.data, for `perf report -i`.
#
# Modes: passthrough (HAProxy `mode tcp`, backend HTTPS), offload (`mode tcp`, `ssl` on bind,
# backend HTTP), reencrypt (`mode tcp`, `ssl` on bind and server, verify required; plus HAProxy
# `mode http` with `http-reuse never` as a third column). Tests: keepalive (wrk, 1 KiB GET,
# req/s and p99), bulk (wrk, 1 MiB GET, MiB/s), handshake (hsload: full TLS handshakes, one
# request per new connection), idle (RSS growth of the proxy per idle TLS connection).
#
# The proxy runs under `taskset -c 0` with one worker/thread; nginx (the backend) and the load
# generator under `taskset -c 1`. For every run it records the proxy's CPU (utime+stime from
# /proc), the load generator's (/usr/bin/time), nginx's worker (/proc) and the whole machine's
# (every CPU's busy time in /proc/stat: user, system, irq, softirq, kernel threads), and writes
# bench-out/<date>/{runs.tsv,summary.md,chart.svg}. See benches/compare/README.md.
#
# Installs what is missing with apt (as root only), builds ringmaster and hsload (release).
# Stops every process it started, by PID. Everything listens on 127.0.0.1; the clients of the
# handshake and idle tests connect from 127.0.0.2-127.0.0.6.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

ALL_MODES=(passthrough offload reencrypt)
ALL_TESTS=(keepalive bulk handshake idle)

usage() {
  cat >&2 <<'EOF'
usage: benches/compare/run.sh [options]
  --quick            about a minute: 1 rep, 2 s per run, 500 idle connections
  --reps N           repetitions of each A/B pair (default 3)
  --secs S           seconds per load run (default 6)
  --modes a,b        of: passthrough,offload,reencrypt (default all)
  --tests a,b        of: keepalive,bulk,handshake,idle (default all)
  --idle-conns N     idle TLS connections for the memory test (default 5000)
  --baseline BIN     also run this ringmaster binary (same configs), e.g. the previous release
  --perf             count syscalls and io_uring operations per keep-alive request (perf stat)
  --record           sample the proxy during keep-alive runs (perf record) for perf report
  --dry-run          print the plan, one run per line, and exit without installing or starting anything
  -h, --help         this text
EOF
}

is_uint() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
in_list() { local x=$1; shift; local y; for y in "$@"; do [ "$x" = "$y" ] && return 0; done; return 1; }

REPS= SECS= IDLE_N= QUICK=0 DRY=0 PERF=0 RECORD=0 MODES_ARG= TESTS_ARG= BASELINE=
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1; shift ;;
    --perf) PERF=1; shift ;;
    --record) RECORD=1; shift ;;
    --dry-run) DRY=1; shift ;;
    --reps|--secs|--modes|--tests|--idle-conns|--baseline)
      [ $# -ge 2 ] || { echo "$1 needs a value" >&2; usage; exit 2; }
      case "$1" in
        --reps) REPS=$2 ;;
        --secs) SECS=$2 ;;
        --modes) MODES_ARG=$2 ;;
        --tests) TESTS_ARG=$2 ;;
        --idle-conns) IDLE_N=$2 ;;
        --baseline) BASELINE=$2 ;;
      esac
      shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage; exit 2 ;;
  esac
done
if [ "$QUICK" = 1 ]; then
  : "${REPS:=1}" "${SECS:=2}" "${IDLE_N:=500}"
else
  : "${REPS:=3}" "${SECS:=6}" "${IDLE_N:=5000}"
fi
is_uint "$REPS" || { echo "--reps: a positive integer, not '$REPS'" >&2; usage; exit 2; }
is_uint "$SECS" || { echo "--secs: a positive integer, not '$SECS'" >&2; usage; exit 2; }
is_uint "$IDLE_N" || { echo "--idle-conns: a positive integer, not '$IDLE_N'" >&2; usage; exit 2; }
# Each idle connection costs the proxy two descriptors; HAProxy maxconn is 9000 (18,000 fds).
[ "$IDLE_N" -le 8000 ] || { echo "--idle-conns: at most 8000 (file descriptors)" >&2; usage; exit 2; }
MODES=() TESTS=()
IFS=, read -r -a MODES <<< "${MODES_ARG:-$(IFS=,; echo "${ALL_MODES[*]}")}"
IFS=, read -r -a TESTS <<< "${TESTS_ARG:-$(IFS=,; echo "${ALL_TESTS[*]}")}"
for m in "${MODES[@]}"; do in_list "$m" "${ALL_MODES[@]}" || { echo "unknown mode: $m" >&2; usage; exit 2; }; done
for t in "${TESTS[@]}"; do in_list "$t" "${ALL_TESTS[@]}" || { echo "unknown test: $t" >&2; usage; exit 2; }; done
[ ${#MODES[@]} -gt 0 ] && [ ${#TESTS[@]} -gt 0 ] || { usage; exit 2; }
if [ -n "$BASELINE" ]; then
  [ -x "$BASELINE" ] || { echo "--baseline: $BASELINE is not an executable" >&2; exit 2; }
  BASELINE=$(cd "$(dirname "$BASELINE")" && pwd)/$(basename "$BASELINE")
fi

# The proxies compared in a mode, in the order they alternate.
proxies_for() {
  local base=
  [ -n "$BASELINE" ] && base=baseline
  case $1 in
    reencrypt) echo "ringmaster $base haproxy haproxy-http" ;;
    *) echo "ringmaster $base haproxy" ;;
  esac
}

# The plan: for each mode and test, the proxies alternate within each repetition (A B A B ...),
# so the runs of one pair are next to each other in time.
plan() {
  local mode test rep proxy
  for mode in "${MODES[@]}"; do
    for test in "${TESTS[@]}"; do
      for rep in $(seq "$REPS"); do
        for proxy in $(proxies_for "$mode"); do
          echo "rep=$rep mode=$mode test=$test proxy=$proxy"
        done
      done
    done
  done
}

if [ "$DRY" = 1 ]; then
  echo "# reps=$REPS secs=$SECS idle_conns=$IDLE_N quick=$QUICK runs=$(plan | wc -l)"
  plan
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# Tools: install what is missing (apt, root only).
need=()
for tool in haproxy nginx wrk h2load gnuplot bc curl openssl python3 taskset timeout; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || need+=("$tool")
done
[ -x /usr/bin/time ] || need+=(time)
[ "$PERF$RECORD" != 00 ] && ! command -v perf >/dev/null && need+=(perf)
if [ ${#need[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${need[@]}" | sed 's/^h2load$/nghttp2-client/; s/^nginx$/nginx-light/;
    s/^gnuplot$/gnuplot-nox/; s/^perf$/linux-perf/; s/^python3$/python3-minimal/; s/^taskset$/util-linux/; s/^timeout$/coreutils/' |
    sort -u | tr '\n' ' ')
  if [ "$(id -u)" != 0 ]; then
    echo "missing: ${need[*]}; as root: apt-get install -y $pkgs" >&2
    exit 1
  fi
  echo "installing: $pkgs" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
fi
PATH=$PATH:/usr/sbin
command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }

echo "building ringmaster and hsload (release) ..." >&2
cargo build --release -q --bin ringmaster --example hsload
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/release/ringmaster
HSLOAD=$TARGET/release/examples/hsload

STAMP=$(date +%Y%m%d-%H%M%S)
OUT=$ROOT/bench-out/$STAMP
mkdir -p "$OUT/configs"
W=$(mktemp -d /tmp/rm-compare.XXXXXX)
chmod 755 "$W" # nginx workers run as nobody

PIDS=()
cleanup() {
  local p
  exec 7>&- 2>/dev/null || true
  for p in "${PIDS[@]}"; do
    if kill -0 "$p" 2>/dev/null; then kill "$p" 2>/dev/null || true; fi
  done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

TCK=$(getconf CLK_TCK)
# What --perf counts on the proxy (all its threads) during keep-alive runs.
PERF_EVENTS=raw_syscalls:sys_enter,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_epoll_wait
PERF_EVENTS+=,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,io_uring:io_uring_submit_req
PERF_EVENTS+=,io_uring:io_uring_poll_arm,io_uring:io_uring_task_add,context-switches
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
# utime+stime (all threads) in ticks; the fields after "(comm)" start at field 3.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
# utime and stime apart, in ticks.
cpu_split() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12, $13}'; }
rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }
# "busy total" ticks of one CPU from /proc/stat (no argument: all CPUs together). Busy is user,
# nice, system, irq, softirq and steal: everything but idle and iowait.
cpu_line() { awk -v c="cpu${1:-}" '$1 == c {print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
wait_port() {
  local i
  for i in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || { echo "process $2 exited before listening on $1" >&2; return 1; }
    sleep 0.05
  done
  echo "port $1 never opened" >&2
  return 1
}
stop_pid() {
  local p=$1 i
  kill "$p" 2>/dev/null || true
  for i in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
  kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
  wait "$p" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# One RSA-2048 certificate for both proxies and the backend (Extended Protection needs the same
# one); it is also the CA every verifier trusts (pinned self-signed).
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -addext "basicConstraints=critical,CA:FALSE" \
  -keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null
cat "$W/cert.pem" "$W/key.pem" > "$W/combined.pem"
mkdir -p "$W/www"
head -c 1024 /dev/urandom > "$W/www/1k"
head -c $((64 * 1024)) /dev/urandom > "$W/www/64k"
head -c $((1024 * 1024)) /dev/urandom > "$W/www/1m"
chmod 755 "$W/www" && chmod 644 "$W"/www/*

BACK_TLS=$(free_port) BACK_PLAIN=$(free_port) RM_PORT=$(free_port) HA_PORT=$(free_port) HAH_PORT=$(free_port)
SOURCES=127.0.0.2-127.0.0.6

cat > "$W/nginx.conf" <<NGX
worker_processes 1;
worker_rlimit_nofile 19000;
daemon off;
pid $W/nginx.pid;
error_log $W/nginx.err;
events { worker_connections 18000; }
http {
  access_log off;
  default_type application/octet-stream;
  sendfile on;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache shared:SSL:20m;
  ssl_session_timeout 10m;
  server {
    listen 127.0.0.1:$BACK_TLS ssl backlog=4096;
    listen 127.0.0.1:$BACK_PLAIN backlog=4096;
    ssl_certificate $W/cert.pem;
    ssl_certificate_key $W/key.pem;
    root $W/www;
  }
}
NGX
taskset -c 1 nginx -c "$W/nginx.conf" -p "$W" 2>>"$OUT/nginx.log" &
NGINX=$!
PIDS+=("$NGINX")
wait_port "$BACK_TLS" "$NGINX"
NGINX_WORKER=
for _ in $(seq 100); do
  NGINX_WORKER=$(cat "/proc/$NGINX/task/$NGINX/children" 2>/dev/null | awk '{print $1}')
  [ -n "$NGINX_WORKER" ] && break
  sleep 0.05
done
[ -n "$NGINX_WORKER" ] || { echo "nginx worker not found" >&2; exit 1; }
for path in 1k 64k 1m; do
  code=$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$BACK_TLS/$path")
  [ "$code" = 200 ] || { echo "backend https /$path: HTTP $code" >&2; exit 1; }
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$BACK_PLAIN/$path")
  [ "$code" = 200 ] || { echo "backend http /$path: HTTP $code" >&2; exit 1; }
done

# ringmaster: one worker, one service per mode.
for mode in "${ALL_MODES[@]}"; do
  f=$W/ringmaster-$mode.toml
  {
    echo '[global]'
    echo 'workers = 1'
    echo 'drain_timeout = "1s"'
    echo
    echo '[[service]]'
    echo "name = \"bench-$mode\""
    echo "listen = \"127.0.0.1:$RM_PORT\""
    echo "mode = \"$mode\""
    echo 'idle_timeout = "10m"'
    echo 'backlog = 4096'
    if [ "$mode" != passthrough ]; then
      echo "certificate = \"$W/cert.pem\""
      echo "key = \"$W/key.pem\""
    fi
    if [ "$mode" = reencrypt ]; then
      echo
      echo '[service.backend_tls]'
      echo 'verify = "ca"'
      echo "ca = \"$W/cert.pem\""
      echo 'sni = "localhost"'
    fi
    echo
    echo '[[service.server]]'
    if [ "$mode" = offload ]; then echo "address = \"127.0.0.1:$BACK_PLAIN\""; else echo "address = \"127.0.0.1:$BACK_TLS\""; fi
  } > "$f"
  "$BIN" check -c "$f" > /dev/null || { echo "ringmaster check -c $f failed" >&2; cat "$f" >&2; exit 1; }
done

# HAProxy: nbthread 1; `mode tcp` for the three modes, `mode http` + `http-reuse never` beside
# re-encrypt.
haproxy_cfg() { # mode variant(tcp|http)
  local mode=$1 variant=$2 bind server port=$HA_PORT
  [ "$variant" = http ] && port=$HAH_PORT
  case $mode in
    passthrough) bind=""; server="127.0.0.1:$BACK_TLS" ;;
    offload) bind="ssl crt $W/combined.pem"; server="127.0.0.1:$BACK_PLAIN" ;;
    reencrypt) bind="ssl crt $W/combined.pem"
      server="127.0.0.1:$BACK_TLS ssl verify required ca-file $W/cert.pem sni str(localhost)" ;;
  esac
  cat <<HAC
global
  nbthread 1
  maxconn 9000
  ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
  mode $variant
  maxconn 9000
  timeout connect 3s
  timeout client 10m
  timeout server 10m
$(if [ "$variant" = http ]; then printf '  timeout http-request 10s\n  timeout http-keep-alive 10m'; fi)
frontend fe
  bind 127.0.0.1:$port $bind
  default_backend be
backend be
$(if [ "$variant" = http ]; then echo "  http-reuse never"; fi)
  server s1 $server
HAC
}
for mode in "${ALL_MODES[@]}"; do
  haproxy_cfg "$mode" tcp > "$W/haproxy-$mode.cfg"
  haproxy -c -q -f "$W/haproxy-$mode.cfg" || { echo "haproxy -c $W/haproxy-$mode.cfg failed" >&2; exit 1; }
done
haproxy_cfg reencrypt http > "$W/haproxy-http-reencrypt.cfg"
haproxy -c -q -f "$W/haproxy-http-reencrypt.cfg" || { echo "haproxy -c (mode http) failed" >&2; exit 1; }
cp "$W"/*.toml "$W"/*.cfg "$W/nginx.conf" "$OUT/configs/"

PROXY= PORT=
start_proxy() { # proxy mode
  case $1 in
    ringmaster)
      taskset -c 0 "$BIN" run -c "$W/ringmaster-$2.toml" --log-level warn 2>>"$OUT/ringmaster.log" &
      PROXY=$! PORT=$RM_PORT ;;
    baseline)
      taskset -c 0 "$BASELINE" run -c "$W/ringmaster-$2.toml" --log-level warn 2>>"$OUT/baseline.log" &
      PROXY=$! PORT=$RM_PORT ;;
    haproxy)
      taskset -c 0 haproxy -db -f "$W/haproxy-$2.cfg" 2>>"$OUT/haproxy.log" &
      PROXY=$! PORT=$HA_PORT ;;
    haproxy-http)
      taskset -c 0 haproxy -db -f "$W/haproxy-http-$2.cfg" 2>>"$OUT/haproxy.log" &
      PROXY=$! PORT=$HAH_PORT ;;
  esac
  PIDS+=("$PROXY")
  wait_port "$PORT" "$PROXY"
  sleep 0.2
}

# Runs a command on CPU 1 under /usr/bin/time (bounded by `timeout`); LOAD_CPU gets its user+sys
# seconds.
LOAD_CPU=0
loadgen() { # limit_s cmd...
  local limit=$1 rc=0
  shift
  /usr/bin/time -f "%U %S" -o "$W/time.out" taskset -c 1 timeout "$limit" "$@" || rc=$?
  LOAD_CPU=$(awk '{printf "%.3f", $1 + $2}' "$W/time.out" 2>/dev/null || echo 0)
  return $rc
}
kv() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" "$2" | tail -1; }
to_ms() { awk '{v=$1; if (v ~ /us$/) printf "%.3f", v/1000; else if (v ~ /ms$/) printf "%.3f", v+0; else if (v ~ /s$/) printf "%.3f", v*1000; else print "NaN"}'; }

printf 'rep\tmode\ttest\tproxy\ttool\tfigure\tunit\tcount\terrors\twall_s\tproxy_cpu_s\tload_cpu_s\tbackend_cpu_s\tp99_ms\trss0_kib\trss1_kib\tcpu0_busy\tcpu1_busy\tfull\tresumed\tmachine_cpu_s\tperf\tproxy_user_s\tproxy_sys_s\n' > "$OUT/runs.tsv"

# One run: start the proxy, measure around the load, stop the proxy, append a line to runs.tsv.
run_one() { # rep mode test proxy
  local rep=$1 mode=$2 test=$3 proxy=$4
  local tool figure unit count=0 errors=0 p99=NaN rss0=NaN rss1=NaN full=NaN resumed=NaN secs
  start_proxy "$proxy" "$mode"
  local url="https://127.0.0.1:$PORT"
  local tls_args=(--target "127.0.0.1:$PORT" --ca "$W/cert.pem" --host localhost)
  local p0 n0 c0 c1 t0 t1 p1 n1 d0 d1 m0 m1 s0 s1
  if [ "$test" = idle ]; then
    # Warm-up outside the measurement: session caches, allocator arenas, first connections.
    taskset -c 1 timeout 30 "$HSLOAD" "${tls_args[@]}" -c 4 -d 0.5 --sources "$SOURCES" > /dev/null 2>&1 || true
    sleep 0.5
    rss0=$(rss_kib "$PROXY")
  fi
  p0=$(cpu_ticks "$PROXY"); n0=$(cpu_ticks "$NGINX_WORKER"); c0=$(cpu_line 0); c1=$(cpu_line 1); m0=$(cpu_line); s0=$(cpu_split "$PROXY")
  local perf_pid= perf_counts=- record_pid=
  if [ "$RECORD" = 1 ] && [ "$test" = keepalive ]; then
    perf record -q -F 2999 -o "$OUT/perf-$mode-$proxy-$rep.data" -p "$PROXY" 2>/dev/null &
    record_pid=$!
    PIDS+=("$record_pid")
    sleep 0.3
  fi
  if [ "$PERF" = 1 ] && [ "$test" = keepalive ]; then
    perf stat -x';' -o "$W/perf.out" -e "$PERF_EVENTS" -p "$PROXY" 2>/dev/null &
    perf_pid=$!
    PIDS+=("$perf_pid")
    sleep 0.3
  fi
  t0=$(date +%s.%N)
  LOAD_CPU=0
  case $test in
    keepalive)
      tool="wrk -t1 -c32 --latency /1k"
      loadgen $((SECS + 30)) wrk -t1 -c32 -d"${SECS}s" --latency "$url/1k" > "$W/load.out" 2>&1 || true
      count=$(awk '/requests in/{print $1}' "$W/load.out")
      secs=$(awk '/requests in/{sub(/s,$/, "", $4); print $4}' "$W/load.out")
      p99=$(awk '$1 == "99%" {print $2}' "$W/load.out" | to_ms)
      errors=$(awk '/Socket errors/{gsub(/,/, ""); s += $4 + $6 + $8 + $10} /Non-2xx/{s += $NF} END {print s + 0}' "$W/load.out")
      unit="req/s" ;;
    bulk)
      tool="wrk -t1 -c4 /1m"
      loadgen $((SECS + 30)) wrk -t1 -c4 -d"${SECS}s" "$url/1m" > "$W/load.out" 2>&1 || true
      count=$(awk '/requests in/{print $1}' "$W/load.out")
      secs=$(awk '/requests in/{sub(/s,$/, "", $4); print $4}' "$W/load.out")
      errors=$(awk '/Socket errors/{gsub(/,/, ""); s += $4 + $6 + $8 + $10} /Non-2xx/{s += $NF} END {print s + 0}' "$W/load.out")
      unit="MiB/s" ;;
    handshake)
      tool="hsload -c32 (rustls, resumption off) /1k"
      loadgen $((SECS + 30)) "$HSLOAD" "${tls_args[@]}" -c 32 -d "$SECS" --sources "$SOURCES" --path /1k \
        > "$W/load.out" 2> "$W/load.err" || true
      count=$(kv requests "$W/load.out"); secs=$(kv secs "$W/load.out"); errors=$(kv errors "$W/load.out")
      full=$(kv full "$W/load.out"); resumed=$(kv resumed "$W/load.out")
      unit="handshakes/s" ;;
    idle)
      tool="hsload --idle $IDLE_N (handshake + one keep-alive GET /1k each)"
      rm -f "$W/hold"; mkfifo "$W/hold"
      /usr/bin/time -f "%U %S" -o "$W/time.out" taskset -c 1 "$HSLOAD" "${tls_args[@]}" --idle "$IDLE_N" -c 16 \
        --sources "$SOURCES" --path /1k --hold-max 600 < "$W/hold" > "$W/load.out" 2> "$W/load.err" &
      local hs=$!
      PIDS+=("$hs")
      exec 7>"$W/hold"
      local i
      for i in $(seq 1200); do # up to 120 s for the handshakes
        grep -q '^ready' "$W/load.out" 2>/dev/null && break
        kill -0 "$hs" 2>/dev/null || break
        sleep 0.1
      done
      sleep 1 # let the proxy finish with the last handshakes and requests
      rss1=$(rss_kib "$PROXY")
      count=$(kv open "$W/load.out"); errors=$(kv errors "$W/load.out")
      full=$(kv full "$W/load.out"); resumed=$(kv resumed "$W/load.out")
      exec 7>&-
      wait "$hs" 2>/dev/null || true
      LOAD_CPU=$(awk '{printf "%.3f", $1 + $2}' "$W/time.out" 2>/dev/null || echo 0)
      secs=NaN
      unit="KiB/conn" ;;
  esac
  t1=$(date +%s.%N)
  if [ -n "$record_pid" ]; then
    kill -INT "$record_pid" 2>/dev/null || true
    wait "$record_pid" 2>/dev/null || true
  fi
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    # "event=count,event=count,...": the counts over the whole run, for the summary to divide.
    perf_counts=$(awk -F';' '$1 ~ /^[0-9]+$/ {printf "%s%s=%s", (n++ ? "," : ""), $3, $1}' "$W/perf.out")
    : "${perf_counts:=-}"
  fi
  p1=$(cpu_ticks "$PROXY"); n1=$(cpu_ticks "$NGINX_WORKER"); d0=$(cpu_line 0); d1=$(cpu_line 1); m1=$(cpu_line); s1=$(cpu_split "$PROXY")
  stop_pid "$PROXY"
  [ -s "$W/load.err" ] && sed "s/^/[$mode $test $proxy rep $rep] /" "$W/load.err" | head -5 >> "$OUT/errors.log"
  rm -f "$W/load.err"
  : "${count:=0}" "${errors:=0}"
  local wall; wall=$(echo "$t1 - $t0" | bc -l)
  if [ -z "$secs" ] || [ "$secs" = NaN ]; then secs=$wall; fi
  case $test in
    keepalive|handshake) figure=$(echo "scale=3; $count / $secs" | bc -l) ;;
    bulk) figure=$(echo "scale=3; $count / $secs" | bc -l) ;; # 1 MiB per request
    idle)
      if [ "${count:-0}" -gt 0 ] && [ "$rss0" != NaN ] && [ -n "$rss1" ]; then
        figure=$(echo "scale=3; ($rss1 - $rss0) / $count" | bc -l)
      else figure=NaN; fi ;;
  esac
  local busy0 busy1
  busy0=$(echo "$c0 $d0" | awk '{t = $4 - $2; print (t > 0 ? ($3 - $1) / t : 0)}')
  busy1=$(echo "$c1 $d1" | awk '{t = $4 - $2; print (t > 0 ? ($3 - $1) / t : 0)}')
  local machine user_sys
  user_sys=$(echo "$s0 $s1" | awk -v tck="$TCK" '{printf "%.3f\t%.3f", ($3 - $1) / tck, ($4 - $2) / tck}')
  machine=$(echo "$m0 $m1" | awk -v tck="$TCK" '{print ($3 - $1) / tck}')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.3f\t%.3f\t%s\t%.3f\t%s\t%s\t%s\t%.3f\t%.3f\t%s\t%s\t%.3f\t%s\t%s\n' \
    "$rep" "$mode" "$test" "$proxy" "$tool" "$figure" "$unit" "$count" "$errors" "$wall" \
    "$(echo "($p1 - $p0) / $TCK" | bc -l)" "$LOAD_CPU" "$(echo "($n1 - $n0) / $TCK" | bc -l)" \
    "$p99" "$rss0" "$rss1" "$busy0" "$busy1" "$full" "$resumed" "$machine" "$perf_counts" "$user_sys" >> "$OUT/runs.tsv"
  printf '%-9s %-12s %-10s %-13s %12s %-12s errors=%s proxy_cpu=%.2fs\n' "rep=$rep" "$mode" "$test" "$proxy" \
    "$figure" "$unit" "$errors" "$(echo "($p1 - $p0) / $TCK" | bc -l)" >&2
}

{
  echo "date: $(date -Is)"
  echo "machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs, kernel $(uname -r)"
  [ -n "$BASELINE" ] && echo "baseline: $BASELINE ($("$BASELINE" --version))"
  echo "ringmaster: $("$BIN" --version) (git $(git rev-parse --short HEAD 2>/dev/null || echo '?')$([ -z "$(git status --porcelain -- src Cargo.lock 2>/dev/null)" ] || echo ', src/ differs from HEAD'))"
  echo "rustc: $(rustc -V)"
  echo "haproxy: $(haproxy -vv 2>&1 | head -3 | tr '\n' ' ')"
  echo "haproxy ssl: $(haproxy -vv 2>&1 | grep -m1 'Running on OpenSSL' | sed 's/^ *//')"
  echo "nginx: $(nginx -v 2>&1)"
  echo "wrk: $(wrk -v 2>&1 | head -1)"
  echo "ring: ${RINGMASTER_RING:-coop (default)}"
  echo "reps=$REPS secs=$SECS idle_conns=$IDLE_N quick=$QUICK modes=$(IFS=,; echo "${MODES[*]}") tests=$(IFS=,; echo "${TESTS[*]}")"
} > "$OUT/versions.txt"

mapfile -t RUNS < <(plan)
echo "${#RUNS[@]} runs, ${SECS}s each; output in $OUT" >&2
for line in "${RUNS[@]}"; do
  read -r r m t p <<< "$line"
  run_one "${r#rep=}" "${m#mode=}" "${t#test=}" "${p#proxy=}"
done

python3 "$ROOT/benches/compare/summarize.py" "$OUT"
echo >&2
cat "$OUT/summary.md"
echo >&2
echo "output: $OUT (summary.md, chart.svg, runs.tsv)" >&2
