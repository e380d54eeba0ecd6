#!/usr/bin/env bash
# Install edge-runtime as a systemd service on Debian 12 / Raspberry Pi OS. Idempotent: run
# it again to upgrade; an existing /etc/edge-runtime/config.yaml is never overwritten.
#
#   sudo deploy/install.sh                     install or upgrade, enable and (re)start
#   sudo deploy/install.sh --with-mosquitto    also install and enable Debian's Mosquitto
#   sudo deploy/install.sh --uninstall         remove the service; keep config and state
#   sudo deploy/install.sh --uninstall --purge also remove config, state and the user
#   deploy/install.sh --dry-run                print every step, change nothing
#   deploy/install.sh --root DIR [--no-pip]    create the files under DIR (also DESTDIR=DIR);
#                                              useradd, systemctl, udevadm, apt-get and
#                                              chown are printed, never run
#
# What it installs (docs/service.md explains each piece):
#   /opt/edge-runtime/venv          virtual environment with edge-runtime (pip, from this checkout)
#   /opt/edge-runtime/models        the bundled demo models and video the example config uses
#   /opt/edge-runtime/docs          service.md (the unit's Documentation=)
#   /etc/edge-runtime/config.yaml   from deploy/edge-runtime.example.yaml, only if absent
#   /etc/edge-runtime/mqtt-password empty, root-only, only if absent (LoadCredential source)
#   /etc/systemd/system/edge-runtime.service
#   /etc/udev/rules.d/71-edge-runtime-coral.rules
#   user and group edge-runtime, in the groups video, dialout and plugdev
set -euo pipefail

CHECKOUT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NAME=edge-runtime
PREFIX=/opt/edge-runtime
CONF_DIR=/etc/edge-runtime
STATE_DIR=/var/lib/edge-runtime
UNIT=/etc/systemd/system/$NAME.service
UDEV_RULE=/etc/udev/rules.d/71-edge-runtime-coral.rules
GROUPS_NEEDED=(video dialout plugdev)
PYTHON="${PYTHON:-python3}"

ROOT="${DESTDIR:-}"
DRY_RUN=0
NO_PIP=0
UNINSTALL=0
PURGE=0
WITH_MOSQUITTO=0

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT="${2:?--root needs a directory}"; shift ;;
        --root=*) ROOT="${1#--root=}" ;;
        --dry-run) DRY_RUN=1 ;;
        --no-pip) NO_PIP=1 ;;
        --uninstall) UNINSTALL=1 ;;
        --purge) PURGE=1 ;;
        --with-mosquitto) WITH_MOSQUITTO=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 64 ;;
    esac
    shift
done
if [ "$PURGE" = 1 ] && [ "$UNINSTALL" = 0 ]; then
    echo "install.sh: --purge goes with --uninstall" >&2; exit 64
fi
ROOT="${ROOT%/}"
if [ -n "$ROOT" ] && [ "$DRY_RUN" = 0 ]; then
    mkdir -p "$ROOT"
    ROOT="$(cd "$ROOT" && pwd)"
fi

say() { echo "install.sh: $*"; }
# print a command as it would be typed (arguments with spaces or quotes quoted)
show() {
    local arg line="would run:"
    for arg in "$@"; do
        if [[ "$arg" =~ ^[][A-Za-z0-9_./:=,@%+-]+$ ]]; then line+=" $arg"
        else line+=" $(printf '%q' "$arg")"; fi
    done
    echo "$line"
}

# A change to the running system (users, services, packages, udev, ownership): run for real
# only on a real install; under --root or --dry-run it is printed.
system() {
    if [ -n "$ROOT" ] || [ "$DRY_RUN" = 1 ]; then
        show "$@"
    else
        "$@"
    fi
}

# A change to files below the root: done (under --root too) unless --dry-run.
files() {
    if [ "$DRY_RUN" = 1 ]; then
        show "$@"
    else
        "$@"
    fi
}

real_install() { [ -z "$ROOT" ] && [ "$DRY_RUN" = 0 ]; }

preflight() {
    real_install || return 0
    if [ "$(id -u)" != 0 ]; then
        echo "install.sh: run as root (sudo), or use --dry-run / --root DIR" >&2; exit 77
    fi
    if ! command -v systemctl >/dev/null || ! command -v apt-get >/dev/null; then
        echo "install.sh: needs a Debian-based system with systemd (apt-get, systemctl)" >&2
        exit 69
    fi
}

ensure_groups_and_user() {
    local group
    for group in "${GROUPS_NEEDED[@]}"; do
        if real_install; then
            getent group "$group" >/dev/null || groupadd --system "$group"
        else
            echo "would run: groupadd --system $group  (if missing)"
        fi
    done
    if real_install && getent passwd "$NAME" >/dev/null; then
        say "user $NAME exists"
    else
        system useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "edge-runtime inference daemon" "$NAME"
    fi
    system usermod --append --groups "$(IFS=,; echo "${GROUPS_NEEDED[*]}")" "$NAME"
}

install_python() {
    local venv="$ROOT$PREFIX/venv"
    if [ "$NO_PIP" = 1 ]; then
        say "--no-pip: skipping the virtual environment; a real install runs:"
        show "$PYTHON" -m venv "$PREFIX/venv"
        show "$PREFIX/venv/bin/pip" install --upgrade "$CHECKOUT"
        return
    fi
    if real_install && ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then
        system apt-get install -y python3-venv
    fi
    if [ ! -x "$venv/bin/python" ]; then
        files "$PYTHON" -m venv "$venv"
    fi
    files "$venv/bin/pip" install --quiet --upgrade "$CHECKOUT"
}

install_files() {
    files install -d -m 0755 "$ROOT$PREFIX/models" "$ROOT$PREFIX/docs" "$ROOT$CONF_DIR" \
        "$ROOT$(dirname "$UNIT")" "$ROOT$(dirname "$UDEV_RULE")"
    files cp -R "$CHECKOUT/models/." "$ROOT$PREFIX/models/"
    files install -m 0644 "$CHECKOUT/docs/service.md" "$ROOT$PREFIX/docs/service.md"
    if [ -e "$ROOT$CONF_DIR/config.yaml" ]; then
        say "keeping the existing $CONF_DIR/config.yaml"
    else
        files install -m 0640 "$CHECKOUT/deploy/edge-runtime.example.yaml" \
            "$ROOT$CONF_DIR/config.yaml"
        system chown "root:$NAME" "$ROOT$CONF_DIR/config.yaml"
    fi
    if [ ! -e "$ROOT$CONF_DIR/mqtt-password" ]; then
        files install -m 0600 /dev/null "$ROOT$CONF_DIR/mqtt-password"
    fi
    files install -m 0644 "$CHECKOUT/systemd/$NAME.service" "$ROOT$UNIT"
    files install -m 0644 "$CHECKOUT/deploy/71-edge-runtime-coral.rules" "$ROOT$UDEV_RULE"
}

install_all() {
    preflight
    if [ "$WITH_MOSQUITTO" = 1 ]; then
        system apt-get install -y mosquitto
        system systemctl enable --now mosquitto
    fi
    ensure_groups_and_user
    install_python
    install_files
    system udevadm control --reload-rules
    system udevadm trigger --subsystem-match=usb
    system systemctl daemon-reload
    system systemctl enable "$NAME"
    system systemctl restart "$NAME"
    say "installed; status: systemctl status $NAME; logs: journalctl -u $NAME -f"
}

uninstall_all() {
    preflight
    if real_install; then
        systemctl disable --now "$NAME" 2>/dev/null || true
    else
        show systemctl disable --now "$NAME"
    fi
    files rm -f "$ROOT$UNIT" "$ROOT$UDEV_RULE"
    files rm -rf "$ROOT$PREFIX"
    system systemctl daemon-reload
    system udevadm control --reload-rules
    if [ "$PURGE" = 1 ]; then
        files rm -rf "$ROOT$CONF_DIR" "$ROOT$STATE_DIR"
        if real_install; then
            ! getent passwd "$NAME" >/dev/null || userdel "$NAME"
        else
            show userdel "$NAME"
        fi
        say "removed, with config, state (the outbox) and the user $NAME"
    else
        say "removed; kept $CONF_DIR and $STATE_DIR (the outbox); --purge removes them"
    fi
    [ "$WITH_MOSQUITTO" = 0 ] || say "Mosquitto is left installed (remove it with apt-get)"
}

if [ "$UNINSTALL" = 1 ]; then
    uninstall_all
else
    install_all
fi
