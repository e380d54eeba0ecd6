#!/usr/bin/env bash
# Run every check: ruff, mypy --strict, the whole pytest suite (unit, integration against
# a real Mosquitto, real models through the real interpreter), and the accuracy test again
# under the alternative tflite-runtime backend in its own environment (numpy < 2).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=deploy/setup-env.sh
source "$ROOT/deploy/setup-env.sh"
cd "$ROOT"

# A real RTSP server for the RTSP tests (GStreamer's gst-rtsp-server from Debian, driven by
# the system python3; about 35 s to install). Installed, its tests must run, not skip.
if [ "${EDGE_RUNTIME_SKIP_RTSP:-0}" != "1" ]; then
    apt_install gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good \
        python3-gi
    export EDGE_RUNTIME_REQUIRE_RTSP=1
fi

echo "== ruff"; "$VENV/bin/ruff" check edge_runtime tests tools
echo "== mypy --strict"; "$VENV/bin/mypy"
echo "== pytest (ai-edge-litert)"; "$PY" -m pytest -q "$@"

# tflite-runtime needs numpy < 2, so it gets its own environment.
TFLITE_VENV="${EDGE_RUNTIME_TFLITE_VENV:-$ROOT/.venv-tflite}"
if [ "${EDGE_RUNTIME_SKIP_TFLITE:-0}" != "1" ]; then
    if [ ! -f "$TFLITE_VENV/.installed" ] || [ "$ROOT/pyproject.toml" -nt "$TFLITE_VENV/.installed" ]; then
        echo "setup: creating $TFLITE_VENV for the tflite-runtime backend" >&2
        python3 -m venv "$TFLITE_VENV"
        "$TFLITE_VENV/bin/pip" install -q "tflite-runtime>=2.14" "numpy<2" "opencv-python-headless<5" \
            pyyaml "pydantic>=2.5" "paho-mqtt>=2" prometheus-client pyserial pytest hypothesis
        "$TFLITE_VENV/bin/pip" install -q --no-deps -e "$ROOT"
        touch "$TFLITE_VENV/.installed"
    fi
    echo "== pytest (tflite-runtime backend)"
    EDGE_RUNTIME_TEST_BACKEND=tflite-runtime "$TFLITE_VENV/bin/python" -m pytest -q -m backend
fi
