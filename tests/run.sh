#!/usr/bin/env bash
# The one test command (README, CI): installs what the tests need on a fresh machine, then runs them.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v sipp >/dev/null 2>&1 || need_apt+=(sip-tester)
command -v ffprobe >/dev/null 2>&1 || need_apt+=(ffmpeg)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: the tests need these Debian packages: ${need_apt[*]} (run this once as root to install them)" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# The project's own virtual environment (deploy/install-venv.sh), never the system Python: Debian 12 and
# Ubuntu 24.04 refuse pip there. Its bin/ goes first on PATH for the console-script tests.
bash deploy/install-venv.sh test,console >/dev/null
venv=${GBGW_VENV:-.venv}
export PATH="$PWD/$venv/bin:$PATH"
py="$venv/bin/python"

"$py" -m ruff check sip rtp registry gb28181 conformance tests
# mypy cannot follow the editable install's import hook, so it reads the folders through a tree of links
# named as they are installed (gbgw.sip -> sip/, ...).
types=.typecheck/gbgw
mkdir -p "$types"
for root in sip rtp registry gb28181 conformance; do ln -sfn "../../$root" "$types/$root"; done
MYPYPATH=.typecheck "$py" -m mypy -p gbgw.sip -p gbgw.rtp -p gbgw.registry -p gbgw.gb28181 -p gbgw.conformance
"$py" -m pytest "$@"
