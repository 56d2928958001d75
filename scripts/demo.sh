#!/usr/bin/env bash
# make demo: an edge and an agent on loopback with a fresh PKI, and a real
# session through them. Every process it starts is stopped when it ends,
# however it ends. KEEP=1 leaves edge, agent and the device-side HTTP server
# running and prints the one command that stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
KEEP=${KEEP:-}
case $KEEP in 0 | no | false) KEEP= ;; esac

dir=$(mktemp -d "${TMPDIR:-/tmp}/tether-demo.XXXXXX")
# pids holds every process started, each a binary launched directly (never
# a shell function or subshell, whose $! is not the process that runs).
pids=()
kept=
# running PID: the process exists and has not exited (a zombie has).
running() { [ -n "$(ps -o stat= -p "$1" 2>/dev/null | grep -v Z)" ]; }
stop_all() {
  local pid
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for _ in $(seq 100); do
    local alive=
    for pid in "${pids[@]}"; do if running "$pid"; then alive=1; fi; done
    [ -z "$alive" ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "$kept" ] && [ $status -eq 0 ]; then return; fi
  stop_all
  if [ $status -ne 0 ]; then
    echo "demo failed; logs:" >&2
    tail -n 20 "$dir"/*.log >&2 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A free loopback port for the edge, from below the kernel's ephemeral
# range, so that no outgoing connection takes it meanwhile.
free_port() {
  local p lo
  lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  for _ in $(seq 50); do
    p=$((10000 + RANDOM % (lo - 10000)))
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

# start_edge starts the dev edge on a free port. The port is free when
# picked, but another process may bind it first: the edge then exits, and
# a fresh set-up (its agent.yaml names the port) on another port follows.
start_edge() {
  local edge
  for _ in $(seq 5); do
    port=$(free_port) || return 1
    "$BIN/tether-edge" dev --dir "$dir" --listen "127.0.0.1:$port" >"$dir/edge.log" 2>&1 &
    edge=$!
    for _ in $(seq 200); do
      if ! kill -0 "$edge" 2>/dev/null; then break; fi
      if grep -q "^Edge listening on" "$dir/edge.log"; then
        pids+=("$edge")
        return 0
      fi
      sleep 0.1
    done
    if kill -0 "$edge" 2>/dev/null || ! grep -q "address already in use" "$dir/edge.log"; then
      pids+=("$edge")
      echo "the edge did not start" >&2
      return 1
    fi
    wait "$edge" 2>/dev/null || true
    find "$dir" -mindepth 1 -delete
  done
  echo "no port the edge could listen on" >&2
  return 1
}

echo "==> PKI, configs and token in $dir"
start_edge
edge_url="https://127.0.0.1:$port"

tether_cmd=("$BIN/tether" --edge "$edge_url" --ca "$dir/ca.crt" --token-file "$dir/client.token")
tether() { "${tether_cmd[@]}" "$@"; }

echo "==> edge listening on $edge_url; starting the agent"
echo "    (every tether command below runs with --edge $edge_url --ca $dir/ca.crt --token-file $dir/client.token)"
"$BIN/tether-agent" --config "$dir/agent.yaml" >"$dir/agent.log" 2>&1 &
pids+=($!)
wait_for "the device to connect" bash -c "\"$BIN/tether\" --edge $edge_url --ca $dir/ca.crt --token-file $dir/client.token devices | grep -q demo"

run tether devices
run tether shell demo -- uname -a

# A file to the device, into the one directory its agent lets tether cp
# write, and read back there.
printf 'notes from the operator\n' >"$dir/notes.txt"
run tether cp "$dir/notes.txt" "demo:$dir/files/"
run tether exec demo -- cat "$dir/files/notes.txt"

# A small HTTP server on the device side, fetched through a TCP forward.
go build -o "$dir/httpd" ./internal/demo/httpd
"$dir/httpd" >"$dir/httpd.addr" 2>"$dir/httpd.log" &
pids+=($!)
wait_for "the device-side HTTP server" test -s "$dir/httpd.addr"
target=$(head -n1 "$dir/httpd.addr")

printf '\n\033[1m$ tether tcp demo 127.0.0.1:0:%s &\033[0m\n' "$target"
"${tether_cmd[@]}" tcp demo "127.0.0.1:0:$target" >"$dir/forward.out" 2>"$dir/forward.log" &
forward=$!
pids+=($forward)
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
  # The forward was the demo's own; stop it, and keep the rest.
  kill -TERM "$forward" 2>/dev/null || true
  wait "$forward" 2>/dev/null || true
  keep=("${pids[@]:0:3}")
  stop="$dir/stop.sh"
  cat >"$stop" <<STOP
#!/bin/sh
# Stops what make demo KEEP=1 left running (each PID only while its command
# line still names $dir), then removes $dir.
for pid in ${keep[*]}; do
  if ps -o args= -p "\$pid" 2>/dev/null | grep -qF '$dir'; then kill -TERM "\$pid"; fi
done
for _ in \$(seq 100); do
  left=
  for pid in ${keep[*]}; do
    if ps -o args= -p "\$pid" 2>/dev/null | grep -qF '$dir'; then left=1; fi
  done
  [ -z "\$left" ] && break
  sleep 0.1
done
for pid in ${keep[*]}; do
  if ps -o args= -p "\$pid" 2>/dev/null | grep -qF '$dir'; then kill -KILL "\$pid"; fi
done
rm -rf '$dir'
echo "demo stopped"
STOP
  chmod 700 "$stop"
  kept=1
  cat <<TXT

Edge, agent and the device-side HTTP server keep running (pids ${keep[*]});
files in $dir. Try:
  export TETHER_EDGE=$edge_url TETHER_CA=$dir/ca.crt TETHER_TOKEN=\$(cat $dir/client.token)
  $BIN/tether devices
  $BIN/tether shell demo
  $BIN/tether cp ./some-file demo:$dir/files/      # the agent's only files directory
  $BIN/tether tcp demo 127.0.0.1:8080:$target     # then open http://127.0.0.1:8080/
Stop them all with: $stop
TXT
  exit 0
fi
echo
echo "==> demo finished; shutting down"
