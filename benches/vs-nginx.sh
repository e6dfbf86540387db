#!/usr/bin/env bash
# The gateway and nginx side by side, as TLS-terminating mTLS proxies in front of the same
# static upstream on loopback, driven by oha. Not a test: it prints a table of ratios.
#
#     benches/vs-nginx.sh                 (ROUNDS=3 DURATION=10s CONNS=32 by default;
#                                          ONLY=<regex> runs the cases whose name matches)
#
# It installs what it lacks the ordinary way (apt-get install nginx, cargo install oha --locked),
# builds the release gateway, makes its PKI with openssl at run time in a temporary directory,
# and for each case runs oha against nginx, then the gateway, ROUNDS times alternating, and prints
# the median throughput, p50 and p99 of both, and their ratio; the upstream reached directly is the
# ceiling. The gateway runs in RBAC mode with its audit log off, except in the audit case.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
ONLY=${ONLY:-.}
GATE_ENV=${GATE_ENV:-env} # e.g. GATE_ENV="env MALLOC_ARENA_MAX=2" to try an allocator setting
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v nginx >/dev/null; then
    $sudo apt-get install -y --no-install-recommends nginx
fi
if ! command -v oha >/dev/null; then
    cargo install oha --locked
fi
for tool in openssl python3; do
    command -v "$tool" >/dev/null || { echo "$tool is needed" >&2; exit 1; }
done
cargo build --release --locked --bin kubelet-gate
gate="$PWD/target/release/kubelet-gate"

work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
chmod 755 "$work" # nginx's workers (www-data when started as root) read the static files
cd "$work"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); NGX=$(free_port); NGX_TOKEN=$(free_port); GW=$(free_port); GW_OPS=$(free_port)
GW_AUDIT=$(free_port); GW_AUDIT_OPS=$(free_port)

# PKI: one CA signs the serving certificate (127.0.0.1) and the client's (CN=bench).
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key ca.key
openssl req -x509 -new -key ca.key -out ca.crt -subj /CN=bench-ca -days 2 2>/dev/null
key server.key
openssl req -new -key server.key -subj /CN=localhost 2>/dev/null |
    openssl x509 -req -CA ca.crt -CAkey ca.key -days 2 -out server.crt \
        -extfile <(printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n') 2>/dev/null
key client.key
openssl req -new -key client.key -subj /CN=bench 2>/dev/null |
    openssl x509 -req -CA ca.crt -CAkey ca.key -days 2 -out client.crt \
        -extfile <(printf 'extendedKeyUsage=clientAuth\n') 2>/dev/null

# The static upstream: /stats/summary (8.6 KB of JSON) and /metrics/cadvisor (158 KB of text).
mkdir -p root/stats root/metrics
python3 - <<'PY'
import json
pods = [{"podRef": {"name": f"pod-{i}", "namespace": "default", "uid": f"{i:08d}"},
         "cpu": {"usageNanoCores": 1234567 + i, "usageCoreNanoSeconds": 987654321 + i}} for i in range(40)]
body = json.dumps({"node": {"nodeName": "node-a"}, "pods": pods})
open("root/stats/summary", "w").write(body[:8600].ljust(8600))
lines, i = [], 0
while sum(len(l) for l in lines) < 158_000:
    lines.append(f'container_cpu_usage_seconds_total{{container="c{i}",namespace="default",pod="pod-{i % 40}"}} {i}.5 1700000000000\n')
    i += 1
open("root/metrics/cadvisor", "w").write("".join(lines)[:158_000])
PY
chmod -R a+rX root

cat >nginx.conf <<NGINX
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/tmp-body;
    proxy_temp_path $work/tmp-proxy;
    fastcgi_temp_path $work/tmp-fastcgi;
    uwsgi_temp_path $work/tmp-uwsgi;
    scgi_temp_path $work/tmp-scgi;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    server { listen 127.0.0.1:$UP; root $work/root; }
    upstream static { server 127.0.0.1:$UP; keepalive 64; }
    map \$http_authorization \$bench_token_ok { "Bearer bench-token" 1; default 0; }
    server {
        listen 127.0.0.1:$NGX ssl http2;
        ssl_certificate $work/server.crt;
        ssl_certificate_key $work/server.key;
        ssl_client_certificate $work/ca.crt;
        ssl_verify_client on;
        location / { proxy_pass http://static; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
    server {
        listen 127.0.0.1:$NGX_TOKEN ssl http2;
        ssl_certificate $work/server.crt;
        ssl_certificate_key $work/server.key;
        location / {
            if (\$bench_token_ok = 0) { return 401; }
            proxy_pass http://static; proxy_http_version 1.1; proxy_set_header Connection "";
        }
    }
}
NGINX
nginx -p "$work" -c "$work/nginx.conf"

printf 'bench-token,bench,u-bench\n' >tokens.csv
cat >rbac.yaml <<'RBAC'
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: bench}
rules:
- apiGroups: [""]
  resources: [nodes/stats, nodes/metrics, nodes/proxy]
  verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: bench}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: bench}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: bench}
RBAC
gateway_config() { # port ops-port audit-path
    cat <<YAML
apiVersion: kubelet-gate/v1alpha1
kind: GatewayConfiguration
nodeName: node-a
address: 127.0.0.1
port: $1
tlsCertFile: server.crt
tlsPrivateKeyFile: server.key
nodeAddresses: [127.0.0.1]
ops: {address: "127.0.0.1:$2"}
audit: {path: "$3"}
authentication:
  x509: {clientCAFile: ca.crt}
  webhook: {enabled: false}
  tokenFile: tokens.csv
authorization:
  mode: RBAC
  rbac: {policyFiles: [rbac.yaml]}
upstream:
  readOnly: http://127.0.0.1:$UP
YAML
}
gateway_config "$GW" "$GW_OPS" "" >gateway.yaml
gateway_config "$GW_AUDIT" "$GW_AUDIT_OPS" "$work/audit.log" >gateway-audit.yaml
$GATE_ENV "$gate" serve --config gateway.yaml 2>gateway.log & pids+=($!); gw_pid=$!
"$gate" serve --config gateway-audit.yaml 2>gateway-audit.log & pids+=($!); gw_audit_pid=$!
for ops in "$GW_OPS" "$GW_AUDIT_OPS"; do
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ops/healthz" >/dev/null && break; sleep 0.1; done
done

# One oha run: prints "rps p50_ms p99_ms".
run() { # url extra-args...
    local url=$1; shift
    oha --no-tui --output-format json -w -z "$DURATION" -c "$CONNS" "$@" "$url" 2>/dev/null |
        python3 -c '
import json, sys
r = json.load(sys.stdin)
s, p = r["summary"], r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {})
bad = sum(n for c, n in codes.items() if c != "200") + sum(r.get("errorDistribution", {}).values())
if bad:
    print("not 200:", codes, r.get("errorDistribution"), file=sys.stderr)
rps, p50, p99 = s["requestsPerSec"], p["p50"] * 1000, p["p99"] * 1000
print("%.0f %.2f %.2f %d" % (rps, p50, p99, bad))'
}
tls=(--cacert ca.crt --cert client.crt --key client.key)
token=(--cacert ca.crt -H "Authorization: Bearer bench-token")

# case name | nginx URL | gateway URL | oha arguments
cases=(
    "HTTP/1.1, 8.6 KB|https://127.0.0.1:$NGX/stats/summary|https://127.0.0.1:$GW/stats/summary|tls"
    "HTTP/1.1, 158 KB|https://127.0.0.1:$NGX/metrics/cadvisor|https://127.0.0.1:$GW/metrics/cadvisor|tls"
    "HTTP/2 x4 streams, 8.6 KB|https://127.0.0.1:$NGX/stats/summary|https://127.0.0.1:$GW/stats/summary|tls --http2 -p 4"
    "HTTP/2 x4 streams, 158 KB|https://127.0.0.1:$NGX/metrics/cadvisor|https://127.0.0.1:$GW/metrics/cadvisor|tls --http2 -p 4"
    "new TLS connection per request|https://127.0.0.1:$NGX/stats/summary|https://127.0.0.1:$GW/stats/summary|tls --disable-keepalive"
    "bearer token, HTTP/1.1, 8.6 KB|https://127.0.0.1:$NGX_TOKEN/stats/summary|https://127.0.0.1:$GW/stats/summary|token"
    "audit on (gateway) vs off, 8.6 KB|https://127.0.0.1:$GW/stats/summary|https://127.0.0.1:$GW_AUDIT/stats/summary|tls"
)
median() { python3 -c 'import sys, statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

echo "ceiling: the static upstream directly, HTTP/1.1 8.6 KB: $(run "http://127.0.0.1:$UP/stats/summary" | cut -d' ' -f1) req/s"
printf '\n| case | nginx req/s | gateway req/s | gateway / nginx | p50 ms nginx / gateway | p99 ms nginx / gateway | non-200 |\n|---|---|---|---|---|---|---|\n'
for c in "${cases[@]}"; do
    IFS='|' read -r name left right how <<<"$c"
    [[ "$name" =~ $ONLY ]] || continue
    set -- $how
    kind=$1; shift
    if [ "$kind" = tls ]; then args=("${tls[@]}" "$@"); else args=("${token[@]}" "$@"); fi
    # The token case: nginx compares the header itself; the gateway looks the token up.
    l_rps=(); l_p50=(); l_p99=(); r_rps=(); r_p50=(); r_p99=(); bad=0
    for _ in $(seq "$ROUNDS"); do
        read -r rps p50 p99 b < <(run "$left" "${args[@]}"); l_rps+=("$rps"); l_p50+=("$p50"); l_p99+=("$p99"); bad=$((bad + b))
        read -r rps p50 p99 b < <(run "$right" "${args[@]}"); r_rps+=("$rps"); r_p50+=("$p50"); r_p99+=("$p99"); bad=$((bad + b))
    done
    lr=$(median "${l_rps[@]}"); rr=$(median "${r_rps[@]}")
    ratio=$(python3 -c "print(f'{$rr / $lr:.2f}')")
    printf '| %s | %.0f | %.0f | %s | %s / %s | %s / %s | %s |\n' "$name" "$lr" "$rr" "$ratio" \
        "$(median "${l_p50[@]}")" "$(median "${r_p50[@]}")" "$(median "${l_p99[@]}")" "$(median "${r_p99[@]}")" "$bad"
done
hwm() { awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' "/proc/$1/status"; }
echo
echo "gateway peak RSS (VmHWM) after every case: $(hwm "$gw_pid"); with the audit log: $(hwm "$gw_audit_pid")"
echo "(the audit row compares the gateway with its audit log on, right, to itself with it off, left)"
