#!/usr/bin/env bash
# Shared set-up for quickstart.sh and run-tests.sh: system packages (python3-venv,
# mosquitto), the virtual environment .venv and the package with its dev extras.
# Idempotent: a second run only checks. Source it; it defines VENV and PY.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${EDGE_RUNTIME_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    # Install Debian packages that are missing; refresh the index only if needed.
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null; then
        echo "setup: please install ${missing[*]} with your package manager" >&2
        return 1
    fi
    echo "setup: installing ${missing[*]} (Debian packages)" >&2
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get install -y -q "${missing[@]}" >/dev/null \
        || { as_root apt-get update -q >/dev/null && as_root apt-get install -y -q "${missing[@]}" >/dev/null; }
}

system_packages() {
    local pkgs=()
    python3 -c 'import ensurepip, venv' 2>/dev/null || pkgs+=(python3-venv)
    command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || pkgs+=(mosquitto)
    command -v mosquitto_sub >/dev/null || pkgs+=(mosquitto-clients)
    [ ${#pkgs[@]} -eq 0 ] || apt_install "${pkgs[@]}"
    # The Debian package enables a system broker; our scripts start their own, on a free port.
}

python_env() {
    if [ ! -x "$PY" ]; then
        echo "setup: creating virtual environment $VENV" >&2
        python3 -m venv "$VENV"
    fi
    local stamp="$VENV/.edge-runtime-installed"
    if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
        echo "setup: installing edge-runtime and its dependencies into $VENV" >&2
        "$PY" -m pip install -q --upgrade pip >/dev/null
        "$PY" -m pip install -q -e "$ROOT[dev]"
        touch "$stamp"
    fi
}

system_packages
python_env
