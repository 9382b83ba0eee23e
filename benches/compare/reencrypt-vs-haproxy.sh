#!/usr/bin/env bash
# Re-encrypt, one core each: ringmaster vs HAProxy `mode tcp` (ssl on bind and server), measured
# alternately in the same run (A B A B ...). The proxy is pinned to CPU 0 with one worker/thread;
# nginx (the TLS backend) and the load generators are pinned to CPU 1.
#
# Reports, per proxy and test: the raw figure, the proxy's CPU seconds (utime+stime from /proc),
# the figure per proxy CPU-second, and the peers' CPU (load generator + backend) per request.
#
#   benches/compare/reencrypt-vs-haproxy.sh [--reps N] [--secs S]
#
# Needs: haproxy, nginx, wrk, h2load (nghttp2-client), curl, openssl — installed with apt if missing.
# Stops every process it started, by PID.
set -euo pipefail
cd "$(dirname "$0")/../.."

REPS=3
SECS=8
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS=$2; shift 2 ;;
    --secs) SECS=$2; shift 2 ;;
    *) echo "usage: $0 [--reps N] [--secs S]" >&2; exit 2 ;;
  esac
done

need=()
for tool in haproxy nginx wrk h2load curl openssl bc; do command -v "$tool" >/dev/null || need+=("$tool"); done
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${need[@]}" | sed 's/^h2load$/nghttp2-client/; s/^nginx$/nginx-light/' | tr '\n' ' ')
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $pkgs >/dev/null
fi

cargo build --release -q
BIN=$PWD/target/release/ringmaster
OUT=$PWD/bench-out/reencrypt-$(date +%Y%m%d-%H%M%S)
mkdir -p "$OUT"
W=$(mktemp -d /tmp/rm-bench.XXXXXX)
chmod 755 "$W"   # nginx workers run as nobody
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

# One RSA-2048 certificate for the proxies and the backend (Extended Protection needs the same one).
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" -addext "basicConstraints=critical,CA:FALSE" \
  -keyout "$W/key.pem" -out "$W/cert.pem" 2>/dev/null
cat "$W/cert.pem" "$W/key.pem" > "$W/combined.pem"
mkdir -p "$W/www"
head -c 1024 /dev/urandom > "$W/www/1k"
head -c $((1024*1024)) /dev/urandom > "$W/www/1m"
head -c $((1024*1024*1024)) /dev/zero > "$W/www/1g"

BACK=$(free_port); RM=$(free_port); HA=$(free_port)
cat > "$W/nginx.conf" <<NGX
worker_processes 1;
daemon off;
pid $W/nginx.pid;
error_log $W/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$BACK ssl;
    ssl_certificate $W/cert.pem;
    ssl_certificate_key $W/key.pem;
    ssl_protocols TLSv1.3;
    root $W/www;
  }
}
NGX
taskset -c 1 nginx -c "$W/nginx.conf" -p "$W" & PIDS+=($!); NGINX=$!
sleep 0.3; NGINX_WORKER=$(pgrep -P "$NGINX" | head -1)

cat > "$W/ringmaster.toml" <<RMC
[global]
workers = 1
[[service]]
name = "bench"
listen = "127.0.0.1:$RM"
mode = "reencrypt"
certificate = "$W/cert.pem"
key = "$W/key.pem"
idle_timeout = "5m"
[service.backend_tls]
verify = "ca"
ca = "$W/cert.pem"
sni = "localhost"
[[service.server]]
address = "127.0.0.1:$BACK"
RMC
cat > "$W/haproxy.cfg" <<HAC
global
  nbthread 1
  maxconn 8000
  ssl-default-bind-options ssl-min-ver TLSv1.3
defaults
  mode tcp
  timeout connect 3s
  timeout client 5m
  timeout server 5m
frontend fe
  bind 127.0.0.1:$HA ssl crt $W/combined.pem
  default_backend be
backend be
  server s1 127.0.0.1:$BACK ssl verify required ca-file $W/cert.pem sni str(localhost)
HAC

start_proxy() {
  case $1 in
    ringmaster) taskset -c 0 "$BIN" run -c "$W/ringmaster.toml" --log-level warn 2>>"$OUT/ringmaster.log" & PROXY=$!; PORT=$RM ;;
    haproxy) taskset -c 0 haproxy -f "$W/haproxy.cfg" -db 2>>"$OUT/haproxy.log" & PROXY=$!; PORT=$HA ;;
  esac
  PIDS+=("$PROXY"); wait_port "$PORT"
}
stop_proxy() { kill "$PROXY"; wait "$PROXY" 2>/dev/null || true; }

# Runs a load generator on CPU 1 and adds its user+system CPU (in ticks) to LOAD_TICKS.
loadgen() {
  local rc=0
  /usr/bin/time -f "%U %S" -o "$W/time.out" taskset -c 1 "$@" || rc=$?
  LOAD_TICKS=$(( LOAD_TICKS + $(awk '{printf "%d", ($1 + $2) * 100}' "$W/time.out") ))
  return $rc
}

# run_test NAME PROXY: prints "name proxy figure unit proxy_cpu_s peers_cpu_s count"
run_test() {
  local test=$1 proxy=$2 figure count unit
  start_proxy "$proxy"
  local p0 n0 l0; p0=$(cpu_ticks "$PROXY"); n0=$(cpu_ticks "$NGINX_WORKER")
  local t0; t0=$(date +%s.%N); LOAD_TICKS=0
  case $test in
    keepalive_1k)
      loadgen wrk -t1 -c32 -d"${SECS}s" --latency "https://127.0.0.1:$PORT/1k" > "$W/wrk.out" 2>&1
      count=$(awk '/requests in/{print $1}' "$W/wrk.out")
      if grep -q "Non-2xx" "$W/wrk.out"; then echo "keepalive_1k via $proxy: non-2xx answers" >&2; fi
      unit="req"
      l0=$(awk '/Latency /{print $2}' "$W/wrk.out")
      ;;
    bulk_1g)
      loadgen curl -sk -o /dev/null -w '%{http_code} %{size_download}\n' "https://127.0.0.1:$PORT/1g" > "$W/curl.out"
      read -r code size < "$W/curl.out"
      [ "$code" = 200 ] || echo "bulk_1g via $proxy: HTTP $code" >&2
      count=$(( size / 1048576 )); unit="MiB"
      ;;
    handshakes)
      local end; end=$(( $(date +%s) + SECS )); count=0
      while [ "$(date +%s)" -lt "$end" ]; do
        loadgen h2load --h1 -n 200 -c 200 "https://127.0.0.1:$PORT/1k" > "$W/h2.out" 2>&1 || true
        count=$(( count + $(awk '/requests:/{print $8}' "$W/h2.out") ))
      done
      unit="handshakes"
      ;;
  esac
  local t1; t1=$(date +%s.%N)
  local pcpu ncpu; pcpu=$(( $(cpu_ticks "$PROXY") - p0 )); ncpu=$(( $(cpu_ticks "$NGINX_WORKER") - n0 ))
  stop_proxy
  echo "$test $proxy $count $unit $(echo "$t1 - $t0" | bc -l) $pcpu $ncpu $LOAD_TICKS"
}

{
  echo "# machine: $(lscpu | sed -n 's/Model name: *//p'), $(nproc) cores, $(uname -r)"
  echo "# $($BIN --version), $(rustc --version), $(haproxy -v | head -1), $(nginx -v 2>&1)"
  echo "# columns: test proxy count unit wall_s proxy_cpu_ticks backend_cpu_ticks client_cpu_ticks (ticks = 1/100 s)"
} > "$OUT/raw.txt"
for rep in $(seq "$REPS"); do
  for test in keepalive_1k bulk_1g handshakes; do
    for proxy in ringmaster haproxy; do
      line=$(run_test "$test" "$proxy"); echo "$line" | tee -a "$OUT/raw.txt"
    done
  done
done

python3 - "$OUT/raw.txt" > "$OUT/summary.md" <<'PY'
import sys, statistics as st
rows=[l.split() for l in open(sys.argv[1]) if not l.startswith('#')]
res={}
for t,p,c,u,wall,pc,nc,lc in rows:
    c=float(c); wall=float(wall); pc=float(pc)/100; nc=float(nc)/100; lc=float(lc)/100
    res.setdefault((t,p),[]).append((c/wall, c/pc if pc else 0, nc*1e6/c if c else 0, lc*1e6/c if c else 0, pc/wall))
print("| test | proxy | raw /s (median) | per proxy CPU-s (median, min–max) | backend CPU µs/unit | client CPU µs/unit | proxy core busy |")
print("|---|---|---|---|---|---|---|")
for (t,p),v in sorted(res.items()):
    raw=st.median(x[0] for x in v); per=[x[1] for x in v]
    print(f"| {t} | {p} | {raw:,.0f} | {st.median(per):,.0f} ({min(per):,.0f}–{max(per):,.0f}) | {st.median(x[2] for x in v):,.1f} | {st.median(x[3] for x in v):,.1f} | {st.median(x[4] for x in v):.0%} |")
print()
for t in sorted({k[0] for k in res}):
    a=[x[1] for x in res[(t,'ringmaster')]]; b=[x[1] for x in res[(t,'haproxy')]]
    ratios=[x/y for x,y in zip(a,b) if y]
    print(f"- {t}: ringmaster/HAProxy per proxy CPU-second, paired: median {st.median(ratios):.2f} (" + ", ".join(f"{r:.2f}" for r in ratios) + ")")
PY
cat "$OUT/summary.md"
echo "raw: $OUT/raw.txt"
