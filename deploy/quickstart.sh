#!/usr/bin/env bash
# Set everything up on a fresh Debian 12 / Raspberry Pi OS machine and run the bundled
# demo: a private Mosquitto on a free port, the daemon on the demo config, and
# mosquitto_sub printing the predictions as they arrive.
#   deploy/quickstart.sh            show 20 predictions, then stop
#   deploy/quickstart.sh --forever  keep running until Ctrl-C
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=deploy/setup-env.sh
source "$ROOT/deploy/setup-env.sh"

COUNT=20
[ "${1:-}" = "--forever" ] && COUNT=0
MOSQUITTO="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
WORK="$(mktemp -d)"
PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cleanup() {
    [ -n "${DAEMON_PID:-}" ] && kill -TERM "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null
    [ -n "${BROKER_PID:-}" ] && kill -TERM "$BROKER_PID" 2>/dev/null && wait "$BROKER_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$PORT" > "$WORK/mosquitto.conf"
"$MOSQUITTO" -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
BROKER_PID=$!
for _ in $(seq 50); do
    "$PY" -c "import socket,sys; socket.create_connection(('127.0.0.1', $PORT), 0.2)" 2>/dev/null && break
    sleep 0.1
done
echo "quickstart: mosquitto listening on 127.0.0.1:$PORT"

export EDGE_RUNTIME_STATE_DIR="$WORK/state"
"$VENV/bin/edge-runtime" run --set mqtt.port="$PORT" &
DAEMON_PID=$!
echo "quickstart: daemon started (pid $DAEMON_PID); predictions from the demo video:"
SUB_ARGS=(-h 127.0.0.1 -p "$PORT" -t 'edge/+/+/predictions' -t 'edge/+/status' -v)
[ "$COUNT" -gt 0 ] && SUB_ARGS+=(-C "$COUNT")
mosquitto_sub "${SUB_ARGS[@]}"
