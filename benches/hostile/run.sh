#!/usr/bin/env bash
# The hostile-client suite at scale, with figures: benches/hostile/run.sh [--scale N] [--cases a,b]
#
# 1. builds ringmaster and the `hostile` example (release) and runs it: silent and slowloris
#    clients against the handshake deadline, a flood past max_connections and one address past
#    max_connections_per_ip, never-reading clients, failing servers, EMFILE, malformed
#    ClientHellos, memory per idle and busy connection (see benches/hostile/main.rs);
# 2. probes an offload front with a TLS 1.0-only and a TLS 1.1-only openssl client (both must be
#    refused);
# 3. scans the same front with sslyze against Mozilla's "intermediate" configuration (installed
#    with pip when missing) and keeps its report.
#
# Writes bench-out/hostile/<date>/{summary.md,sslyze.txt,...}; exits non-zero if a case did not
# hold or the scan failed. Everything listens on loopback; every process it starts is stopped
# by PID on exit. Takes about 2 minutes at the default scale (1,000 connections per attack).
set -euo pipefail
cd "$(dirname "$0")/../.."

SCALE=1000
CASES=
while [ $# -gt 0 ]; do
  case "$1" in
    --scale) SCALE=$2; shift 2 ;;
    --cases) CASES=$2; shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $SCALE =~ ^[1-9][0-9]*$ ]] || { echo "--scale: a positive integer" >&2; exit 2; }

OUT=bench-out/hostile/$(date +%Y-%m-%d-%H%M%S)
mkdir -p "$OUT"
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

need=()
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "missing: ${need[*]} (apt-get install ${need[*]})" >&2; exit 1
  fi
fi
python3 -m sslyze --help >/dev/null 2>&1 || python3 -m pip install -q sslyze

cargo build --release --bin ringmaster --example hostile
ulimit -n 20000 2>/dev/null || true

status=0
args=(--binary target/release/ringmaster --scale "$SCALE" --out "$OUT")
[ -n "$CASES" ] && args+=(--cases "$CASES")
target/release/examples/hostile "${args[@]}" || status=1

# An offload front with a certificate Mozilla's checks accept (ECDSA P-256, 90 days, signed by
# a CA the scanner is told to trust) for the version probes and the scan.
TLSDIR=$OUT/tls
mkdir -p "$TLSDIR"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 -subj "/CN=hostile CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$TLSDIR/ca.key" -out "$TLSDIR/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$TLSDIR/key.pem" -out "$TLSDIR/req.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n' > "$TLSDIR/ext.cnf"
openssl x509 -req -in "$TLSDIR/req.csr" -CA "$TLSDIR/ca.pem" -CAkey "$TLSDIR/ca.key" -CAcreateserial \
  -days 90 -extfile "$TLSDIR/ext.cnf" -out "$TLSDIR/leaf.pem" 2>/dev/null
cat "$TLSDIR/leaf.pem" "$TLSDIR/ca.pem" > "$TLSDIR/chain.pem"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
FRONT=$(port); BACK=$(port)
python3 -c "
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $BACK)); s.listen(64)
def serve(c):
    try:
        c.recv(65536); c.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok')
    except OSError:
        pass
    finally:
        c.close()
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
" &
PIDS+=($!)
cat > "$TLSDIR/ringmaster.toml" <<EOF
[global]
workers = 1

[[service]]
name = "front"
listen = "127.0.0.1:$FRONT"
mode = "offload"
certificate = "chain.pem"
key = "key.pem"

[[service.server]]
address = "127.0.0.1:$BACK"
EOF
target/release/ringmaster run -c "$TLSDIR/ringmaster.toml" > "$TLSDIR/ringmaster.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$FRONT) 2>/dev/null && break; sleep 0.1; done

versions=""
for v in tls1 tls1_1; do
  if echo | timeout 10 openssl s_client -connect 127.0.0.1:$FRONT -servername localhost -"$v" \
       -cipher 'DEFAULT:@SECLEVEL=0' > "$OUT/s_client-$v.txt" 2>&1 && grep -q 'Cipher is [A-Z]' "$OUT/s_client-$v.txt"; then
    versions+="| $v | **accepted** |\n"; status=1
  else
    why=$(grep -oE 'alert [a-z ]+|no protocols available|unsupported protocol|wrong version number' "$OUT/s_client-$v.txt" | head -1)
    versions+="| $v | refused (${why:-connection closed}) |\n"
  fi
done

if timeout 300 python3 -m sslyze --mozilla_config=intermediate --certinfo_ca_file "$TLSDIR/ca.pem" \
     "localhost:$FRONT{127.0.0.1}" > "$OUT/sslyze.txt" 2>&1; then
  verdict="compliant with Mozilla's intermediate configuration"
else
  verdict="NOT compliant (or the scan failed): see sslyze.txt"; status=1
fi
{
  echo
  echo "## Old TLS versions (openssl s_client against an offload front)"
  echo
  echo "| version | result |"
  echo "|---|---|"
  printf '%b' "$versions"
  echo
  echo "## sslyze --mozilla_config=intermediate"
  echo
  echo "$verdict"
  echo
  echo '```'
  grep -E 'TLS 1\.[0-3]|SSL 2|SSL 3|Renegotiation|Client-initiated|Secure Renegotiation|Compression|Heartbleed|ROBOT|CCS|Downgrade|compliant|Checking results' "$OUT/sslyze.txt" | sed 's/^ *//' | head -40
  echo '```'
} >> "$OUT/summary.md"
echo
echo "summary: $OUT/summary.md"
cat "$OUT/summary.md" | tail -25
exit $status
