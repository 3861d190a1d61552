#!/usr/bin/env bash
# Installs the gateway from this checkout into its own virtual environment, .venv beside this folder
# (or $GBGW_VENV), with the optional extras named in $1 (default: console).
#
# A venv because Debian 12 and Ubuntu 24.04 mark the system Python "externally managed": `pip install .`
# there fails, as root too. The install is editable, so the checkout's code is what runs (and what the tests
# test). Works as root or as a normal user; only creating a venv on a Debian without python3-venv needs root,
# and then this script installs that package itself.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${GBGW_VENV:-.venv}
extras=${1:-console}

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
    rm -rf "$venv"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        rm -rf "$venv"
        if [ "$(id -u)" -ne 0 ]; then
            echo "error: python3 cannot create a virtual environment here (Debian/Ubuntu: the python3-venv" >&2
            echo "package is missing). Ask an administrator to run: apt-get install python3-venv" >&2
            exit 1
        fi
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$venv"
    fi
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e ".[$extras]"
echo "installed: $("$venv/bin/gb28181-gateway" --version) in $venv (run $venv/bin/gb28181-gateway)"
