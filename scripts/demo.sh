#!/usr/bin/env bash
# make demo: an edge and an agent on loopback with a fresh PKI, and a real
# session through them. KEEP=1 leaves edge and agent running.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
KEEP=${KEEP:-}

dir=$(mktemp -d "${TMPDIR:-/tmp}/tether-demo.XXXXXX")
pids=()
cleanup() {
  local status=$?
  if [ -n "$KEEP" ] && [ $status -eq 0 ]; then return; fi
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ $status -ne 0 ]; then
    echo "demo failed; logs:" >&2
    tail -n 20 "$dir"/*.log >&2 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free loopback port for the edge.
free_port() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "no free port found" >&2; return 1
}

# wait_for DESCRIPTION COMMAND...: retry COMMAND for up to 20 s.
wait_for() {
  local what=$1; shift
  for _ in $(seq 200); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for $what" >&2; return 1
}

run() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

port=$(free_port)
edge_url="https://127.0.0.1:$port"

echo "==> PKI, configs and token in $dir"
"$BIN/tether-edge" dev --dir "$dir" --listen "127.0.0.1:$port" >"$dir/edge.log" 2>&1 &
pids+=($!)
wait_for "the edge config" test -f "$dir/agent.yaml"

tether() { "$BIN/tether" --edge "$edge_url" --ca "$dir/ca.crt" --token-file "$dir/client.token" "$@"; }

echo "==> edge listening on $edge_url; starting the agent"
echo "    (every tether command below runs with --edge $edge_url --ca $dir/ca.crt --token-file $dir/client.token)"
"$BIN/tether-agent" --config "$dir/agent.yaml" >"$dir/agent.log" 2>&1 &
pids+=($!)
wait_for "the device to connect" bash -c "\"$BIN/tether\" --edge $edge_url --ca $dir/ca.crt --token-file $dir/client.token devices | grep -q demo"

run tether devices
run tether shell demo -- uname -a

# A small HTTP server on the device side, fetched through a TCP forward.
go build -o "$dir/httpd" ./internal/demo/httpd
"$dir/httpd" >"$dir/httpd.addr" 2>"$dir/httpd.log" &
pids+=($!)
wait_for "the device-side HTTP server" test -s "$dir/httpd.addr"
target=$(head -n1 "$dir/httpd.addr")

printf '\n\033[1m$ tether tcp demo 127.0.0.1:0:%s &\033[0m\n' "$target"
tether tcp demo "127.0.0.1:0:$target" >"$dir/forward.out" 2>"$dir/forward.log" &
pids+=($!)
wait_for "the forward to listen" grep -q -- '->' "$dir/forward.out"
cat "$dir/forward.out"
local_addr=$(head -n1 "$dir/forward.out" | awk '{print $1}')

printf '\n\033[1m$ GET http://%s/\033[0m\n' "$local_addr"
if command -v curl >/dev/null; then
  curl -fsS "http://$local_addr/"
else
  exec 3<>"/dev/tcp/${local_addr%:*}/${local_addr##*:}"
  printf 'GET / HTTP/1.0\r\nHost: demo\r\n\r\n' >&3
  sed -n '/^\r$/,$p' <&3 | tail -n +2
  exec 3>&-
fi

if [ -n "$KEEP" ]; then
  cat <<TXT

Edge, agent and the device-side HTTP server keep running (pids ${pids[0]}, ${pids[1]}, ${pids[2]});
files in $dir. Try:
  export TETHER_EDGE=$edge_url TETHER_CA=$dir/ca.crt TETHER_TOKEN=\$(cat $dir/client.token)
  $BIN/tether devices
  $BIN/tether shell demo
  $BIN/tether tcp demo 127.0.0.1:8080:$target     # then open http://127.0.0.1:8080/
Stop them with: kill ${pids[0]} ${pids[1]} ${pids[2]}
TXT
  kill "${pids[3]}" 2>/dev/null || true
  exit 0
fi
echo
echo "==> demo finished; shutting down"
