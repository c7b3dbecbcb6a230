#!/usr/bin/env bash
# Measures what `store.durability` costs: requests per second through sessiond when every
# response changes the jar (the origin sets a new cookie value each time), for
# durability = "full", "batched", and a response that changes nothing (same cookie) as
# the baseline. Needs nginx and wrk (apt-get install nginx-light wrk). Loopback only.
#
#   bash bench/durability.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-32}
work=$(mktemp -d)
trap 'kill $(cat "$work"/*.pid 2>/dev/null) 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release --quiet
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:18780;
    location /changing { add_header Set-Cookie "sid=\$request_id; Path=/"; return 200 "ok"; }
    location /same     { add_header Set-Cookie "sid=constant; Path=/"; return 200 "ok"; }
  }
}
NGINX
nginx -c "$work/nginx.conf"

run() { # mode path
  local mode=$1 path=$2 dir="$work/state-$1-${2//\//}"
  cat > "$work/sd.toml" <<TOML
[proxy]
listen = ["127.0.0.1:18788"]
state_dir = "$dir"
[admin]
listen = "127.0.0.1:18789"
[store]
durability = "$mode"
TOML
  RUST_LOG=warn ./target/release/sessiond run -c "$work/sd.toml" 2>"$work/sd.log" &
  echo $! > "$work/sd.pid"
  until curl -s -o /dev/null http://127.0.0.1:18789/healthz; do sleep 0.1; done
  echo "wrk.path = \"http://127.0.0.1:18780$path\"" > "$work/path.lua"
  local rps
  rps=$(wrk -t2 -c"$conns" -d"${secs}s" -s "$work/path.lua" http://127.0.0.1:18788 | awk '/Requests\/sec/ {print $2}')
  printf '%-8s %-10s %10s req/s\n' "$mode" "$path" "$rps"
  kill "$(cat "$work/sd.pid")"; wait "$(cat "$work/sd.pid")" 2>/dev/null || true
}

echo "durability  response    throughput ($conns connections, ${secs}s each)"
run full /same
run full /changing
run batched /changing
