#!/usr/bin/env bash
# Prepare this checkout for tests and the demo: system packages (python3-venv, mosquitto),
# a local .venv, an editable install with the test extras, and the dashboard's chart library.
# Idempotent and fast on re-runs.
#   --browser: also install Debian's chromium (big; only the browser tests need it).
set -euo pipefail

WANT_BROWSER=0
for arg in "$@"; do
    case "$arg" in
        --browser) WANT_BROWSER=1 ;;
        *) printf 'bootstrap: unknown option %s (known: --browser)\n' "$arg" >&2; exit 2 ;;
    esac
done

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT="$(pwd)"

log() { printf 'bootstrap: %s\n' "$*" >&2; }

is_root() { [ "$(id -u)" -eq 0 ]; }

APT_UPDATED=0
apt_install() {
    # apt_install PKG...: install Debian packages (root only), or say what is missing and stop.
    if ! is_root; then
        log "missing system package(s): $* -- install them with: sudo apt-get install -y $*"
        exit 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        log "missing system package(s): $* -- and apt-get is not available to install them"
        exit 1
    fi
    if [ "$APT_UPDATED" -eq 0 ]; then
        log "apt-get update"
        apt-get update -qq >&2
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

if ! command -v python3 >/dev/null 2>&1; then
    apt_install python3
fi

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
    apt_install mosquitto
fi

if [ "$WANT_BROWSER" -eq 1 ] && [ ! -x /usr/bin/chromium ]; then
    apt_install chromium
fi

if [ ! -x .venv/bin/python ]; then
    log "creating .venv"
    rm -rf .venv
    # On Debian, `python3 -m venv` fails (ensurepip unavailable) until python3-venv is installed;
    # a plain `import ensurepip` can succeed without it, so try the real thing.
    if ! python3 -m venv .venv >/dev/null 2>&1; then
        rm -rf .venv
        apt_install python3-venv
        python3 -m venv .venv
    fi
fi

STAMP=".venv/.installed-$(sha256sum setup.cfg | cut -d' ' -f1)"
if [ -f "$STAMP" ]; then
    log "dependencies up to date (.venv)"
else
    log "installing pioactors[test] into .venv (editable; pip output in .venv/pip-install.log)"
    if ! .venv/bin/python -m pip install -q -e '.[test]' >.venv/pip-install.log 2>&1; then
        tail -n 30 .venv/pip-install.log >&2
        log "pip install failed (full output: $REPO_ROOT/.venv/pip-install.log)"
        exit 1
    fi
    rm -f .venv/.installed-*
    touch "$STAMP"
    log "install done"
fi
# The dashboard's chart library (uPlot) from the npm registry, checked against its published hash.
.venv/bin/python scripts/fetch_vendor.py
log "ready: $REPO_ROOT/.venv"
